"""Board commands against ports that are not a healthy board (issue 16's review): a silent port, a
board in a boot loop that prints without pause, a board unplugged mid-command. Each ends in about
--timeout with exit 1, an error and a hint, and --json prints exactly one JSON document. Run as
subprocesses: a hang is a test failure, not a hung test run."""
import json
import os
import subprocess
import sys
import threading
import time

import pytest

if not hasattr(os, "openpty"):
    pytest.skip("needs pseudo-terminals", allow_module_level=True)

BANNER = b"ets Jun  8 2016 00:22:57\r\nrst:0x10 (RTCWDT_RTC_RESET),boot:0x13\r\n"


class FakePort:
    """A pseudo-terminal whose other end plays a misbehaving board (`script(port)` in a thread)."""

    def __init__(self, script):
        import pty
        import tty

        self.master, self.slave = pty.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.stop = threading.Event()
        threading.Thread(target=script, args=(self,), daemon=True).start()

    def close(self):
        self.stop.set()
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def boot_loop(seconds, unplug=False):
    """A board printing its ROM banner without pause for `seconds` (then unplugged: the pty closes)."""
    def script(port):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not port.stop.is_set():
            try:
                os.write(port.master, BANNER)
            except OSError:
                return
            time.sleep(0.01)
        if unplug:
            os.close(port.master)
    return script


def silent(port):
    port.stop.wait(120)


def ota(*argv, timeout=60):
    env = dict(os.environ)
    env.pop("OTA_TOOL_DEBUG", None)
    t = time.monotonic()
    p = subprocess.run([sys.executable, "-m", "ota_tool.cli"] + list(argv), capture_output=True, text=True,
                       timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    p.seconds = time.monotonic() - t
    assert "Traceback" not in p.stdout + p.stderr and "internal error" not in p.stdout + p.stderr, p.stderr
    return p


@pytest.fixture
def port(request):
    p = FakePort(request.param)
    yield p
    p.close()


@pytest.mark.parametrize("port", [silent], indirect=True)
@pytest.mark.parametrize("cmd", [["device", "status"], ["deploy", "--no-app"]])
def test_json_is_the_only_thing_on_stdout_when_no_repl_answers(port, cmd):
    p = ota(*cmd, "--json", "--port", port.path, "--timeout", "2")
    assert p.returncode == 1
    doc = json.loads(p.stdout)  # exactly one document, nothing before it
    assert doc["ok"] is False and "no MicroPython REPL answers" in doc["error"] and doc["hint"], doc


@pytest.mark.parametrize("port", [boot_loop(40)], indirect=True)
def test_a_board_in_a_boot_loop_ends_the_command_in_its_timeout(port):
    p = ota("device", "status", "--port", port.path, "--timeout", "3", timeout=30)
    assert p.returncode == 1, p.stderr
    assert "no raw REPL within 3 s; it printed: 'rst:0x10 (RTCWDT_RTC_RESET),boot:0x13'" in p.stderr, p.stderr
    assert "boot loop" in p.stderr.split("hint:")[1], p.stderr
    assert p.seconds < 15, p.seconds  # 3 s and the interpreter's start, on a busy machine


@pytest.mark.parametrize("port", [boot_loop(1.5, unplug=True)], indirect=True)
def test_a_board_unplugged_mid_command_is_an_error_saying_so(port):
    p = ota("device", "status", "--port", port.path, "--timeout", "5")
    assert p.returncode == 1
    assert "lost the board on %s" % port.path in p.stderr and "plugged in" in p.stderr, p.stderr

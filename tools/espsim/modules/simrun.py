# Entry point for device code under the MicroPython unix port on a simulated board. The host
# harness (ota_tool.sim) has already run the bootloader. Two ways to reach the chip:
#   ESPSIM_RPC=port       the board lives in the host: only a small client is loaded here, so a
#                         heap limit measures the device code, as on a real chip
#   ESPSIM_FLASH=path     the whole simulator runs here too (it is MicroPython code as well)
import os
import sys

from espsim import chip
from espsim.chip import PowerCut

RC_RESET = 80
RC_POWER_CUT = 81
RC_FS_CORRUPTED = 82  # the filesystem does not mount: the board stops before the app
RC_DEEP_SLEEP = 83  # machine.deepsleep(): the harness wakes the board through the bootloader's wake path
MOUNT_POINT = "/flash"  # the board's "/": mounted here so the host's files stay reachable


def attach():
    port = os.getenv("ESPSIM_RPC")
    if port:
        from espsim.rpc import RemoteChip

        return chip.attach(RemoteChip(int(port)))
    from espsim import board, parttable

    cut = os.getenv("ESPSIM_CUT_AT")
    b = board.Board(os.getenv("ESPSIM_FLASH"), cut_at=int(cut) if cut else None,
                    cut_mode=os.getenv("ESPSIM_CUT_MODE") or "before")
    b.parts = parttable.read(b.flash)
    running = int(os.getenv("ESPSIM_RUNNING"))
    for p in b.parts:
        if p.offset == running:
            b.running = p
    return chip.attach(chip.LocalChip(b))


def _blank(bdev):
    # inisetup.check_bootsec: only a blank first block may be formatted (read in pieces: heap)
    buf = bytearray(256)
    for off in range(0, 4096, 256):
        bdev.readblocks(0, buf, off)
        for b in buf:
            if b != 0xFF:
                return False
    return True


def mount_fs():
    """Mount the simulated `vfs` partition (littlefs) as the ESP32 port's _boot.py does, at
    MOUNT_POINT, and make it the current directory as "/" is on a board, so device code's relative
    paths ("ota.json") land in it. A blank partition is formatted (inisetup.py, first boot).
    Returns False when it does not mount: the board would stop there."""
    import esp32
    import vfs

    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, label="vfs")
    if not found:
        fs = _NoFilesystem()  # no room for one on this table: nothing is mounted
    else:
        fs = _mount_lfs(found[0])
        if fs is None:
            return False
    vfs.mount(fs, MOUNT_POINT)
    os.chdir(MOUNT_POINT)
    return True


class _NoFilesystem:
    # A board with nothing mounted answers ENODEV; this keeps relative paths off the host's files.
    def mount(self, readonly, mkfs):
        pass

    def umount(self):
        pass

    def chdir(self, path):
        pass

    def getcwd(self):
        return "/"

    def _fail(self, *args):
        raise OSError(19)  # ENODEV

    open = ilistdir = stat = statvfs = remove = rename = mkdir = rmdir = _fail


def _mount_lfs(bdev):
    import vfs

    try:
        fs = vfs.VfsLfs2(bdev)
    except OSError:
        if not _blank(bdev):
            return None
        vfs.VfsLfs2.mkfs(bdev)
        fs = vfs.VfsLfs2(bdev)
    return fs


def main(module):
    import machine

    c = attach()
    # Modules a board has in ROM or frozen (C: esp32, network; frozen: ntptime) and the simulator's
    # own (simnet): loaded before the app, so their bytecode is the simulator's footprint (the
    # harness adds it to the heap), not the device code's.
    import esp32  # noqa: F401
    import network  # noqa: F401
    import ntptime  # noqa: F401
    import simnet  # noqa: F401

    if os.getenv("ESPSIM_BASE"):
        # What the simulator itself holds (client, fake modules): the harness adds it to the heap.
        import gc

        gc.collect()
        sys.stderr.write("ESPSIM_BASE=%d\n" % gc.mem_alloc())
    rc = 0
    try:
        if mount_fs():
            import gc

            gc.collect()  # as the firmware's startup leaves the heap before main.py
            __import__(module)
        else:
            sys.stderr.write("The filesystem appears to be corrupted.\n")
            rc = RC_FS_CORRUPTED
    except machine.Reset:
        rc = RC_RESET
    except machine.DeepSleep:
        rc = RC_DEEP_SLEEP
    except PowerCut:
        rc = RC_POWER_CUT
    except Exception as e:  # an app crash: shown as MicroPython shows it, exit status 1
        sys.print_exception(e)
        rc = 1
    if isinstance(c, chip.LocalChip):
        sys.stderr.write("ESPSIM_OPS=%d\n" % c.board.flash.ops)
        c.board.close()
    sys.exit(rc)

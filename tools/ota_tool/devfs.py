"""The filesystem of a simulated device: a littlefs in its `vfs` partition, as MicroPython keeps it.

How the device filesystem is simulated
    MicroPython (>= 1.26) on an ESP32 keeps its files in littlefs v2 on the data partition labelled
    `vfs`. When the partition table has none (MicroPython's own 4 MiB OTA table has none) the
    firmware registers one at every boot, from the end of the last partition to the end of flash
    (ports/esp32/main.c, boardctrl_startup: type data, subtype fat, label "vfs"): 0x310000-0x400000,
    960 KiB, with this project's partitions.csv. The simulated chip shows the same partition
    (`esp32.Partition("vfs")`, `Partition.find(TYPE_DATA, label="vfs")`). Device code reaches its
    files through `ota.compat.fs` with relative paths ("ota.json" is "/ota.json" on a board):
    - MicroPython runs (`Device.run_micropython`, RPC and local mode): simrun mounts `vfs.VfsLfs2`
      on `esp32.Partition("vfs")` at /flash and chdir()s there before importing the app;
    - CPython runs (`Device.run`): this module mounts the partition with littlefs-python at every
      power-on, its reads, programs and erases going through the simulated chip, so an armed power
      cut falls inside filesystem writes like any other flash operation; the mount is dropped at
      the end of the power cycle (reset, power cut) and made again at the next one.
    Both follow MicroPython's _boot.py/inisetup.py: a filesystem that does not mount is formatted
    when its first block is blank (a board's first boot; those erases and programs count), else
    the firmware stops before the app ("The filesystem appears to be corrupted": the run ends as
    CRASHED). With no room for `vfs`, nothing is mounted and file calls fail with ENODEV.

Geometry (MicroPython's own, so each side reads and writes what the other wrote)
    block 4096 bytes (esp32.Partition's block size, ioctl 5), block count = partition size / 4096
    (240 here), read 32, prog 32, lookahead 32 bytes (VfsLfs2's defaults, extmod/vfs_lfs.c), cache
    128 bytes = 4 x max(read, prog) and block_cycles 100 (extmod/vfs_lfsx.c), name_max 255,
    on-disk version 2.1 (what VfsLfs2.mkfs writes). Programs never erase (littlefs calls
    writeblocks with an offset); erases are whole 4 KiB sectors (ioctl 6). MicroPython also stores
    a file's mtime as a littlefs attribute; littlefs-python ignores it.

Inspecting the files of a simulated device
    `ota_tool.sim.create()` formats the filesystem (filesystem=False leaves the region blank, as on
    a board before its first boot). With the device not running:
        python -m ota_tool.devfs device.bin ls            # every file and its size
        python -m ota_tool.devfs device.bin cat ota.json
        python -m ota_tool.devfs device.bin put app.py lib/app.py
        python -m ota_tool.devfs device.bin get|rm NAME, format
    From Python: devfs.files(path) -> {name: size}, devfs.get(path, name), devfs.put(path, name,
    data) (parent folders made, written as tmp + rename), devfs.remove(path, name), or
    `with devfs.mount(path) as fs:` for open/rename/listdir/walk/usage.
"""
import errno
import os
import sys

from espsim import board as sim_board
from espsim import chip as sim_chip
from espsim import parttable

from .errors import ToolError

BLOCK_SIZE = 4096
READ_SIZE = 32
PROG_SIZE = 32
LOOKAHEAD_SIZE = 32
CACHE_SIZE = 4 * max(READ_SIZE, PROG_SIZE)
BLOCK_CYCLES = 100
NAME_MAX = 255
DISK_VERSION = 0x00020001

CORRUPTED = ("The filesystem appears to be corrupted. If you had important data there, you may want "
             "to make a flash snapshot to try to recover it. Otherwise, perform factory reprogramming "
             "of MicroPython firmware (completely erase flash, followed by firmware programming).")

_LFS_ERR_IO = -5


def lfs_config(block_count):
    """littlefs-python's configuration for a `vfs` partition of `block_count` 4 KiB blocks."""
    return dict(block_size=BLOCK_SIZE, block_count=block_count, read_size=READ_SIZE, prog_size=PROG_SIZE,
                cache_size=CACHE_SIZE, lookahead_size=LOOKAHEAD_SIZE, block_cycles=BLOCK_CYCLES,
                name_max=NAME_MAX, disk_version=DISK_VERSION)


class FilesystemCorrupted(Exception):
    """The filesystem does not mount and is not blank: MicroPython stops before the app."""


def _blockdevice_class():
    import littlefs

    class BlockDevice(littlefs.UserContext):
        # littlefs-python ignores exceptions raised in these callbacks (it prints them and goes
        # on), so the first failure (a power cut, usually) is kept in `error`, every later
        # operation fails without touching the flash (power is gone), and DeviceFS re-raises it.
        # littlefs reads a metadata block 32-128 bytes at a time, over and over: the last block
        # read is kept here (reads have no effect on the flash; programs and erases drop it).
        def __init__(self, chip, offset):  # no super().__init__: it allocates a RAM image
            self.chip = chip
            self.offset = offset
            self.error = None
            self._block = None
            self._cache = bytearray(BLOCK_SIZE)

        def read(self, cfg, block, off, size):
            if self.error is None and block != self._block:
                try:
                    self.chip.read(self.offset + block * BLOCK_SIZE, self._cache)
                    self._block = block
                except BaseException as e:
                    self.error = e
            return self._cache[off:off + size] if self.error is None else bytearray(size)

        def prog(self, cfg, block, off, data):
            if self.error is not None:
                return _LFS_ERR_IO
            if block == self._block:
                self._block = None
            try:
                self.chip.write(self.offset + block * BLOCK_SIZE + off, data)
            except BaseException as e:
                self.error = e
                return _LFS_ERR_IO
            return 0

        def erase(self, cfg, block):
            if self.error is not None:
                return _LFS_ERR_IO
            if block == self._block:
                self._block = None
            try:
                self.chip.erase(self.offset + block * BLOCK_SIZE, BLOCK_SIZE)
            except BaseException as e:
                self.error = e
                return _LFS_ERR_IO
            return 0

        def sync(self, cfg):
            return 0

    return BlockDevice


class DeviceFS:
    """littlefs-python on the `vfs` partition of a chip (espsim.chip.LocalChip), with the methods
    ota.compat.fs calls (paths from the root, errors as OSError(errno) like MicroPython's)."""

    def __init__(self, chip, offset, size):
        import littlefs

        self.offset = offset
        self.size = size
        self._dev = _blockdevice_class()(chip, offset)
        self._lfs = littlefs.LittleFS(self._dev, mount=False, **lfs_config(size // BLOCK_SIZE))

    # --- every littlefs call goes through _do: flash failures first, then littlefs' own errors
    def _check(self):
        if self._dev.error is not None:
            raise self._dev.error

    def _do(self, fn, *args, path=None):
        from littlefs import LittleFSError

        self._check()
        try:
            result = fn(*args)
        except LittleFSError as e:
            self._check()
            code = -e.code
            raise OSError(code, os.strerror(code)) if path is None else OSError(code, os.strerror(code), path)
        self._check()
        return result

    def mount(self):
        from littlefs import lfs

        self._do(lfs.mount, self._lfs.fs, self._lfs.cfg)

    def format(self):
        from littlefs import lfs

        self._do(lfs.format, self._lfs.fs, self._lfs.cfg)

    def first_block_blank(self):
        buf = bytearray(BLOCK_SIZE)
        self._dev.chip.read(self.offset, buf)
        return buf == b"\xff" * BLOCK_SIZE

    # --- ota.compat.fs
    def open(self, path, mode="r"):
        from littlefs import lfs

        flags = _open_flags(mode)
        fh = self._do(lfs.file_open, self._lfs.fs, path, flags, path=path)
        return File(self, fh, "b" not in mode)

    def rename(self, src, dst):
        from littlefs import lfs

        self._do(lfs.rename, self._lfs.fs, src, dst, path=src)

    def remove(self, path):
        from littlefs import lfs

        self._do(lfs.remove, self._lfs.fs, path, path=path)

    rmdir = remove  # littlefs removes empty directories with the same call (as VfsLfs2 does)

    def mkdir(self, path):
        from littlefs import lfs

        self._do(lfs.mkdir, self._lfs.fs, path, path=path)

    def stat(self, path):
        from littlefs import lfs

        return self._do(lfs.stat, self._lfs.fs, path, path=path).size

    def listdir(self, path=""):
        return [name for name, _, _ in self.scandir(path)]

    def sync(self):
        self._check()  # files commit on flush/close; MicroPython's os.sync is a no-op ioctl here

    # --- host extras
    def scandir(self, path=""):
        """[(name, is_dir, size)] of a folder."""
        from littlefs import lfs

        dh = self._do(lfs.dir_open, self._lfs.fs, path or "/", path=path or "/")
        out = []
        try:
            while True:
                st = self._do(lfs.dir_read, self._lfs.fs, dh)
                if not st:
                    break
                if st.name not in (".", ".."):
                    out.append((st.name, st.type == 2, st.size))
        finally:
            if self._dev.error is None:
                lfs.dir_close(self._lfs.fs, dh)
        return out

    def walk(self, path=""):
        """{path: size} of every file below `path` (folders themselves are not listed)."""
        out = {}
        todo = [path.strip("/")]
        while todo:
            folder = todo.pop()
            for name, is_dir, size in self.scandir(folder):
                full = folder + "/" + name if folder else name
                if is_dir:
                    todo.append(full)
                else:
                    out[full] = size
        return out

    def exists(self, path):
        try:
            self.stat(path)
            return True
        except OSError:
            return False

    def makedirs(self, path):
        parts = [p for p in path.split("/") if p]
        for i in range(1, len(parts) + 1):
            sub = "/".join(parts[:i])
            if not self.exists(sub):
                self.mkdir(sub)

    def get(self, path):
        with self.open(path, "rb") as f:
            return f.read()

    def put(self, path, data):
        """Write `data` to `path` the way device code should: a temporary file, then a rename."""
        folder = path.rsplit("/", 1)[0] if "/" in path.strip("/") else ""
        if folder:
            self.makedirs(folder)
        tmp = path + ".tmp"
        with self.open(tmp, "wb") as f:
            f.write(data)
        self.rename(tmp, path)

    def usage(self):
        """(bytes used, bytes total)."""
        from littlefs import lfs

        return self._do(lfs.fs_size, self._lfs.fs) * BLOCK_SIZE, self.size


def _open_flags(mode):
    from littlefs.lfs import LFSFileFlag as F

    kinds = [c for c in mode if c in "rwax"]
    if len(kinds) != 1 or any(c not in "rwax+bt" for c in mode) or ("b" in mode and "t" in mode):
        raise ValueError("invalid mode: %r" % mode)
    flags = {"r": F.rdonly, "w": F.wronly | F.creat | F.trunc, "a": F.wronly | F.creat | F.append,
             "x": F.wronly | F.creat | F.excl}[kinds[0]]
    if "+" in mode:
        flags |= F.rdonly | F.wronly
    return flags


class File:
    """An open file of a DeviceFS: the calls MicroPython's VfsLfs2 files answer. Unbuffered above
    littlefs (which caches 128 bytes per file), as on the device."""

    def __init__(self, fs, fh, text):
        self._fs = fs
        self._fh = fh
        self._text = text
        self.closed = False

    def _do(self, fn, *args):
        if self.closed:
            raise ValueError("I/O operation on closed file")
        return self._fs._do(fn, self._fs._lfs.fs, self._fh, *args)

    def read(self, n=-1):
        from littlefs import lfs

        if n is None or n < 0:
            n = self._do(lfs.file_size) - self._do(lfs.file_tell)
        data = self._do(lfs.file_read, max(n, 0))
        return data.decode() if self._text else data

    def readinto(self, buf):
        from littlefs import lfs

        data = self._do(lfs.file_read, len(buf))
        buf[: len(data)] = data
        return len(data)

    def readline(self):
        from littlefs import lfs

        line = b""
        while True:
            chunk = self._do(lfs.file_read, 64)
            if not chunk:
                break
            i = chunk.find(b"\n")
            if i >= 0:
                line += chunk[: i + 1]
                self._do(lfs.file_seek, i + 1 - len(chunk), 1)  # give back what follows the line
                break
            line += chunk
        return line.decode() if self._text else line

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line

    def write(self, data):
        from littlefs import lfs

        if self._text:
            if not isinstance(data, str):
                raise TypeError("write() argument must be str, not %s" % type(data).__name__)
            data = data.encode()
        return self._do(lfs.file_write, bytes(data))

    def seek(self, offset, whence=0):
        from littlefs import lfs

        return self._do(lfs.file_seek, offset, whence)

    def tell(self):
        from littlefs import lfs

        return self._do(lfs.file_tell)

    def flush(self):
        from littlefs import lfs

        self._do(lfs.file_sync)

    def close(self):
        from littlefs import lfs

        if self.closed:
            return
        if self._fs._dev.error is not None:  # power is gone: nothing more reaches the flash
            self.closed = True
            return
        try:
            self._do(lfs.file_close)
        finally:
            self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class NoFilesystem:
    """What device code meets on a board without a `vfs` partition: nothing is mounted (ENODEV)."""

    def _fail(self, *args, **kw):
        raise OSError(errno.ENODEV, "no filesystem mounted (the partition table leaves no room for `vfs`)")

    open = rename = remove = mkdir = rmdir = stat = listdir = sync = _fail


def vfs_partition(chip):
    """(offset, size) of the `vfs` partition the chip shows to MicroPython, or None."""
    for t, st, addr, size, label, flags in chip.partitions():
        if t == parttable.TYPE_DATA and label == "vfs":
            return addr, size
    return None


def boot_mount(chip):
    """Mount the filesystem at power-on as MicroPython's _boot.py does: format it when it does not
    mount and its first block is blank (the first boot), raise FilesystemCorrupted when it does not
    mount otherwise. Returns a DeviceFS, or NoFilesystem() without a `vfs` partition."""
    where = vfs_partition(chip)
    if where is None:
        return NoFilesystem()
    dfs = DeviceFS(chip, *where)
    try:
        dfs.mount()
    except OSError:
        if not dfs.first_block_blank():
            raise FilesystemCorrupted(CORRUPTED)
        dfs.format()
        dfs.mount()
    return dfs


# --- the in-process simulator's hooks (ota_tool.sim.Device.run)
def power_on(chip):
    """Mount the device's filesystem for the power cycle starting on `chip` and hand it to
    ota.compat.fs. Flash operations (a first-boot format) count and can be cut."""
    from ota.compat import fs

    fs.attach(boot_mount(chip))


def power_off():
    """Power is gone: drop the mounted littlefs (and open files) without unmounting."""
    from ota.compat import fs

    fs.attach(None)


# --- host side: the files of a device file, with the device off
class _Mounted:
    def __init__(self, path, format_blank):
        if not os.path.exists(path):
            raise ToolError("no such device file: %s" % path, "create one with ota_tool.sim.create or ota-tool demo")
        self.board = sim_board.Board(path)
        try:
            self.board.parts = parttable.read(self.board.flash)
        except parttable.TableError as e:
            self.board.close()
            raise ToolError("%s: %s" % (path, e), "is it a flash image made by ota_tool.sim.create / ota-tool flash?")
        self.chip = sim_chip.LocalChip(self.board)
        self.path = path
        self.format_blank = format_blank

    def __enter__(self):
        where = vfs_partition(self.chip)
        if where is None:
            self.board.close()
            raise ToolError("%s has no room for a filesystem: its partitions reach the end of flash" % self.path,
                            "leave room after the last partition (MicroPython makes `vfs` there)")
        dfs = DeviceFS(self.chip, *where)
        try:
            dfs.mount()
        except OSError:
            if not (self.format_blank and dfs.first_block_blank()):
                self.board.close()
                raise ToolError("the filesystem of %s does not mount (%s)" % (
                    self.path, "blank: never formatted" if dfs.first_block_blank() else "corrupted"),
                    "format it (devfs.format / `python -m ota_tool.devfs DEVICE format`): its files are lost")
            dfs.format()
            dfs.mount()
        return dfs

    def __exit__(self, *exc):
        self.board.close()


def mount(path, format_blank=True):
    """with devfs.mount("device.bin") as fs: fs.put(...), fs.get(...), fs.walk(), fs.open(...)...
    The device must be off (no run in progress). A blank filesystem is formatted first, as the
    board's first boot would."""
    return _Mounted(path, format_blank)


def format(path):
    """Make an empty filesystem in the device's `vfs` partition (its files, if any, are lost).
    Returns False, doing nothing, when the partition table leaves no room for one."""
    m = _Mounted(path, True)
    try:
        where = vfs_partition(m.chip)
        if where is None:
            return False
        DeviceFS(m.chip, *where).format()
        return True
    finally:
        m.board.close()


def put(path, name, data):
    with mount(path) as fs:
        fs.put(name, data)


def get(path, name):
    with mount(path) as fs:
        return fs.get(name)


def listdir(path, folder=""):
    with mount(path) as fs:
        return fs.listdir(folder)


def files(path):
    """{name: size} of every file on the device."""
    with mount(path) as fs:
        return fs.walk()


def remove(path, name):
    with mount(path) as fs:
        fs.remove(name)


def main(argv=None):
    import argparse
    import json

    p = argparse.ArgumentParser(prog="python -m ota_tool.devfs",
                                description="Files in the littlefs of a simulated ESP32 (a flash image file).")
    p.add_argument("device", metavar="DEVICE.bin", help="simulated device (flash image file)")
    sub = p.add_subparsers(dest="op", metavar="OP")
    sub.required = True
    ls = sub.add_parser("ls", help="list every file with its size")
    ls.add_argument("--json", action="store_true", help="print {name: size} as JSON")
    sub.add_parser("cat", help="print a file").add_argument("name")
    g = sub.add_parser("get", help="copy a file out of the device")
    g.add_argument("name")
    g.add_argument("dest", nargs="?", help="host file (default: the same base name here)")
    pu = sub.add_parser("put", help="copy a host file into the device")
    pu.add_argument("src")
    pu.add_argument("name", nargs="?", help="name on the device (default: the same base name)")
    sub.add_parser("rm", help="remove a file or an empty folder").add_argument("name")
    sub.add_parser("format", help="make an empty filesystem (files are lost)")
    args = p.parse_args(argv)
    try:
        if args.op == "format":
            if not format(args.device):
                raise ToolError("%s has no room for a filesystem: its partitions reach the end of flash"
                                % args.device, "give it a partition table that leaves room at the end (a vfs row)")
            return 0
        with mount(args.device) as fs:
            if args.op == "ls":
                found = fs.walk()
                used, total = fs.usage()
                if args.json:
                    print(json.dumps({"files": found, "used": used, "total": total}))
                else:
                    for name in sorted(found):
                        print("%8d  %s" % (found[name], name))
                    print("%d files, %d of %d KiB used" % (len(found), used // 1024, total // 1024))
            elif args.op == "cat":
                sys.stdout.buffer.write(fs.get(args.name))
            elif args.op == "get":
                with open(args.dest or os.path.basename(args.name), "wb") as f:
                    f.write(fs.get(args.name))
            elif args.op == "put":
                with open(args.src, "rb") as f:
                    fs.put(args.name or os.path.basename(args.src), f.read())
            elif args.op == "rm":
                fs.remove(args.name)
    except OSError as e:
        print("error: %s: %s" % (getattr(e, "filename", None) or args.device, e.strerror or e), file=sys.stderr)
        return 1
    except ToolError as e:
        print("error: " + e.message, file=sys.stderr)
        if e.hint:
            print("hint: " + e.hint, file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())

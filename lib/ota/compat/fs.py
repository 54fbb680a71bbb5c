# Files on the device's filesystem (config, audit log, app bundles): the same calls on both
# interpreters. Paths are RELATIVE: a real ESP32's current directory is "/", the root of the
# littlefs in its `vfs` partition, so "ota.json" is "/ota.json" there.
#   MicroPython   the firmware's own files and os functions: littlefs on an ESP32; under the
#                 simulator, simrun mounts the simulated `vfs` partition and chdir()s into it.
#   CPython       the filesystem a simulator attaches for one power cycle (ota_tool.devfs: a
#                 littlefs on the simulated flash, power cuts included); with none attached, the
#                 host's files relative to the current directory.
# Errors are OSError(code): littlefs' codes are Linux errno values on every port (ENOENT 2,
# EEXIST 17, ENOTEMPTY 39, ENOSPC 28; MicroPython's errno module lacks some of them), ENODEV 19
# where nothing is mounted. A power cut between open("w"/"a") and close can leave the file EMPTY
# (littlefs commits a new file at open, its data at close): write a temporary file, then rename.
#
# open(path, mode) -> file with read/readinto/readline/write/seek/tell/flush/close, usable with
#                     `with`; text modes read and write str, "b" modes bytes
# rename(src, dst)    replaces dst atomically (littlefs commits a rename in one metadata write)
# remove(path), mkdir(path), rmdir(path)
# stat(path) -> size  OSError(ENOENT) if absent
# exists(path), listdir(path="") -> names, sync()
from . import MICROPYTHON

if MICROPYTHON:
    import os
    from builtins import open  # noqa: F401 (re-exported)

    rename = os.rename
    remove = os.remove
    mkdir = os.mkdir
    rmdir = os.rmdir
    _os_sync = getattr(os, "sync", None)  # absent on the unix port

    def stat(path):
        return os.stat(path)[6]

    def listdir(path=""):
        return os.listdir(path) if path else os.listdir()

    def sync():
        if _os_sync is not None:
            _os_sync()

else:
    import builtins as _builtins
    import os as _os

    class _Host:
        # No simulator attached: the host's files, relative to the current directory.
        @staticmethod
        def open(path, mode):
            return _builtins.open(path, mode) if "b" in mode else _builtins.open(path, mode, encoding="utf-8")

        rename = staticmethod(_os.replace)  # os.rename refuses an existing dst on Windows
        remove = staticmethod(_os.remove)
        mkdir = staticmethod(_os.mkdir)
        rmdir = staticmethod(_os.rmdir)

        @staticmethod
        def stat(path):
            return _os.stat(path).st_size

        @staticmethod
        def listdir(path):
            return _os.listdir(path or ".")

        @staticmethod
        def sync():
            pass

    _host = _Host()
    _device = None

    def attach(device_fs):
        """Simulator hook (CPython only): send every call to `device_fs`, an object with the
        methods open/rename/remove/stat/listdir/mkdir/rmdir/sync, until attach(None)."""
        global _device
        _device = device_fs

    def _fs():
        return _host if _device is None else _device

    def open(path, mode="r"):
        return _fs().open(path, mode)

    def rename(src, dst):
        _fs().rename(src, dst)

    def remove(path):
        _fs().remove(path)

    def mkdir(path):
        _fs().mkdir(path)

    def rmdir(path):
        _fs().rmdir(path)

    def stat(path):
        return _fs().stat(path)

    def listdir(path=""):
        return _fs().listdir(path)

    def sync():
        _fs().sync()


def exists(path):
    try:
        stat(path)
        return True
    except OSError:
        return False

"""Files the host tools write and hash: atomic replacement of what a server or a device may read."""
import hashlib
import os

from .errors import ToolError

HASH_BLOCK = 1 << 20


def os_error(e, path, doing="read"):
    """A ToolError for an OSError on `path`: what happened, and what to do about it."""
    if isinstance(e, FileNotFoundError):
        return ToolError("no such file or folder: %s" % path, "check the path (a relative one starts in %s)" % os.getcwd())
    if isinstance(e, IsADirectoryError):
        return ToolError("%s is a folder, not a file" % path, "give a file (the folder holds what you want?)")
    if isinstance(e, NotADirectoryError):
        return ToolError("cannot %s %s: part of that path is a file, not a folder" % (doing, path), "check the path")
    if isinstance(e, PermissionError):
        return ToolError("cannot %s %s: permission denied" % (doing, path), "check its permissions and owner")
    return ToolError("cannot %s %s: %s" % (doing, path, e.strerror or e), "check the path and the disk")


def check_not_input(output, inputs):
    """A bad command line (exit 2) when the output file `output` is one of the inputs ({option:
    path}): writing it would destroy what is being read (as `cp a a` refuses)."""
    for option, path in inputs.items():
        if not path:
            continue
        try:
            same = os.path.samefile(output, path)
        except OSError:
            same = False  # the output does not exist yet (or the input is missing: its reader says so)
        if same:
            raise ToolError("%s is also the input (%s): refusing to write the output over it" % (output, option),
                            "give another output file with -o", exit_code=2)


def read_bytes(path, limit=-1):
    """The bytes of a file (at most `limit`); ToolError saying why not."""
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except OSError as e:
        raise os_error(e, path)


def write_atomic(path, data):
    """Replace `path` with `data` in one rename: readers see the old file or the new one. The
    temporary file has a hidden name (the release server never serves it) and the old mode."""
    tmp = os.path.join(os.path.dirname(path) or ".", ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    try:
        mode = os.stat(path).st_mode & 0o7777
    except OSError:
        mode = None
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise os_error(e, path, "write")


def file_digest(path, algorithm="sha256"):
    """Hex digest of a file, read in blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while True:
            b = f.read(HASH_BLOCK)
            if not b:
                return h.hexdigest()
            h.update(b)

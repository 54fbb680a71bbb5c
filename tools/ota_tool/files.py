"""Files the host tools write and hash: atomic replacement of what a server or a device may read."""
import hashlib
import os

from .errors import ToolError

HASH_BLOCK = 1 << 20


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
        raise ToolError("cannot write %s: %s" % (path, e.strerror))


def file_digest(path, algorithm="sha256"):
    """Hex digest of a file, read in blocks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while True:
            b = f.read(HASH_BLOCK)
            if not b:
                return h.hexdigest()
            h.update(b)

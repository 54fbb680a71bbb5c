"""Delta updates on the host: make a patch the device applies while it streams, apply it back.

Patch format: a detools "sequential" bsdiff patch with detools compression "none", then the
whole patch zlib-compressed (level 9) with a small window, so the device needs only its built-in
`deflate` module (REFERENCE.md §8). The device side is ota.inflate.Inflate -> ota.delta.Patch;
`apply_patch` runs exactly that code here.
"""
import io
import zlib

from ota.delta import Patch, max_raw_patch_len  # noqa: F401 (re-exported for callers)
from ota.inflate import WBITS, Inflate

from .errors import ToolError

LEVEL = 9


def _detools():
    try:
        import detools
    except ImportError:  # pragma: no cover - detools is a dependency
        raise ToolError("detools is not installed", "pip install 'detools>=0.53,<0.54'")
    return detools


def zlib_compress(data, wbits=WBITS, level=LEVEL):
    """zlib stream (RFC 1950) with a 2**wbits window: what ota.inflate decompresses."""
    c = zlib.compressobj(level, zlib.DEFLATED, wbits, 9)
    return c.compress(data) + c.flush()


def raw_patch(old, new, compression="none", **options):
    """The detools sequential bsdiff patch from `old` to `new` (bytes)."""
    out = io.BytesIO()
    _detools().create_patch(
        io.BytesIO(old), io.BytesIO(new), out, compression=compression, patch_type="sequential", **options
    )
    return out.getvalue()


def make_patch(old, new, wbits=WBITS, level=LEVEL):
    """Patch turning `old` into `new` (bytes), as the device applies it: bsdiff, then zlib."""
    if not 9 <= wbits <= 15:
        raise ToolError("wbits must be between 9 and 15, not %d" % wbits, "the device default is %d" % WBITS)
    return zlib_compress(raw_patch(old, new), wbits, level)


class BytesSource:
    """A pipeline stage over bytes: readinto() gives at most `step` bytes at a time."""

    def __init__(self, data, step=4096):
        self._mv = memoryview(data)
        self._pos = 0
        self._step = step

    def readinto(self, buf):
        n = min(len(buf), self._step, len(self._mv) - self._pos)
        buf[:n] = self._mv[self._pos : self._pos + n]
        self._pos += n
        return n


class BytesBase:
    """The base image for ota.delta.Patch, from bytes."""

    def __init__(self, data):
        self._mv = memoryview(data)
        self.size = len(data)

    def read_at(self, offset, buf):
        if offset < 0 or offset + len(buf) > self.size:
            raise ValueError("read_at(%d, %d bytes) outside the %d-byte base" % (offset, len(buf), self.size))
        buf[:] = self._mv[offset : offset + len(buf)]


def apply_patch(old, patch, wbits=WBITS, to_size=None, max_out=1 << 30):
    """Apply a patch from make_patch() to `old` with the device code; return the new image.

    Raises OTAError (from the device code) on a bad patch.
    """
    return drain(Patch(Inflate(BytesSource(patch), "zlib", wbits, max_out), BytesBase(old), to_size))


def drain(stage):
    """Everything a pipeline stage yields, read a block at a time."""
    out = io.BytesIO()
    block = bytearray(4096)
    while True:
        n = stage.readinto(block)
        if not n:
            return out.getvalue()
        out.write(memoryview(block)[:n])


def sizes(old, new, wbits=WBITS, level=LEVEL):
    """Sizes in bytes of the ways to ship `new` to a device holding `old` (for the benchmark).

    ours          make_patch(): detools bsdiff (compression none) + zlib with a 2**wbits window
    bsdiff4       bsdiff4.diff() (the classic BSDIFF40 format with bz2)
    heatshrink    detools bsdiff + heatshrink (window 2**8, lookahead 2**7): what Espressif's
                  esp_delta_ota applies
    zlib_full     the whole new image, zlib with the same window
    raw           the uncompressed detools patch
    """
    import bsdiff4

    raw = raw_patch(old, new)
    return {
        "new": len(new),
        "ours": len(zlib_compress(raw, wbits, level)),
        "bsdiff4": len(bsdiff4.diff(bytes(old), bytes(new))),
        "heatshrink": len(raw_patch(old, new, compression="heatshrink")),
        "zlib_full": len(zlib_compress(new, wbits, level)),
        "raw": len(raw),
    }

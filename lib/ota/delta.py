# Patch stage: applies a detools "sequential" bsdiff patch (compression "none") while it streams.
#
#   Patch(patch, old, to_size=None).readinto(buf) -> n      the new image; n == 0 only at the end
#
# `patch` is the previous stage (usually Inflate: the host zlib-compresses the whole patch).
# `old` is the base image: old.size (bytes) and old.read_at(offset, buf), which fills the
# memoryview `buf` completely. Memory: one 512-byte input buffer; the output goes straight into
# the caller's buffer, and the base is read into it before the diff bytes are added.
#
# Format (detools 0.53, detools/apply.py and common.py):
#   header byte   0 pad bit | 3 bits patch type (0 sequential) | 4 bits compression (0 none)
#   to_size       size
#   if to_size > 0:
#     data-format patch size  size (0: no data-format patch; others are not supported)
#     chunks until to_size bytes are out:
#       diff size, diff bytes (new = diff + old mod 256, old read from the old position),
#       extra size, extra bytes (copied), adjustment (signed: added to the old position)
#   and then the patch ends.
#   A size is sign-magnitude: first byte 0x80 more | 0x40 negative | 6 low bits, then
#   0x80 more | 7 bits each, least significant first.
# Stricter than detools' applier, which lets negative sizes count as 0 and the old position
# leave the base (a short read): here the old position stays within 0..old.size after every
# adjustment, and each diff reads inside the base. detools' bsdiff never does otherwise.
from .compat import add_bytes, const
from .errors import OTAError
from .patchio import PatchReader

_IN_BUF = const(512)

_DIFF_SIZE = const(0)
_DIFF = const(1)
_EXTRA_SIZE = const(2)
_EXTRA = const(3)
_ADJUST = const(4)
_END = const(5)
_DONE = const(6)


def max_raw_patch_len(to_size):
    """A generous bound on the raw (inflated) patch for a to_size image: the Inflate stage in
    front of Patch stops a zip bomb there. Diff and extra bytes add up to to_size; the rest is the
    header and three sizes per chunk, measured at most 1.5 % of to_size on real pairs."""
    return to_size + to_size // 4 + 4096


class Patch(PatchReader):
    def __init__(self, patch, old, to_size=None):
        self._src = patch
        self._old = old
        self._old_size = old.size
        self._buf = bytearray(_IN_BUF)
        self._pos = 0
        self._end = 0
        self._old_pos = 0
        self._to_pos = 0
        self._left = 0
        self.to_size = None  # known once the header is read
        head = self._byte()
        if head >> 4 != 0:
            raise OTAError("unsupported_patch", "not a sequential detools patch (header byte 0x%02x)" % head)
        if head & 15:
            raise OTAError(
                "unsupported_patch",
                "the patch uses detools compression %d; create it with compression 'none' "
                "and compress the whole patch with zlib (ota-tool does)" % (head & 15),
            )
        size = self._size()
        if size < 0:
            raise OTAError("corrupt_patch", "negative new image size %d" % size)
        if to_size is not None and size != to_size:
            raise OTAError("size_mismatch", "the patch makes a %d-byte image, %d bytes were expected" % (size, to_size))
        self.to_size = size
        self._state = _DIFF_SIZE
        if size == 0:
            self._state = _END  # detools writes nothing after a zero size
        elif self._size() != 0:
            raise OTAError("unsupported_patch", "the patch has a data-format part (detools --data-format): not supported")

    def _fill(self):
        n = self._src.readinto(self._buf)
        if not n:
            if self.to_size is None:
                raise OTAError("truncated", "the patch ends inside its header")
            raise OTAError("truncated", "the patch ends after %d of %d bytes of the new image" % (self._to_pos, self.to_size))
        self._pos = 0
        self._end = n

    def _span(self, what):
        # A diff or extra length: never negative, never past the end of the new image.
        n = self._size()
        if n < 0 or n > self.to_size - self._to_pos:
            raise OTAError(
                "corrupt_patch",
                "%s length %d at new offset %d does not fit the %d-byte image" % (what, n, self._to_pos, self.to_size),
            )
        return n

    def readinto(self, buf):
        want = len(buf)
        got = 0
        mv = None
        while got < want:
            state = self._state
            if state == _DIFF or state == _EXTRA:
                if self._pos == self._end:
                    self._fill()
                n = min(want - got, self._left, self._end - self._pos)
                if mv is None:
                    mv = memoryview(buf)
                if state == _DIFF:
                    self._old.read_at(self._old_pos, mv[got : got + n])
                    add_bytes(mv, got, self._buf, self._pos, n)
                    self._old_pos += n
                else:
                    mv[got : got + n] = memoryview(self._buf)[self._pos : self._pos + n]
                self._pos += n
                self._to_pos += n
                self._left -= n
                got += n
                if not self._left:
                    self._state = _EXTRA_SIZE if state == _DIFF else _ADJUST
            elif state == _DIFF_SIZE:
                n = self._span("diff")
                if self._old_pos + n > self._old_size:
                    raise OTAError(
                        "corrupt_patch",
                        "diff reads base bytes %d..%d, past the end of the %d-byte base"
                        % (self._old_pos, self._old_pos + n, self._old_size),
                    )
                self._left = n
                self._state = _DIFF if n else _EXTRA_SIZE
            elif state == _EXTRA_SIZE:
                self._left = self._span("extra")
                self._state = _EXTRA if self._left else _ADJUST
            elif state == _ADJUST:
                self._seek_base()
                self._state = _END if self._to_pos == self.to_size else _DIFF_SIZE
            elif state == _END:
                if self._pos != self._end or self._src.readinto(self._buf):
                    raise OTAError("trailing_data", "bytes follow the end of the patch")
                self._state = _DONE
            else:
                break
        return got

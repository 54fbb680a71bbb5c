# zlib/gzip decompression: MicroPython's deflate.DeflateIO or CPython's zlib (used by ota/inflate.py).
from . import MICROPYTHON

# inflater(stream, fmt, wbits) -> readinto: a function readinto(buf) -> n that decompresses the
# zlib ("zlib") or gzip ("gzip") stream read from `stream`, with a window of 2**wbits bytes.
# n == 0 once the compressed stream has ended; it never reads `stream` past that end (CPython's
# zlib reads ahead, so the bytes it took past the end are handed back with stream.unread(n)).
# `stream` must subclass io.IOBase and implement readinto(): MicroPython's DeflateIO accepts no
# other Python object as its source ("stream operation not supported"), and reads it ONE byte per
# call. Errors: EOFError when `stream` ends early, OSError or ValueError on corrupt data (a bad
# header, a bad block, a distance beyond the window, a wrong Adler-32/CRC-32); what `stream`
# itself raises passes through unchanged.
if MICROPYTHON:

    def inflater(stream, fmt, wbits):
        import deflate

        return deflate.DeflateIO(stream, deflate.GZIP if fmt == "gzip" else deflate.ZLIB, wbits).readinto

else:

    def inflater(stream, fmt, wbits):
        import zlib

        d = zlib.decompressobj(wbits + 16 if fmt == "gzip" else wbits)
        inbuf = bytearray(256)

        def readinto(buf):
            while not d.eof:
                data = d.unconsumed_tail
                if not data:
                    n = stream.readinto(inbuf)
                    if not n:
                        raise EOFError("compressed stream ended early")
                    data = bytes(inbuf[:n])
                try:
                    out = d.decompress(data, len(buf))
                except zlib.error as e:
                    raise ValueError(str(e))
                if d.eof and d.unused_data:
                    stream.unread(len(d.unused_data))
                if out:
                    buf[: len(out)] = out
                    return len(out)
            return 0

        return readinto



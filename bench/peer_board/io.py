# Stand-in for the board's `io` on the MicroPython unix port, for bench/bench_peers.py only: the
# unix port's `io` has no BufferedWriter (MICROPY_PY_IO_BUFFEREDWRITER is on in ports/esp32's
# mpconfigport.h, not in the unix variants), and glenn20's library writes the slot through one.
# This file on the path shadows the extensible built-in `io`, re-exports it, and adds
# BufferedWriter as py/modio.c implements it (bufwriter_make_new, bufwriter_write,
# bufwriter_flush): one buffer of `size` bytes; write() fills it and, each time it is full, writes
# the WHOLE buffer to the stream (so a block device receives whole blocks); flush() writes what is
# left. On the board the class is C: bench_peers.py measures what this module holds and adds it to
# the peer's heap budget (its buffer, allocated per instance, stays in the budget as on a board).
import sys

_path = sys.path
sys.path = []  # the next import finds the built-in module, not this file
try:
    import io as _builtin
finally:
    sys.path = _path

BytesIO = _builtin.BytesIO
StringIO = _builtin.StringIO
IOBase = _builtin.IOBase
open = _builtin.open


class BufferedWriter:
    def __init__(self, stream, size):
        self._stream = stream
        self._buf = bytearray(size)
        self._len = 0

    def _write_exactly(self, data):
        # mp_stream_write_exactly: the stream's write() until all of it is taken
        mv = memoryview(data)
        done = 0
        while done < len(mv):
            n = self._stream.write(mv[done:])
            if not n:
                raise OSError(5)  # EIO: the C code asserts; a short write is an error here
            done += n

    def write(self, data):
        mv = memoryview(data)
        size = len(mv)
        pos = 0
        while pos < size:
            rem = len(self._buf) - self._len
            if size - pos < rem:
                self._buf[self._len:self._len + size - pos] = mv[pos:]
                self._len += size - pos
                return size
            self._buf[self._len:] = mv[pos:pos + rem]
            pos += rem
            self._write_exactly(self._buf)
            self._len = 0
        return size

    def flush(self):
        if self._len:
            self._write_exactly(memoryview(self._buf)[:self._len])
            self._len = 0

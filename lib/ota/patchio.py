# The byte reader both patch formats share (ota.delta's detools patch, ota.reloc's relocation
# patch): bytes from the inflated patch through one small buffer, and detools' size fields.
from .compat import const
from .errors import OTAError

_SIZE_BYTES = const(5)  # 34 bits, beyond any flash: a longer size field is refused, not summed up


class PatchReader:
    # Subclasses set _src (readinto), _buf and _old_size, and define _fill() (with their own message).
    _buf = bytearray(0)
    _pos = 0
    _end = 0
    _old_pos = 0
    _old_size = 0

    def _fill(self):
        raise NotImplementedError

    def _byte(self):
        if self._pos == self._end:
            self._fill()
        self._pos += 1
        return self._buf[self._pos - 1]

    def _size(self):
        # detools' size: 6 bits, a sign bit and a continuation bit, then 7 bits per byte
        b = self._byte()
        value = b & 0x3F
        negative = b & 0x40
        shift = 6
        while b & 0x80:
            if shift > 6 + 7 * (_SIZE_BYTES - 2):
                raise OTAError("corrupt_patch", "a size field is longer than %d bytes" % _SIZE_BYTES)
            b = self._byte()
            value |= (b & 0x7F) << shift
            shift += 7
        return -value if negative else value

    def _seek_base(self):
        # detools' adjustment after a chunk: the base position moves by a signed size, inside the base
        pos = self._old_pos + self._size()
        if pos < 0 or pos > self._old_size:
            raise OTAError("corrupt_patch", "base position %d is outside the %d-byte base" % (pos, self._old_size))
        self._old_pos = pos

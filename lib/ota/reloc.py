# Patch stage for relocation-aware deltas ("rdelta" artifacts): Courgette's idea for Xtensa.
#
#   RelocPatch(patch, old, to_size=None).readinto(buf) -> n    the new image; n == 0 only at the end
#
# When a build moves code and data, every pointer to what moved changes, and so does every
# PC-relative CALL or L32R whose target moved by another amount than the instruction: a plain
# bsdiff patch is mostly those changes. Here the base image is read through a transform T that
# redoes them from an address map (old address -> shift) sent in the patch; the patch is the
# difference between T(base) and the new image, and is mostly zeros. T only looks at a few bytes
# around each position (plus two bytes at a CALL's target), so it runs while the patch streams:
# no image in RAM. The loops are ota/compat/xtensa.py (viper on MicroPython).
#
# T, on the segments of the base image (an ESP32 app image: its own header says where each
# segment is loaded), in the address ranges the patch lists (code or data):
#   - data segments: an aligned word whose value lies in a listed range is moved by the map;
#   - code segments, inside a listed literal pool: the same for its words;
#   - code segments, elsewhere: a CALL4/8/12 whose target is an ENTRY and an L32R whose literal
#     lies in a listed pool are re-aimed, when the map moves the target by another amount than
#     the instruction (see compat/xtensa.py for the encodings and the overlap rule).
#
# Format (inside one zlib stream; every number is a detools size: see ota/delta.py):
#   header byte 0x70 (not a detools patch type), base size, new size
#   ranges  count (<= MAX_RANGES), then low, high, kind (0 data, 1 code): sorted, disjoint
#   map     count (<= MAX_MAP), then per piece: start (the first absolute, then the gap to the
#           previous start, > 0), shift (|shift| < 2**24); every start lies in a range
#   pools   count (<= MAX_POOLS), then per pool: gap after the previous pool (the first: its
#           address), length; 4-aligned, inside a code range, disjoint
#   chunks  as detools' sequential patch, but the diff bytes come as runs: zero-run length,
#           literal length, literal bytes, ... until the diff length is covered
#   and then the stream ends.
from array import array

from .compat import add_bytes, const
from .compat.xtensa import BIAS, code_rules, word_rules
from .delta import Patch
from .errors import OTAError

HEADER = const(0x70)
MAX_RANGES = const(8)
MAX_MAP = const(1024)
MAX_POOLS = const(512)
_MAX_SEGMENTS = const(16)  # ESP-IDF's limit (esp_app_format.h, ESP_IMAGE_MAX_SEGMENTS)
_MAX_SHIFT = const(0xFFFFFF)
_CHUNK = const(1024)  # base bytes transformed per pass (the scratch buffer holds them + context)
_CTX = const(4)
_CODE = const(1)

_DIFF_SIZE = const(0)
_ZERO_SIZE = const(1)
_ZERO = const(2)
_LIT_SIZE = const(3)
_LIT = const(4)
_EXTRA_SIZE = const(5)
_EXTRA = const(6)
_ADJUST = const(7)
_END = const(8)
_DONE = const(9)


def max_raw_patch_len(to_size):
    """A bound on the inflated patch (the Inflate stage stops a zip bomb there): the new image's
    size, the header at its largest, and generous room for chunk and run sizes."""
    return to_size + to_size // 4 + 16 * (MAX_MAP + MAX_POOLS) + 4096


class RelocPatch(Patch):
    def __init__(self, patch, old, to_size=None):
        self._src = patch
        self._old = old
        self._old_size = old.size
        self._buf = bytearray(512)
        self._pos = 0
        self._end = 0
        self._old_pos = 0
        self._to_pos = 0
        self._left = 0
        self._diff_left = 0
        self.to_size = None
        head = self._byte()
        if head != HEADER:
            raise OTAError("unsupported_patch", "not a relocation patch (header byte 0x%02x)" % head)
        base = self._size()
        if base != self._old_size:
            raise OTAError("wrong_base", "the patch was made for a %d-byte base, this one has %d bytes" % (base, self._old_size))
        size = self._size()
        if size < 0:
            raise OTAError("corrupt_patch", "negative new image size %d" % size)
        if to_size is not None and size != to_size:
            raise OTAError("size_mismatch", "the patch makes a %d-byte image, %d bytes were expected" % (size, to_size))
        self._empty = False
        self._read_tables()
        self._base = Transformed(old, self._rl, self._rh, self._rk, self._ms, self._md, self._ps, self._pe)
        self.to_size = size
        self._state = _DIFF_SIZE if size else _END

    # --- header: ranges, map, pools, read into arrays sized by their (bounded) counts

    def _count(self, what, most):
        n = self._size()
        if n < 0 or n > most:
            raise OTAError("corrupt_patch", "%s count %d is not in 0..%d" % (what, n, most))
        return n

    def _address(self, what, lo, hi):
        v = self._size()
        if v < lo or v > hi:
            raise OTAError("corrupt_patch", "%s 0x%x is out of range" % (what, v))
        return v

    def _read_tables(self):
        nr = self._count("range", MAX_RANGES)
        rl = self._rl = array("I", bytearray(4 * nr))
        rh = self._rh = array("I", bytearray(4 * nr))
        rk = self._rk = bytearray(nr)
        prev = 0
        for i in range(nr):
            rl[i] = self._address("range start", prev, 0x7FFFFFFE)
            rh[i] = prev = self._address("range end", rl[i] + 1, 0x7FFFFFFF)
            rk[i] = self._address("range kind", 0, 1)
        nm = self._count("map", MAX_MAP)
        ms = self._ms = array("I", bytearray(4 * nm))
        md = self._md = array("I", bytearray(4 * nm))
        start = 0
        for i in range(nm):
            start += self._address("map step", 1 if i else 0, 0x7FFFFFFF)
            if _range_of(start, rl, rh, nr) < 0:
                raise OTAError("corrupt_patch", "map entry %d (0x%x) lies outside the address ranges" % (i, start))
            ms[i] = start
            md[i] = BIAS + self._address("map shift", -_MAX_SHIFT, _MAX_SHIFT)
        np = self._count("pool", MAX_POOLS)
        ps = self._ps = array("I", bytearray(4 * np))
        pe = self._pe = array("I", bytearray(4 * np))
        end = 0
        for i in range(np):
            gap = self._size()
            if gap < 0:
                raise OTAError("corrupt_patch", "pool %d overlaps the pool before it" % i)
            start = end + gap
            end = start + self._address("pool length", 4, 0x7FFFFFFF)
            k = _range_of(start, rl, rh, nr)
            if (start | end) & 3 or k < 0 or rk[k] != _CODE or end > rh[k]:
                raise OTAError("corrupt_patch", "pool %d (0x%x..0x%x) is not an aligned part of a code range" % (i, start, end))
            ps[i] = start
            pe[i] = end

    # --- the chunks

    def _run(self, what):
        n = self._size()
        if n < 0 or n > self._diff_left:
            raise OTAError("corrupt_patch", "%s run of %d bytes at new offset %d is longer than its diff" % (what, n, self._to_pos))
        return n

    def readinto(self, buf):
        want = len(buf)
        got = 0
        mv = None
        while got < want:
            state = self._state
            if state == _ZERO or state == _LIT or state == _EXTRA:
                if mv is None:
                    mv = memoryview(buf)
                n = want - got
                if n > self._left:
                    n = self._left
                if state != _ZERO:
                    if self._pos == self._end:
                        self._fill()
                    if n > self._end - self._pos:
                        n = self._end - self._pos
                if state == _EXTRA:
                    mv[got : got + n] = memoryview(self._buf)[self._pos : self._pos + n]
                    self._pos += n
                else:
                    if n > _CHUNK:
                        n = _CHUNK
                    self._base.read_at(self._old_pos, mv[got : got + n])
                    if state == _LIT:
                        add_bytes(mv, got, self._buf, self._pos, n)
                        self._pos += n
                    self._old_pos += n
                    self._diff_left -= n
                self._to_pos += n
                self._left -= n
                got += n
                if not self._left:
                    if state == _ZERO:
                        self._state = _LIT_SIZE
                    elif state == _LIT:
                        self._state = _ZERO_SIZE if self._diff_left else _EXTRA_SIZE
                    else:
                        self._state = _ADJUST
            elif state == _ZERO_SIZE:
                self._left = self._run("zero")
                self._state = _ZERO if self._left else _LIT_SIZE
                self._empty = not self._left
            elif state == _LIT_SIZE:
                self._left = self._run("literal")
                if not self._left and self._empty:
                    raise OTAError("corrupt_patch", "an empty run at new offset %d" % self._to_pos)
                if self._left:
                    self._state = _LIT
                else:
                    self._state = _ZERO_SIZE if self._diff_left else _EXTRA_SIZE
            elif state == _DIFF_SIZE:
                n = self._span("diff")
                if self._old_pos + n > self._old_size:
                    raise OTAError(
                        "corrupt_patch",
                        "diff reads base bytes %d..%d, past the end of the %d-byte base"
                        % (self._old_pos, self._old_pos + n, self._old_size),
                    )
                self._diff_left = n
                self._state = _ZERO_SIZE if n else _EXTRA_SIZE
            elif state == _EXTRA_SIZE:
                self._left = self._span("extra")
                self._state = _EXTRA if self._left else _ADJUST
            elif state == _ADJUST:
                pos = self._old_pos + self._size()
                if pos < 0 or pos > self._old_size:
                    raise OTAError("corrupt_patch", "base position %d is outside the %d-byte base" % (pos, self._old_size))
                self._old_pos = pos
                self._state = _END if self._to_pos == self.to_size else _DIFF_SIZE
            elif state == _END:
                if self._pos != self._end or self._src.readinto(self._buf):
                    raise OTAError("trailing_data", "bytes follow the end of the patch")
                self._state = _DONE
            else:
                break
        return got


class Transformed:
    """The base image read through T: read_at(offset, mv) fills mv with T(base) bytes.
    The tables are arrays: ranges rl/rh/rk (kind), map ms/md (shift + BIAS), pools ps/pe."""

    def __init__(self, old, rl, rh, rk, ms, md, ps, pe):
        self._old = old
        self.size = old.size
        self._rl, self._rh, self._nr = rl, rh, len(rl)
        self._ms, self._md, self._nm = ms, md, len(ms)
        self._ps, self._pe, self._np = ps, pe, len(ps)
        self._segments = _segments(old, self.size, rl, rh, rk, self._nr)
        self._scratch = bytearray(_CHUNK + 2 * _CTX)
        self._two = bytearray(2)

    def _entry(self, t):
        # Is there an ENTRY instruction at address t of the base? (two bytes read from flash)
        for sf, se, va, kind in self._segments:
            if kind == _CODE and va <= t and t - va + 2 <= se - sf:
                two = self._two
                self._old.read_at(sf + t - va, two)
                return 1 if two[0] == 0x36 and two[1] & 0x0F == 1 else 0
        return 0

    def read_at(self, off, mv):
        n = len(mv)
        while n > _CHUNK:
            self._chunk(off, mv[:_CHUNK])
            off += _CHUNK
            mv = mv[_CHUNK:]
            n -= _CHUNK
        self._chunk(off, mv)

    def _chunk(self, off, mv):
        # mv[:] = T(base)[off:off + len(mv)], len(mv) <= _CHUNK
        n = len(mv)
        lo = off - _CTX if off > _CTX else 0
        hi = off + n + _CTX
        if hi > self.size:
            hi = self.size
        src = self._scratch
        self._old.read_at(lo, memoryview(src)[: hi - lo])
        mv[:] = memoryview(src)[off - lo : off - lo + n]
        for sf, se, va, kind in self._segments:
            a = off if off > sf else sf
            b = off + n if off + n < se else se
            if a >= b:
                continue
            if kind == _CODE:
                code_rules(src, lo, mv, off, a, b, sf, se, va, self._ms, self._md, self._nm,
                           self._ps, self._pe, self._np, self._entry)
            word_rules(src, lo, mv, off, a, b, sf, se, va, self._ms, self._md, self._nm,
                       self._rl, self._rh, self._nr, self._ps, self._pe, self._np, kind)


def _range_of(x, rl, rh, nr):
    for i in range(nr):
        if rl[i] <= x < rh[i]:
            return i
    return -1


def _segments(old, size, rl, rh, rk, nr):
    """[(file start, file end, load address, kind)] of the base image's segments that lie inside
    one listed range; none when the base is not an app image (T is then the identity)."""
    out = []
    if size < 24:
        return out
    head = bytearray(8)
    mv = memoryview(head)
    old.read_at(0, mv)
    if head[0] != 0xE9 or head[1] > _MAX_SEGMENTS:
        return out
    pos = 24
    for _ in range(head[1]):
        if pos + 8 > size:
            break
        old.read_at(pos, mv)
        va = head[0] | head[1] << 8 | head[2] << 16 | head[3] << 24
        n = head[4] | head[5] << 8 | head[6] << 16 | head[7] << 24
        pos += 8
        if n > size - pos:
            break
        k = _range_of(va, rl, rh, nr)
        if k >= 0 and n and va + n <= rh[k]:
            out.append((pos, pos + n, va, rk[k]))
        pos += n
    return out

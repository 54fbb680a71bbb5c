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
# Format (inside one zlib stream; every number is a detools size, as in ota/delta.py: first byte
# 0x80 more | 0x40 negative | 6 low bits, then 0x80 more | 7 bits each, least significant first):
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
from .errors import OTAError
from .patchio import PatchReader

HEADER = const(0x70)
MAX_RANGES = const(8)
MAX_MAP = const(256)  # 8 bytes of heap each: a patch cannot ask for more
MAX_POOLS = const(128)
_MAX_SEGMENTS = const(16)  # ESP-IDF's limit (esp_app_format.h, ESP_IMAGE_MAX_SEGMENTS)
_MAX_SHIFT = const(0xFFFFFF)

# Not ota.delta.Patch's subclass, on purpose: on MicroPython every loaded module costs heap, and
# this format must not load that one (measured 4.4 KB on the 64-bit unix port).
_CHUNK_SIZE = const(0)  # states
_DIFF = const(2)
_EXTRA_SIZE = const(3)
_EXTRA = const(4)
_ADJUST = const(5)
_END = const(6)
_DONE = const(7)


def max_raw_patch_len(to_size):
    """A bound on the inflated patch (the Inflate stage stops a zip bomb there): the new image's
    size, the header at its largest, and generous room for chunk and run sizes."""
    return to_size + to_size // 4 + 16 * (MAX_MAP + MAX_POOLS) + 4096


class RelocPatch(PatchReader):
    """Also the base read through T: read_at(offset, mv) fills mv with T(base) bytes (the chunks
    read the base this way; the host tool computes T(old) with it)."""

    def __init__(self, patch, old, to_size=None):
        self._src = patch
        self._base = old
        self._old_size = size = old.size
        self._buf = bytearray(512)
        self._pos = self._end = self._old_pos = self._to_pos = 0
        self._left = self._zeros = self._diff_left = self._runs_left = 0
        self.to_size = None
        if self._byte() != HEADER:
            raise OTAError("unsupported_patch", "not a relocation patch")
        if self._size() != size:
            raise OTAError("wrong_base", "the patch was made for another base size than %d bytes" % size)
        n = self._size()
        if n < 0 or to_size is not None and n != to_size:
            raise OTAError("size_mismatch", "the patch makes a %d-byte image, %s bytes were expected" % (n, to_size))
        self._read_tables(old)
        self.to_size = n
        self._state = _CHUNK_SIZE if n else _END

    def _read_tables(self, old):
        # ranges (start gap, length, kind), map (start gap, shift), pools (start gap, length):
        # arrays sized by their bounded counts, every entry checked
        nr = self._number(0, MAX_RANGES, "range count")
        rl = array("I", range(nr))
        rh = array("I", range(nr))
        rk = bytearray(nr)
        end = 0
        for i in range(nr):
            rl[i] = end = self._number(end, 0x7FFFFFFE, "range start")
            rh[i] = end = self._number(end + 1, 0x7FFFFFFF, "range end")
            rk[i] = self._number(0, 1, "range kind")
        nm = self._number(0, MAX_MAP, "map count")
        ms = array("I", range(nm))
        md = array("I", range(nm))
        self._tab = (rl, rh)  # for _range(); then (ranges, map, pools): few attributes, a small dict
        for i in range(nm):
            end = ms[i] = self._number(end + 1 if i else 0, 0x7FFFFFFF, "map start")
            if self._range(end) < 0:
                raise OTAError("corrupt_patch", "map entry %d (0x%x) is outside the address ranges" % (i, end))
            v = self._size()
            if v < -_MAX_SHIFT or v > _MAX_SHIFT:
                raise OTAError("corrupt_patch", "map shift %d is out of range" % v)
            md[i] = BIAS + v
        np = self._number(0, MAX_POOLS, "pool count")
        ps = array("I", range(np))
        pe = array("I", range(np))
        end = 0
        for i in range(np):
            ps[i] = a = self._number(end, 0x7FFFFFFB, "pool start")  # after the previous pool: none overlap
            pe[i] = end = self._number(a + 4, 0x7FFFFFFF, "pool end")
            k = self._range(a)
            if (a | end) & 3 or k < 0 or not rk[k] or end > rh[k]:
                raise OTAError("corrupt_patch", "pool %d (0x%x..0x%x) is not an aligned part of a code range" % (i, a, end))
        self._tab = (rl, rh, ms, md, ps, pe)
        # the segments of the base image (its own header says where each one is loaded) that
        # lie in a listed range: 4 numbers each (file start, file end, load address, kind)
        self._segments = segs = array("I")
        self._ctx = bytearray(10)  # the 4 + 4 base bytes around a read; 2 for _entry
        head = memoryview(self._ctx)[:8]
        pos = 24
        if old.size < pos:
            return  # not an app image: T is the identity
        old.read_at(0, head)
        if head[0] != 0xE9 or head[1] > _MAX_SEGMENTS:
            return
        for _ in range(head[1]):
            if pos + 8 > old.size:
                break
            old.read_at(pos, head)
            va = head[0] | head[1] << 8 | head[2] << 16 | head[3] << 24
            n = head[4] | head[5] << 8 | head[6] << 16 | head[7] << 24
            pos += 8
            if n > old.size - pos:
                break
            k = self._range(va)
            if k >= 0 and n and va + n <= rh[k]:
                for v in (pos, pos + n, va, rk[k]):
                    segs.append(v)
            pos += n

    # --- the patch bytes

    def _fill(self):
        n = self._src.readinto(self._buf)
        if not n:
            raise OTAError("truncated", "the patch ends after %d bytes of the new image" % self._to_pos)
        self._pos = 0
        self._end = n

    def readinto(self, buf):
        want = len(buf)
        got = 0
        mv = memoryview(buf)
        while got < want:
            state = self._state
            if state == _DIFF:
                # T(base) for as much of the diff as fits, then the literal runs added to it
                n = min(want - got, self._diff_left)
                self.read_at(self._old_pos, mv[got : got + n])
                i = 0
                while i < n:
                    if not self._zeros and not self._left:
                        z = self._number(0, self._runs_left, "zero run")
                        k = self._number(0, self._runs_left - z, "literal run")
                        if not z + k:
                            raise OTAError("corrupt_patch", "an empty run at new offset %d" % (self._to_pos + i))
                        self._zeros = z
                        self._left = k
                        self._runs_left -= z + k
                    if self._zeros:
                        k = min(self._zeros, n - i)
                        self._zeros -= k
                    else:
                        if self._pos == self._end:
                            self._fill()
                        k = min(self._left, n - i, self._end - self._pos)
                        add_bytes(mv, got + i, self._buf, self._pos, k)
                        self._pos += k
                        self._left -= k
                    i += k
                self._old_pos += n
                self._to_pos += n
                self._diff_left -= n
                got += n
                if not self._diff_left:
                    self._state = _EXTRA_SIZE
            elif state == _EXTRA:
                if self._pos == self._end:
                    self._fill()
                n = min(want - got, self._left, self._end - self._pos)
                mv[got : got + n] = memoryview(self._buf)[self._pos : self._pos + n]
                self._pos += n
                self._left -= n
                self._to_pos += n
                got += n
                if not self._left:
                    self._state = _ADJUST
            elif state == _CHUNK_SIZE:
                n = self._number(0, self.to_size - self._to_pos, "diff length")
                if self._old_pos + n > self._old_size:
                    raise OTAError("corrupt_patch", "diff reads past the end of the %d-byte base" % self._old_size)
                self._diff_left = self._runs_left = n
                self._state = _DIFF if n else _EXTRA_SIZE
            elif state == _EXTRA_SIZE:
                self._left = self._number(0, self.to_size - self._to_pos, "extra length")
                self._state = _EXTRA if self._left else _ADJUST
            elif state == _ADJUST:
                self._seek_base()
                self._state = _END if self._to_pos == self.to_size else _CHUNK_SIZE
            elif state == _END:
                if self._pos != self._end or self._src.readinto(self._buf):
                    raise OTAError("trailing_data", "bytes follow the end of the patch")
                self._state = _DONE
            else:
                break
        return got

    # --- the tables

    def _number(self, lo, hi, what):
        # lo + the next size, which must stay within hi
        v = lo + self._size()
        if v < lo or v > hi:
            raise OTAError("corrupt_patch", "%s %d at new offset %d is out of range (%d..%d)" % (what, v, self._to_pos, lo, hi))
        return v

    def _range(self, x):
        rl, rh = self._tab[0], self._tab[1]
        for i in range(len(rl)):
            if rl[i] <= x < rh[i]:
                return i
        return -1

    def _entry(self, t):
        # Is there an ENTRY instruction at address t of the base? (two bytes read from flash)
        segs = self._segments
        for i in range(0, len(segs), 4):
            sf, se, va = segs[i], segs[i + 1], segs[i + 2]
            if segs[i + 3] and va <= t and t - va + 2 <= se - sf:
                two = memoryview(self._ctx)[8:]  # (read_at's ctx is the first 8 bytes)
                self._base.read_at(sf + t - va, two)
                return 1 if two[0] == 0x36 and two[1] & 0x0F == 1 else 0
        return 0

    def read_at(self, off, mv):
        # the base bytes in place, their 4 neighbours on each side in ctx, then T on each segment
        n = len(mv)
        base = self._base
        base.read_at(off, mv)
        ctx = self._ctx
        segs = self._segments
        rl, rh, ms, md, ps, pe = self._tab
        fresh = False
        for i in range(0, len(segs), 4):
            sf, se, va, kind = segs[i], segs[i + 1], segs[i + 2], segs[i + 3]
            a = max(off, sf)
            b = min(off + n, se)
            if a < b:
                if not fresh:  # read once per call, where a segment needs it
                    fresh = True
                    k = min(off, 4)
                    if k:
                        base.read_at(off - k, memoryview(ctx)[4 - k : 4])
                    k = min(self._old_size - off - n, 4)
                    if k > 0:
                        base.read_at(off + n, memoryview(ctx)[4 : 4 + k])
                if kind:
                    code_rules(mv, off, n, ctx, a, b, sf, se, va, ms, md, len(ms), ps, pe, len(ps), self._entry)
                word_rules(mv, off, n, ctx, a, b, sf, se, va, ms, md, len(ms), rl, rh, len(rl), ps, pe, len(ps), kind)

"""Relocation-aware delta patches ("rdelta" artifacts) on the host: Courgette's idea for the ESP32.

make_patch(old, new) builds what ota.reloc.RelocPatch applies (the format is described there):
  1. a first diff (detools' sequential bsdiff) aligns old and new; what the aligned bytes say about
     addresses gives the address map: where a pointer word, a CALL's target or an L32R's literal
     was x in the old image and y in the new one, the old address x moved by y - x. The map is the
     piecewise-constant fit of those votes (pieces with a single vote are dropped as noise);
  2. the literal pools: clusters of aligned words in code that L32R instructions load and that
     hold addresses, the most used first;
  3. T(old) is computed with the device's own code (ota.reloc.RelocPatch.read_at), diffed against new,
     and the diff bytes are coded as zero runs and literal runs; the whole is one zlib stream.
Only ESP32 images (Xtensa LX6, ESP-IDF's memory map) are supported: other chips get today's
format. `apply_patch` runs the device code.
"""
import bisect
import collections
import re
import struct

from ota import reloc
from ota.inflate import WBITS, Inflate

from . import delta
from .errors import ToolError

# ESP32 address ranges (ESP-IDF components/soc/esp32/include/soc/soc.h: SOC_DROM_LOW/HIGH,
# SOC_RTC_DRAM_LOW/HIGH, SOC_DRAM_LOW/HIGH, SOC_IRAM_LOW/HIGH, SOC_RTC_IRAM_LOW/HIGH,
# SOC_IROM_LOW/HIGH, SOC_RTC_DATA_LOW/HIGH; the ESP32 Technical Reference Manual, "System and
# Memory", address mapping): (low, high, kind), kind 1 = instructions.
ESP32_RANGES = (
    (0x3F400000, 0x3F800000, 0),  # DROM: flash, data bus (.rodata)
    (0x3FF80000, 0x3FF82000, 0),  # RTC FAST memory, data bus
    (0x3FFAE000, 0x40000000, 0),  # DRAM (.data, .bss)
    (0x40080000, 0x400A0000, 1),  # IRAM (.iram0.text)
    (0x400C0000, 0x400C2000, 1),  # RTC FAST memory, instruction bus
    (0x400D0000, 0x40400000, 1),  # IROM: flash, instruction bus (.flash.text)
    (0x50000000, 0x50002000, 0),  # RTC SLOW memory
)
ESP32_CHIP_ID = 0x0000

MAP_LIMIT = 192  # pieces the host sends (ota.reloc.MAX_MAP allows more): 8 bytes of device heap each
POOL_LIMIT = 64  # pools the host sends (ota.reloc.MAX_POOLS allows more): 8 bytes of heap each
POOL_GAP = 64  # literal words at most this far apart are one pool
POOL_MIN_REFS = 8  # a pool that fewer L32R candidates load is not worth its bytes


def supported(image):
    """Is `image` an app image this format knows (an ESP32's)?"""
    return len(image) >= 24 and image[0] == 0xE9 and struct.unpack_from("<H", image, 12)[0] == ESP32_CHIP_ID


class _Image:
    """An app image's segments: file offsets <-> load addresses."""

    def __init__(self, data):
        self.data = data
        self.segs = []  # (file offset, address, length, kind or None)
        if len(data) < 24 or data[0] != 0xE9:
            return
        pos = 24
        for _ in range(data[1]):
            if pos + 8 > len(data):
                break
            va, n = struct.unpack_from("<II", data, pos)
            pos += 8
            if n > len(data) - pos:
                break
            self.segs.append((pos, va, n, _kind(va, n)))
            pos += n
        self._fo = [s[0] for s in self.segs]
        self._va = sorted((s[1], s[0], s[2]) for s in self.segs)

    def address(self, off):
        k = bisect.bisect_right(self._fo, off) - 1
        if k < 0:
            return None
        fo, va, n, _ = self.segs[k]
        return va + off - fo if off < fo + n else None

    def offset(self, va, length=1):
        k = bisect.bisect_right(self._va, (va, 1 << 40)) - 1
        if k < 0:
            return None
        sva, fo, n = self._va[k]
        return fo + va - sva if va + length <= sva + n else None

    def word(self, va):
        off = self.offset(va, 4)
        return struct.unpack_from("<I", self.data, off)[0] if off is not None else None

    def is_entry(self, va):
        off = self.offset(va, 2)
        return off is not None and self.data[off] == 0x36 and self.data[off + 1] & 0x0F == 1


def _kind(va, n):
    for lo, hi, kind in ESP32_RANGES:
        if lo <= va and va + n <= hi:
            return kind
    return None


def _range(v):
    for i, (lo, hi, _) in enumerate(ESP32_RANGES):
        if lo <= v < hi:
            return i
    return -1


_CALL = re.compile(b"[\x15\x25\x35\x55\x65\x75\x95\xa5\xb5\xd5\xe5\xf5]")
_L32R = re.compile(b"[\x01\x11\x21\x31\x41\x51\x61\x71\x81\x91\xa1\xb1\xc1\xd1\xe1\xf1]")


def _call_target(b, o, pc):
    off = (b[o] >> 6) | (b[o + 1] << 2) | (b[o + 2] << 10)
    if off & 0x20000:
        off -= 0x40000
    return (pc & ~3) + (off << 2) + 4


def _l32r_literal(b, o, pc):
    return ((pc + 3) & ~3) + (((b[o + 1] | (b[o + 2] << 8)) - 0x10000) << 2)


def _l32r_sites(img):
    """(pc, literal address) of every L32R-looking instruction in the image's code segments."""
    for fo, va, n, kind in img.segs:
        if kind != 1:
            continue
        seg = img.data[fo:fo + n]
        for m in _L32R.finditer(seg):
            q = m.start()
            if q + 3 <= n:
                yield va + q, _l32r_literal(seg, q, va + q)


def find_pools(old, limit=POOL_LIMIT):
    """[(start, end)] literal pools of the old image: clusters of address-valued words that L32R
    candidates load, at most `limit`, the most loaded ones."""
    img = _Image(old)
    refs = collections.Counter()
    for _, lit in _l32r_sites(img):
        w = img.word(lit)
        if w is not None and _range(w) >= 0 and _kind(lit, 4) == 1:
            refs[lit] += 1
    pools = []
    for a in sorted(refs):
        if pools and a - pools[-1][1] <= POOL_GAP and _kind(pools[-1][0], a + 4 - pools[-1][0]) == 1:
            pools[-1][1] = a + 4
            pools[-1][2] += refs[a]
        else:
            pools.append([a, a + 4, refs[a]])
    pools = [p for p in pools if p[2] >= POOL_MIN_REFS]
    pools.sort(key=lambda p: -p[2])
    return sorted((p[0], p[1]) for p in pools[:limit])


def useful_pools(old, pools, pieces, least=2):
    """The pools where T changes something under this map: L32R instructions whose literal in
    the pool moves by another amount than they do, or address words in it that move. A pool
    that changes nothing costs its bytes in the patch for nothing."""
    img = _Image(old)
    ms = [p[0] for p in pieces]

    def shift(a):
        k = bisect.bisect_right(ms, a)
        return pieces[k - 1][1] if k else 0

    ps = [p[0] for p in pools]
    gain = [0] * len(pools)
    for i, (a, b) in enumerate(pools):
        for w in range(a, b, 4):
            v = img.word(w)
            if v is not None and _range(v) >= 0 and shift(v):
                gain[i] += 1
    for pc, lit in _l32r_sites(img):
        k = bisect.bisect_right(ps, lit) - 1
        if k >= 0 and lit < pools[k][1] and shift(lit) != shift(pc):
            gain[k] += 1
    return [p for p, g in zip(pools, gain) if g >= least]


def _chunks(raw):
    """(old offset, new offset, diff length, extra length, adjustment, diff bytes, extra bytes) of
    a detools sequential patch (compression none)."""
    pos = 1
    to_size, pos = _size_at(raw, pos)
    if to_size:
        _, pos = _size_at(raw, pos)  # data-format size: 0
    op = np_ = 0
    while np_ < to_size:
        d, pos = _size_at(raw, pos)
        diff = raw[pos:pos + d]
        pos += d
        e, pos = _size_at(raw, pos)
        extra = raw[pos:pos + e]
        pos += e
        adj, pos = _size_at(raw, pos)
        yield op, np_, d, e, adj, diff, extra
        op += d + adj
        np_ += d + e


def _size_at(b, pos):
    c = b[pos]
    pos += 1
    v = c & 0x3F
    neg = c & 0x40
    sh = 6
    while c & 0x80:
        c = b[pos]
        pos += 1
        v |= (c & 0x7F) << sh
        sh += 7
    return (-v if neg else v), pos


def _votes(old, new, pools):
    """(old address, shift) votes from the aligned bytes of a first diff."""
    O, N = _Image(old), _Image(new)
    ps, pe = [p[0] for p in pools], [p[1] for p in pools]

    def in_pool(a):
        k = bisect.bisect_right(ps, a) - 1
        return k >= 0 and a < pe[k]

    votes = []
    for op, np_, d, _, _, _, _ in _chunks(delta.raw_patch(old, new)):
        o = op
        while o < op + d:
            k = bisect.bisect_right(O._fo, o) - 1
            if k < 0 or o >= O.segs[k][0] + O.segs[k][2]:
                o += 1
                continue
            fo, va, n, kind = O.segs[k]
            end = min(op + d, fo + n)
            shift = np_ - op  # new offset - old offset
            for x in range(o, end, 64):  # where the bytes themselves went
                nva = N.address(x + shift)
                if nva is not None and _range(nva) == _range(va + x - fo):
                    votes.append((va + x - fo, nva - (va + x - fo)))
            a0 = o + ((fo - va - o) & 3)
            for x in range(a0, end - 3, 4):  # pointer words
                if kind == 1 and not in_pool(va + x - fo):
                    continue
                v = struct.unpack_from("<I", old, x)[0]
                r = _range(v)
                if r < 0 or x + shift + 4 > len(new):
                    continue
                w = struct.unpack_from("<I", new, x + shift)[0]
                if _range(w) == r:
                    votes.append((v, w - v))
            if kind == 1:
                seg = old[o:end]
                for m in _CALL.finditer(seg):
                    x = o + m.start()
                    y = x + shift
                    if x + 3 > end or y + 3 > len(new) or new[y] != old[x]:
                        continue
                    t = _call_target(old, x, va + x - fo)
                    npc = N.address(y)
                    if npc is None or not O.is_entry(t):
                        continue
                    t2 = _call_target(new, y, npc)
                    if N.is_entry(t2):
                        votes.append((t, t2 - t))
                for m in _L32R.finditer(seg):
                    x = o + m.start()
                    y = x + shift
                    if x + 3 > end or y + 3 > len(new) or new[y] != old[x]:
                        continue
                    lit = _l32r_literal(old, x, va + x - fo)
                    npc = N.address(y)
                    if npc is None or not in_pool(lit):
                        continue
                    votes.append((lit, _l32r_literal(new, y, npc) - lit))
            o = end
    return votes


def build_map(votes, limit=MAP_LIMIT):
    """[(start, shift)]: the piecewise-constant fit of the votes, at most `limit` pieces. Runs of
    equal votes become pieces; runs with few votes are dropped (noise, or not worth a piece)."""
    by_address = collections.defaultdict(collections.Counter)
    for v, s in votes:
        by_address[v][s] += 1
    runs = []
    for v in sorted(by_address):
        s, n = by_address[v].most_common(1)[0]  # the majority where votes disagree
        if runs and runs[-1][1] == s:
            runs[-1][2] += n
        else:
            runs.append([v, s, n])
    floor = 1
    while True:
        kept = []
        for r in runs:
            if r[2] > floor:
                if kept and kept[-1][1] == r[1]:
                    kept[-1][2] += r[2]
                else:
                    kept.append(list(r))
        if len(kept) <= limit:
            break
        floor += 1
        runs = kept
    pieces = []
    for v, s, _ in kept:
        if abs(s) < 1 << 24 and _range(v) >= 0 and (not pieces or v > pieces[-1][0]):
            pieces.append((v, s))
    return pieces


def transform(old, ranges, pieces, pools):
    """T(old), computed by the device's code (ota.reloc.RelocPatch reads the base through T)."""
    stage = reloc.RelocPatch(delta.BytesSource(encode(len(old), 0, ranges, pieces, pools, b"")), delta.BytesBase(old))
    out = bytearray(len(old))
    stage.read_at(0, memoryview(out))
    return bytes(out)


def _size(n):
    # a detools size (ota.delta.Patch._size reads it)
    from detools.bsdiff import pack_size

    return pack_size(n)


def encode(old_size, new_size, ranges, pieces, pools, raw):
    """The raw relocation patch (ota.reloc): header, tables, and the chunks of the detools patch
    `raw` (made against T(old); b"" for none) with their diff bytes as zero and literal runs."""
    out = bytearray([reloc.HEADER])
    out += _size(old_size) + _size(new_size)
    out += _size(len(ranges))
    end = 0
    for lo, hi, kind in ranges:
        out += _size(lo - end) + _size(hi - lo - 1) + _size(kind)
        end = hi
    out += _size(len(pieces))
    prev = None
    for v, s in pieces:
        out += _size(v if prev is None else v - prev - 1) + _size(s)
        prev = v
    out += _size(len(pools))
    end = 0
    for a, b in pools:
        out += _size(a - end) + _size(b - a - 4)
        end = b
    for _, _, d, e, adj, diff, extra in _chunks(raw) if raw else ():
        out += _size(d)
        out += runs(diff)
        out += _size(e) + extra + _size(adj)
    return bytes(out)


def runs(diff):
    """Diff bytes as (zero run, literal run, literal bytes) pairs; zero gaps shorter than 3 bytes
    stay inside a literal run (a new pair costs at least 2 bytes)."""
    out = bytearray()
    n = len(diff)
    i = 0
    while i < n:
        j = i
        while j < n and diff[j] == 0:
            j += 1
        k = j
        while k < n:
            if diff[k]:
                k += 1
                continue
            z = k
            while z < n and diff[z] == 0 and z - k < 3:
                z += 1
            if z == n or z - k >= 3:
                break
            k = z
        out += _size(j - i) + _size(k - j) + diff[j:k]
        i = k
    return bytes(out)


def make_raw(old, new, pool_limit=POOL_LIMIT, map_limit=MAP_LIMIT):
    """(raw patch, facts) from `old` to `new` (ESP32 app images)."""
    if not supported(old) or not supported(new):
        raise ToolError("relocation-aware deltas are for ESP32 app images only", "use the plain delta format")
    pools = find_pools(old, pool_limit)
    pieces = build_map(_votes(old, new, pools), map_limit)
    pools = useful_pools(old, pools, pieces)
    t_old = transform(old, ESP32_RANGES, pieces, pools)
    raw = encode(len(old), len(new), ESP32_RANGES, pieces, pools, delta.raw_patch(t_old, new))
    return raw, {"map": len(pieces), "pools": len(pools), "raw": len(raw)}


def make_patch(old, new, wbits=WBITS, level=delta.LEVEL):
    """The rdelta artifact turning `old` into `new`: the raw patch, zlib-compressed."""
    if not 9 <= wbits <= 15:
        raise ToolError("wbits must be between 9 and 15, not %d" % wbits, "the device default is %d" % WBITS)
    return delta.zlib_compress(make_raw(old, new)[0], wbits, level)


def apply_patch(old, patch, wbits=WBITS, to_size=None, max_out=None):
    """Apply an rdelta artifact to `old` with the device code; return the new image (OTAError on
    a bad patch)."""
    if max_out is None:
        max_out = reloc.max_raw_patch_len(to_size if to_size is not None else 1 << 26)
    stage = reloc.RelocPatch(Inflate(delta.BytesSource(patch), "zlib", wbits, max_out), delta.BytesBase(old), to_size)
    return delta.drain(stage)

# The plain-Python twins of ota/compat/xtensa.py's viper loops (CPython, and the host tool over
# whole images): same arguments, same bytes out. Kept in their own module so that MicroPython
# never loads them (a module's bytecode is heap there).
from bisect import bisect_right

from .xtensa import BIAS


def code_rules(buf, d0, n, ctx, a, b, sf, se, va, ms, md, nm, ps, pe, np, entry):
    src, s0 = _original(buf, d0, n, ctx)
    return _code_rules(src, s0, buf, d0, a, b, sf, se, va, ms, md, nm, ps, pe, np, entry)


def word_rules(buf, d0, n, ctx, a, b, sf, se, va, ms, md, nm, rl, rh, nr, ps, pe, np, pooled):
    src, s0 = _original(buf, d0, n, ctx)
    return _word_rules(src, s0, buf, d0, a, b, sf, se, va, ms, md, nm, rl, rh, nr, ps, pe, np, pooled)


def _original(buf, d0, n, ctx):
    # the base bytes at file offsets d0 - 4 .. d0 + n + 4 in one piece, and that first offset
    return bytes(ctx[:4]) + bytes(memoryview(buf)[:n]) + bytes(ctx[4:8]), d0 - 4


def _delta(ms, md, x):
    k = bisect_right(ms, x)
    return md[k - 1] - BIAS if k else 0


def _put3(dst, i, lo, hi, three):
    for j in range(3):
        if lo <= i + j < hi:
            dst[i + j] = three[j]


def _code_rules(src, s0, dst, d0, a, b, sf, se, va, ms, md, nm, ps, pe, np, entry):
    # Candidates are only bytes whose low nibble is 5 or 1 (CALLn, L32R): found with
    # bytes.translate + find, then the same tests as the viper twin, in the same order.
    lo_q = max(sf, a - 4)
    end = min(b, se - 3)
    if end <= lo_q:
        return 0
    view = bytes(memoryview(src)[lo_q - s0 : end - s0])
    found_at = {}  # q -> instruction found there (for the two positions after it)
    done = 0
    for q in _candidates(view, lo_q):
        pc = va + q - sf
        k = bisect_right(pe, pc)  # first pool ending after pc
        if k < np and ps[k] <= pc + 2:
            continue
        b0 = src[q - s0]
        b1 = src[q + 1 - s0]
        b2 = src[q + 2 - s0]
        dpc = _delta(ms, md, pc)
        new = None
        if b0 & 0x0F == 5:
            if not b0 & 0x30:
                continue
            off = (b0 >> 6) | (b1 << 2) | (b2 << 10)
            if off & 0x20000:
                off -= 0x40000
            t = (pc & ~3) + (off << 2) + 4
            dt = _delta(ms, md, t)
            if dt == dpc or not entry(t):
                continue
            off = (t + dt) - ((pc + dpc) & ~3) - 4
            if not off & 3 and -0x80000 <= off < 0x80000:
                off = (off >> 2) & 0x3FFFF
                new = ((b0 & 0x3F) | ((off & 3) << 6), (off >> 2) & 0xFF, off >> 10)
        else:
            lit = ((pc + 3) & ~3) + (((b1 | (b2 << 8)) - 0x10000) << 2)
            k = bisect_right(ps, lit)
            if not k or lit >= pe[k - 1]:
                continue
            dl = _delta(ms, md, lit)
            if dl == dpc:
                continue
            off = (lit + dl) - ((pc + dpc + 3) & ~3)
            if not off & 3 and -0x40000 <= off < 0:
                off = (off >> 2) & 0xFFFF
                new = (b0, off & 0xFF, off >> 8)
        found_at[q] = new
        if q - 1 not in found_at and q - 2 not in found_at and new is not None:
            _put3(dst, q - d0, a - d0, b - d0, new)
            done += 1
    return done


_NIBBLE = bytes(1 if (i & 0x0F) in (1, 5) else 0 for i in range(256))


def _candidates(view, base):
    # offsets (plus base) of the bytes whose low nibble is 1 or 5, in order
    marks = view.translate(_NIBBLE)
    i = marks.find(1)
    while i >= 0:
        yield base + i
        i = marks.find(1, i + 1)


def _word_rules(src, s0, dst, d0, a, b, sf, se, va, ms, md, nm, rl, rh, nr, ps, pe, np, pooled):
    q = max(sf, a - 3)
    q += (sf - va - q) & 3
    done = 0
    while q < b and q + 4 <= se:
        w = va + q - sf
        if pooled:
            k = bisect_right(ps, w)
            if not k or w + 4 > pe[k - 1]:
                q += 4
                continue
        i = q - s0
        v = src[i] | (src[i + 1] << 8) | (src[i + 2] << 16) | (src[i + 3] << 24)
        for r in range(nr):
            if rl[r] <= v < rh[r]:
                dv = _delta(ms, md, v)
                if dv:
                    v += dv
                    for j in range(4):
                        if a <= q + j < b:
                            dst[q + j - d0] = (v >> (8 * j)) & 0xFF
                    done += 1
                break
        q += 4
    return done

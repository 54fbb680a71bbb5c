"""ota.reloc (rdelta) on hostile patches: SECURITY.md says a relocation patch is refused unless its
tables are "ordered non-overlapping tables inside the listed address ranges" and that every parser
raises only OTAError. Mutated real patches and patches with random tables (ranges, map pieces with
extreme shifts, literal pools) are applied with the device's code. Property: only OTAError, no hang.
(A 240 s run of the same generator, 43,120 cases, found nothing either.)"""
import random
import signal
import time
import zlib

from ota import reloc
from ota.errors import OTAError
from ota.inflate import Inflate
from ota_tool import delta, images, rdelta

BUDGET_S = 20


def _mutate(rnd, b):
    b = bytearray(b)
    for _ in range(rnd.choice((1, 1, 2, 3, 8))):
        op = rnd.random()
        if op < 0.5 and b:
            b[rnd.randrange(min(len(b), 400) if rnd.random() < 0.7 else len(b))] = rnd.randrange(256)
        elif op < 0.7 and b:
            i = rnd.randrange(len(b))
            del b[i:i + rnd.randrange(1, 8)]
        elif op < 0.9:
            i = rnd.randrange(len(b) + 1)
            b[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 6)))
        else:
            b = b[:rnd.randrange(len(b) + 1)]
    return bytes(b)


def _tables(rnd):
    ranges, x = [], rnd.choice((0, 0x3F000000, 0x3FF00000))
    for _ in range(rnd.randrange(0, 9)):
        lo = x + rnd.randrange(0, 1 << rnd.randrange(1, 28))
        hi = lo + 1 + rnd.randrange(0, 1 << rnd.randrange(1, 28))
        if hi > 0x7FFFFFFF:
            break
        ranges.append((lo, hi, rnd.randrange(2)))
        x = hi
    pieces, last = [], -1
    for _ in range(rnd.randrange(0, 40)):
        if not ranges:
            break
        lo, hi, _ = rnd.choice(ranges)
        v = rnd.randrange(lo, hi)
        if v > last:
            pieces.append((v, rnd.randrange(-0xFFFFFF, 0x1000000)))
            last = v
    pools, e = [], 0
    for lo, hi, k in ranges:
        if k and rnd.random() < 0.7:
            a = (lo + 3) & ~3
            while a + 4 <= hi and len(pools) < 128 and rnd.random() < 0.8:
                b = a + 4 * rnd.randrange(1, 200)
                if b > hi:
                    break
                if a >= e:
                    pools.append((a, b))
                    e = b
                a = b + 4 * rnd.randrange(0, 50)
    return ranges, pieces, pools


def test_hostile_relocation_patches_raise_only_otaerror():
    old = images.app_image("1.0.0", size=48 * 1024, seed=5)
    new = images.app_image("1.0.1", size=48 * 1024, seed=5, base=old, changes=30)
    raw, _ = rdelta.make_raw(old, new)
    plain = delta.raw_patch(old, new)
    rnd = random.Random(14)
    bad = {}

    def alarm(*_):
        raise TimeoutError("hang")
    prev = signal.signal(signal.SIGALRM, alarm)
    n = 0
    t_end = time.time() + BUDGET_S
    try:
        while time.time() < t_end:
            n += 1
            if rnd.random() < 0.5:
                m = _mutate(rnd, raw)
            else:
                r, p, q = _tables(rnd)
                m = rdelta.encode(len(old), len(new), r, p, q, plain if rnd.random() < 0.3 else b"")
                if rnd.random() < 0.5:
                    m = _mutate(rnd, m)
            signal.alarm(5)
            try:
                st = reloc.RelocPatch(Inflate(delta.BytesSource(zlib.compress(m)), "zlib", 15,
                                              reloc.max_raw_patch_len(len(new))), delta.BytesBase(old), len(new))
                delta.drain(st)
            except OTAError:
                pass
            except Exception as e:
                bad.setdefault(type(e).__name__, m)
            finally:
                signal.alarm(0)
    finally:
        signal.signal(signal.SIGALRM, prev)
    assert not bad, "%d cases: %s" % (n, sorted(bad))

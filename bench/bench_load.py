"""Fleet load on loopback: `ota-tool serve`, the gateway (`serve --mirror`) and nginx, side by side.

    python bench/bench_load.py [--devices 200] [--size-kib 1536] [--resume-share 0.25]
                               [--client-procs 2] [--rounds 1] [--only nginx,serve,gateway]

One signed release of a --size-kib KiB app image (ota_tool.release) is served over HTTPS with the
same certificate (a local CA made here) by:
- nginx (Debian package, `apt-get install nginx`), 2 worker processes, sendfile, the release folder
  as its root: the reference;
- `ota-tool serve RELEASE_DIR` (its own process);
- `ota-tool serve --mirror https://<serve>/ CACHE` (its own process), warmed first: the gateway
  serving from its cache.
--devices simulated devices start at the same moment, each in its own thread (spread over
--client-procs processes) with the device's own HTTP client, lib/ota/http.py HttpFetcher (TLS with
the CA checked, one request per connection, a 4 KiB buffer as on the device): GET stable.json, then
the artifact it names. A --resume-share of them break their download part-way (at a random byte)
and resume it with Range + If-Range from there, as a device does after a network error. Every
download is checked against the SHA-256 the manifest lists: no request may fail or return wrong
bytes (the bench exits 1 otherwise).

Per server: wall time from the start to the last device done, aggregate throughput (artifact and
manifest bytes received / wall time), and per-device latency (manifest + artifact, resume included)
percentiles, and the CPU time the server process(es) used (from /proc: nginx counts its workers).
Printed as a markdown table, with throughput, p99 and CPU per MB relative to nginx. The load
generator (Python TLS clients) runs on the same 2 cores as the servers and is what limits the
throughput of the fastest server: the CPU-per-MB column is the server's own cost, independent of
that. Compare rows, not absolute numbers, with other machines.
"""
import argparse
import hashlib
import json
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ota.errors import OTAError
from ota.http import HttpFetcher
from ota.manifest import split
from ota_tool import images, keys, release, server

BLOCK = 4096


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_port(port, proc, what, timeout=20):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise SystemExit("%s exited early (status %s)" % (what, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("%s did not start listening on %d" % (what, port))


def nginx_binary():
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None)


def start_nginx(work, root, tls, port):
    binary = nginx_binary()
    if binary is None:
        raise SystemExit("nginx is not installed: apt-get install -y nginx")
    prefix = os.path.join(work, "nginx")
    for d in ("logs", "tmp"):
        os.makedirs(os.path.join(prefix, d), exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the release folder
    conf = os.path.join(prefix, "nginx.conf")
    with open(conf, "w") as f:
        f.write("""%(user)sworker_processes 2;
daemon off;
pid %(p)s/nginx.pid;
error_log %(p)s/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    types { application/json json; }
    client_body_temp_path %(p)s/tmp/body;
    proxy_temp_path %(p)s/tmp/proxy;
    fastcgi_temp_path %(p)s/tmp/fastcgi;
    uwsgi_temp_path %(p)s/tmp/uwsgi;
    scgi_temp_path %(p)s/tmp/scgi;
    server {
        listen 127.0.0.1:%(port)d ssl backlog=1024;
        ssl_certificate %(cert)s;
        ssl_certificate_key %(key)s;
        ssl_protocols TLSv1.2 TLSv1.3;
        root %(root)s;
        location / { }
    }
}
""" % {"user": user, "p": prefix, "port": port, "cert": tls.server_pem, "key": tls.server_key, "root": root})
    proc = subprocess.Popen([binary, "-p", prefix, "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc, "nginx")
    return proc


def start_tool(args, port, what):
    cmd = [sys.executable, "-m", "ota_tool.cli", "serve"] + args + ["--port", str(port), "--bind", "127.0.0.1", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_port(port, proc, what)
    return proc


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT if proc.args[0] == sys.executable else signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


# --- the simulated devices


def read_all(body, buf, h, limit=None):
    got = 0
    while limit is None or got < limit:
        want = buf if limit is None or limit - got >= len(buf) else memoryview(buf)[:limit - got]
        n = body.readinto(want)
        if not n:
            break
        h.update(memoryview(buf)[:n])
        got += n
    return got


def one_device(base, ca, resume_at, results, i, go):
    go.wait()
    t0 = time.monotonic()
    rec = {"ok": False, "bytes": 0, "resumed": resume_at is not None}
    try:
        f = HttpFetcher(ca=ca, connect_timeout=60000, read_timeout=60000, stall_timeout=120000)
        buf = bytearray(BLOCK)
        mh = hashlib.sha256()
        body = f.open(base + "stable.json", 0, 16384)
        mbuf = bytearray(16384)
        n = 0
        while True:
            k = body.readinto(memoryview(mbuf)[n:])
            if not k:
                break
            n += k
        body.close()
        rec["bytes"] += n
        doc = json.loads(split(bytes(mbuf[:n]))[1])  # where the artifact is; the devices' own tests check signatures
        art = next(a for a in doc["artifacts"] if a["encoding"] == "raw")
        url = base + art["url"]
        size = art["size"]
        body = f.open(url, 0, size)
        etag = body.etag
        if resume_at is not None:
            got = read_all(body, buf, mh, resume_at)
            body.close()  # the "network error": the connection drops mid-download
            body = f.open(url, got, size, etag)
            if body.offset != got:
                raise OTAError("range_ignored", "server restarted the download instead of resuming")
        else:
            got = 0
        got += read_all(body, buf, mh)
        body.close()
        rec["bytes"] += got
        rec["wrong"] = got != size or mh.hexdigest() != art["sha256"]
        rec["ok"] = not rec["wrong"]
    except Exception as e:  # counted and reported: a bench run must not stop at the first error
        rec["error"] = "%s: %s" % (type(e).__name__, e)
        rec["wrong"] = False
    rec["latency"] = time.monotonic() - t0
    rec["end"] = time.time()
    results[i] = rec


def client_process(base, ca, plan, start_at):
    results = [None] * len(plan)
    go = threading.Event()
    threads = [threading.Thread(target=one_device, args=(base, ca, r, results, i, go)) for i, r in enumerate(plan)]
    for t in threads:
        t.start()  # each waits for `go`: all devices start together
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)
    go.set()
    for t in threads:
        t.join()
    return results


def run_load(base, ca, devices, size, resume_share, procs, seed):
    rnd = random.Random(seed)
    plan = [rnd.randrange(BLOCK, size - BLOCK) if rnd.random() < resume_share else None for _ in range(devices)]
    chunks = [plan[i::procs] for i in range(procs)]
    start_at = time.time() + 1.5  # every client process has made its threads by then
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(procs) as pool:
        outs = pool.starmap(client_process, [(base, ca, c, start_at) for c in chunks])
    results = [r for out in outs for r in out]
    wall = max(r["end"] for r in results) - start_at
    return results, wall


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def cpu_seconds(pid):
    """User + system CPU time of a server process and its children (nginx's workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for p in [pid] + _children(pid):
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
        except (OSError, ValueError, IndexError):
            pass
    return total


def pct(values, p):
    v = sorted(values)
    if not v:
        return float("nan")
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summarize(name, results, wall, cpu):
    lat = [r["latency"] for r in results]
    mb = sum(r["bytes"] for r in results) / 1e6
    return {"server": name, "devices": len(results), "resumes": sum(1 for r in results if r["resumed"]),
            "wall": wall, "mbps": mb / wall, "cpu": cpu, "cpu_per_mb": 1000 * cpu / mb,
            "p50": pct(lat, 50), "p95": pct(lat, 95), "p99": pct(lat, 99), "max": max(lat),
            "failed": sum(1 for r in results if not r["ok"] and not r["wrong"]),
            "wrong": sum(1 for r in results if r["wrong"]),
            "errors": sorted({r["error"] for r in results if r.get("error")})[:5]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--size-kib", type=int, default=1536)
    ap.add_argument("--resume-share", type=float, default=0.25)
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1, help="runs per server (the table shows the median by wall time)")
    ap.add_argument("--only", default="nginx,serve,gateway")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    which = [w.strip() for w in args.only.split(",") if w.strip()]

    work = tempfile.mkdtemp(prefix="ota-bench-load-")
    procs = []
    try:
        repo = os.path.join(work, "repo")
        key = keys.generate(os.path.join(work, "k.pem"))
        image = images.app_image("2.0.0", size=args.size_kib * 1024, seed=7)
        release.build(image, "2.0.0", [key], repo)
        os.chmod(work, 0o755)
        tls = server.ensure_tls(os.path.join(work, "tls"))
        ca = tls.ca_der
        ports = {}
        pids = {}
        if "nginx" in which:
            ports["nginx"] = free_port()
            procs.append(start_nginx(work, repo, tls, ports["nginx"]))
            pids["nginx"] = procs[-1].pid
        if "serve" in which or "gateway" in which:
            ports["serve"] = free_port()
            procs.append(start_tool([repo, "--no-reports", "--tls-dir", tls.dir], ports["serve"], "ota-tool serve"))
            pids["serve"] = procs[-1].pid
        if "gateway" in which:
            ports["gateway"] = free_port()
            procs.append(start_tool([os.path.join(work, "cache"), "--mirror", "https://127.0.0.1:%d/" % ports["serve"],
                                     "--upstream-ca", tls.ca_der_path, "--tls-dir", tls.dir, "--refresh", "3600",
                                     "--outbox", os.path.join(work, "outbox.sqlite")], ports["gateway"], "gateway"))
            pids["gateway"] = procs[-1].pid
            # warm it: the manifest, and with it the artifact
            results, _ = run_load("https://127.0.0.1:%d/" % ports["gateway"], ca, 1, len(image), 0, 1, 0)
            if not results[0]["ok"]:
                raise SystemExit("the gateway does not serve the release: %s" % results[0].get("error"))
        rows = []
        for name in which:
            base = "https://127.0.0.1:%d/" % ports[name]
            runs = []
            for _ in range(args.rounds):
                cpu0 = cpu_seconds(pids[name])
                results, wall = run_load(base, ca, args.devices, len(image), args.resume_share, args.client_procs, args.seed)
                runs.append(summarize(name, results, wall, cpu_seconds(pids[name]) - cpu0))
                time.sleep(1)
            runs.sort(key=lambda r: r["wall"])
            rows.append(runs[len(runs) // 2])
            print("%s done: %.1f s" % (name, rows[-1]["wall"]), file=sys.stderr)
    finally:
        for p in procs:
            stop(p)
        shutil.rmtree(work, ignore_errors=True)

    ref = next((r for r in rows if r["server"] == "nginx"), None)
    print("%d devices x %d KiB over HTTPS (TLS 1.3, one request per connection, 4 KiB reads), %d%% resumed "
          "with Range; %d client processes; %s, %d cores\n" % (
              args.devices, args.size_kib, round(100 * args.resume_share), args.client_procs, sys.platform,
              os.cpu_count() or 0))
    print("| server | devices | resumed | wall s | MB/s | p50 s | p95 s | p99 s | max s | failed | wrong bytes "
          "| server CPU s | CPU ms/MB | MB/s vs nginx | p99 vs nginx | CPU/MB vs nginx |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        rel_t = "%.2f" % (r["mbps"] / ref["mbps"]) if ref else "-"
        rel_p = "%.2f" % (r["p99"] / ref["p99"]) if ref else "-"
        rel_c = "%.1f" % (r["cpu_per_mb"] / ref["cpu_per_mb"]) if ref and ref["cpu_per_mb"] else "-"
        print("| %s | %d | %d | %.2f | %.1f | %.2f | %.2f | %.2f | %.2f | %d | %d | %.2f | %.1f | %s | %s | %s |" % (
            r["server"], r["devices"], r["resumes"], r["wall"], r["mbps"], r["p50"], r["p95"], r["p99"], r["max"],
            r["failed"], r["wrong"], r["cpu"], r["cpu_per_mb"], rel_t, rel_p, rel_c))
    bad = [r for r in rows if r["failed"] or r["wrong"]]
    for r in bad:
        print("\n%s: %d failed, %d wrong: %s" % (r["server"], r["failed"], r["wrong"], "; ".join(r["errors"])))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

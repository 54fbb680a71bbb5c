"""HTTPS download under MicroPython: our HttpFetcher against the floor (a raw TLS GET that only hashes).

    python bench/bench_download.py [--size-kib 1536] [--runs 3] [--block 4096]

A file of --size-kib KiB is served by ota_tool.server.start_server (HTTPS, loopback, local CA). Under
the MicroPython unix port, each client downloads it and hashes it with hashlib.sha256 while
streaming through one --block buffer:
- floor: socket + tls.SSLContext + one GET, blocking readinto() into the buffer, hash; no HTTP parsing,
  no timeouts, no bounds;
- HttpFetcher: lib/ota/http.py with its timeouts, bounds, header parsing and checks.
Wall time (inside MicroPython, handshake included; best of --runs, heap 64 KiB) and the smallest heap
each needs (bisection to 1 KiB; the device library is precompiled to .mpy so its bytecode does not
count as compiler garbage).

Note: in the unix port mbedTLS takes its buffers from the C heap, not from the MicroPython heap, so
the heap column is what Python-level code needs; on a device the TLS session (record buffers, up to
2 x 16 KiB) comes on top of it.
"""
import argparse
import hashlib
import os
import shutil
import sys
import tempfile



from ota_tool import micropython  # noqa: E402
from ota_tool.server import start_server  # noqa: E402

FLOOR = r"""
import socket, tls, hashlib, time, binascii
ca = open(CA, "rb").read()
buf = bytearray(BLOCK)
t0 = time.ticks_ms()
ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
ctx.verify_mode = tls.CERT_REQUIRED
ctx.load_verify_locations(ca)
s = socket.socket()
s.connect(socket.getaddrinfo(HOST, PORT)[0][-1])
ss = ctx.wrap_socket(s, server_hostname=HOST)
ss.write(b"GET /fw.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
t1 = time.ticks_ms()
h = hashlib.sha256()
got = 0
head = True
while True:
    n = ss.readinto(buf)
    if not n:
        break
    mv = memoryview(buf)[:n]
    if head:  # the whole head arrives in the first block
        i = bytes(mv).find(b"\r\n\r\n") + 4
        mv = mv[i:]
        head = False
    h.update(mv)
    got += len(mv)
ss.close()
t2 = time.ticks_ms()
print("ok", got, binascii.hexlify(h.digest()).decode(), time.ticks_diff(t1, t0), time.ticks_diff(t2, t1))
"""

OURS = r"""
import hashlib, time, binascii
from ota.http import HttpFetcher
ca = open(CA, "rb").read()
buf = bytearray(BLOCK)
t0 = time.ticks_ms()
f = HttpFetcher(ca=ca)
b = f.open(URL, 0, 1 << 26)
t1 = time.ticks_ms()
h = hashlib.sha256()
got = 0
while True:
    n = b.readinto(buf)
    if not n:
        break
    h.update(buf if n == BLOCK else memoryview(buf)[:n])
    got += n
b.close()
t2 = time.ticks_ms()
print("ok", got, binascii.hexlify(h.digest()).decode(), time.ticks_diff(t1, t0), time.ticks_diff(t2, t1))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-kib", type=int, default=1536)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--block", type=int, default=4096)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="bench-download-")
    rel = os.path.join(work, "release")
    os.makedirs(rel)
    data = os.urandom(args.size_kib * 1024)
    with open(os.path.join(rel, "fw.bin"), "wb") as f:
        f.write(data)
    want = hashlib.sha256(data).hexdigest()
    srv = start_server(rel, tls_dir=os.path.join(work, "tls"))
    ca_path = os.path.join(work, "ca.der")
    with open(ca_path, "wb") as f:
        f.write(srv.ca_der)
    prelude = "CA = %r\nHOST = '127.0.0.1'\nPORT = %d\nURL = %r\nBLOCK = %d\n" % (
        ca_path, srv.port, srv.url + "fw.bin", args.block)

    def run(code, heap_kib):
        # -> (connect+TLS+head ms, body ms) or None when it failed
        res = micropython.run(code=prelude + code, heap="%dk" % heap_kib, compiled=True)
        out = res.stdout.split()
        if res.returncode == 0 and out[:3] == ["ok", str(len(data)), want]:
            return int(out[3]), int(out[4])
        return None

    def smallest_heap(code):
        lo, hi = 4, 256  # lo fails, hi works
        if run(code, hi) is None:
            return None
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if run(code, mid) is None:
                lo = mid
            else:
                hi = mid
        return hi

    rows = []
    try:
        clients = (("raw TLS GET + sha256 (floor)", FLOOR), ("HttpFetcher + sha256", OURS))
        times = {name: [] for name, _ in clients}
        for _ in range(args.runs):  # interleaved, so a busy moment of the machine hits both
            for name, code in clients:
                t = run(code, 64)
                if t is None:
                    sys.exit("%s failed under MicroPython with a 64 KiB heap" % name)
                times[name].append(t)
        for name, code in clients:
            ts = times[name]
            rows.append((name, min(t[0] for t in ts), min(t[1] for t in ts), smallest_heap(code)))
    finally:
        srv.stop()
        shutil.rmtree(work, ignore_errors=True)

    mb = len(data) / 1e6
    print("download of %d KiB over loopback TLS (ECDSA P-256), MicroPython unix port, %d-byte block, best of %d"
          % (args.size_kib, args.block, args.runs))
    print("%-30s %14s %9s %11s %13s" % ("client", "connect+TLS ms", "body ms", "body MB/s", "min heap KiB"))
    for name, hs, body, heap in rows:
        print("%-30s %14d %9d %11.1f %13s" % (name, hs, body, mb / (max(body, 1) / 1000.0), heap))
    (_, hs0, b0, h0), (_, hs1, b1, h1) = rows
    print("%-30s %14s %9s %11s %13s" % ("ratio HttpFetcher / floor", "%.2f" % (hs1 / max(hs0, 1)),
                                        "%.2f" % (b1 / max(b0, 1)), "", "%.2f" % (h1 / h0) if h0 and h1 else "-"))
    print("(connect+TLS: socket, handshake, request and, for HttpFetcher, the parsed response head)")


if __name__ == "__main__":
    main()

"""Network faults: randomized fault schedules (fixed seed) between the device's agent and a mirror.

The mirror is tests/ota/faulty_server.py's scripted TLS server, serving a release folder the way
`ota-tool serve` does (Range, ETag, If-Range), except that each new connection first takes the
next fault of the run's schedule. A schedule is 1..MAX_FAULTS faults drawn from FAULTS; once it is
used up the network has recovered and every connection is served correctly.

The device is a simulated board on 1.0.0 running the agent (tests.campaign.world.main_py with
retries): every power cycle it confirms or rolls back, then calls Agent.check_now() until an
install (which resets into the new image), an answer, or CHECKS_PER_BOOT attempts; then it powers
up again, up to BOOTS cycles. A run succeeds when the device ends on 2.0.0, confirmed, and a
check says up_to_date. Whatever happens, the image the bootloader boots must be 1.0.0 or 2.0.0
byte for byte: a "wrong image" is any other content that became bootable.
"""
import contextlib
import hashlib
import io
import os
import random
import ssl
import threading
import time
import zlib

from tests.ota.faulty_server import Conn, FaultyServer, make_ca, make_cert, response

from . import world as W
from .world import V1, V2, images, keys, sim

MAX_FAULTS = 6
BOOTS = 8
CHECKS_PER_BOOT = 3
STALL_S = 2.5  # how long a stalling mirror stays silent (the device gives up well before)

# (name, weight): what a connection can suffer. Faults with a parameter draw it in make_schedule.
FAULTS = [
    ("tcp_close", 2),  # accepted, then closed before the TLS handshake
    ("tcp_reset", 2),  # accepted, then RST
    ("tls_wrong_cert", 2),  # a certificate from another CA (a redirected connection)
    ("tls_garbage", 1),  # bytes that are not TLS
    ("tls_stall", 1),  # TCP accepted, the handshake never answered
    ("drop", 4),  # response cut after a fraction of its bytes (clean close)
    ("reset", 2),  # response cut after a fraction, RST
    ("stall", 2),  # response stops after a fraction, the connection stays open and silent
    ("drip_head", 1),  # the response head trickles in one byte at a time
    ("short_body", 2),  # Content-Length promises more than is sent
    ("http_503", 2),  # overloaded, Retry-After: 1
    ("http_500", 1),
    ("http_404", 1),  # a mirror that has not synced yet
    ("range_ignored", 2),  # Range ignored: 200 with the whole file
    ("range_wrong_start", 2),  # 206 with a Content-Range that is not the one asked for
    ("range_lie", 2),  # 206 with the right Content-Range over the wrong bytes
    ("etag_changed", 1),  # 206 from a file that changed (another ETag)
    ("corrupt", 3),  # one byte of the body flipped (a bad mirror or cache)
    ("stale", 2),  # the previous connection's response replayed (a retry answered out of order)
    ("old_manifest", 2),  # the manifest of the release before (1.0.0), validly signed: a replay
    ("evil_manifest", 2),  # a manifest for 9.9.0 signed by a key the device does not trust
    ("evil_image", 2),  # the artifact replaced by another valid app image (an attacker's build)
    ("endless", 1),  # a chunked body that never ends
    ("slow_ok", 1),  # correct, in small pieces with pauses (must not be mistaken for a stall)
]
_KINDS = [k for k, w in FAULTS for _ in range(w)]
# These wait for a request they apply to (a Range request, a manifest request, a raw image
# request), so that a schedule meets them; the network recovers once the schedule is used up.
# A range fault comes after a "drop_image" (a raw image download cut after a fraction).
_RANGE_FAULTS = ("range_ignored", "range_wrong_start", "range_lie", "etag_changed")
_MANIFEST_FAULTS = ("old_manifest", "evil_manifest")
# An attacker's firmware: a valid app image the same length as 2.0.0, but not the signed one.
EVIL = images.app_image("2.0.0", size=W.SIZE, seed=1, base=V1, changes=41)


def make_schedule(rng):
    sched = []
    for _ in range(rng.randint(1, MAX_FAULTS)):
        kind = rng.choice(_KINDS)
        if kind in _RANGE_FAULTS:
            # a Range request comes only after a raw download broke: break one first
            sched.append(("drop_image", 0.2 + 0.7 * rng.random()))
        sched.append((kind, rng.random()))  # the parameter: where in the response a cut falls
    return sched


class Mirror(FaultyServer):
    """A release folder over TLS; each connection takes the next fault from `schedule`."""

    def __init__(self, root, pki, old_manifest, evil_manifest):
        super().__init__(pki["server_pem"], pki["server_key"])
        self.root = root
        self.bad_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.bad_ctx.load_cert_chain(pki["rogue_pem"], pki["rogue_key"])
        self.old_manifest = old_manifest
        self.evil_manifest = evil_manifest
        self.schedule = []
        self.seen = []  # (fault, method, path, range) per connection
        self.applied = {}  # fault -> connections it was applied to
        self.last = None  # the bytes of the last complete response, for "stale"
        self._lock = threading.Lock()

    def _take(self):
        with self._lock:
            return self.schedule.pop(0) if self.schedule else ("ok", 0.0)

    def _count(self, kind):
        with self._lock:
            self.applied[kind] = self.applied.get(kind, 0) + 1

    def _defer(self, fault):
        # A fault that only means something for another kind of request waits for one.
        with self._lock:
            self.schedule.insert(0, fault)

    def _serve(self, raw):
        raw.settimeout(15)
        kind, x = self._take()
        try:
            if kind.startswith("tcp_") or kind.startswith("tls_"):
                self._count(kind)
            if kind == "tcp_close":
                return
            if kind == "tcp_reset":
                Conn(raw, None).reset()
                return
            if kind == "tls_stall":
                Conn(raw, None).wait(STALL_S)
                return
            if kind == "tls_garbage":
                raw.recv(4096)  # the ClientHello
                raw.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n" + bytes(range(256)))
                return
            conn = Conn(raw, self.bad_ctx if kind == "tls_wrong_cert" else self.ctx)
            conn.handshake()
            req = conn.read_request()
            if (kind in _RANGE_FAULTS and "range" not in req.headers) or (
                    kind in _MANIFEST_FAULTS and not req.path.endswith(".json")) or (
                    kind == "evil_image" and req.path.endswith(".json")) or (
                    kind == "drop_image" and not req.path.endswith(".bin")):
                self._defer((kind, x))
                kind = "ok"
            self.seen.append((kind, req.method, req.path, req.headers.get("range")))
            if kind != "ok" and not kind.startswith("tls_"):
                self._count(kind)
            self._respond(conn, req, kind, x)
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as e:
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            try:
                raw.close()
            except OSError:
                pass

    def _file(self, path):
        name = path.split("?")[0].lstrip("/")
        full = os.path.join(self.root, name)
        if "/" in name or name.startswith(".") or not os.path.isfile(full):
            return None
        with open(full, "rb") as f:
            return f.read()

    def _respond(self, conn, req, kind, x):
        data = self._file(req.path)
        if kind == "old_manifest" and data is not None:
            data = self.old_manifest
        elif kind == "evil_manifest" and data is not None:
            data = self.evil_manifest
        elif kind == "evil_image" and data is not None:
            if req.path.endswith(".bin"):
                data = (EVIL + data)[:len(data)]
            else:
                c = zlib.compressobj(9, zlib.DEFLATED, 12)
                data = c.compress(EVIL) + c.flush()
        if kind == "endless":
            conn.send(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            try:
                for _ in range(512):
                    conn.send(b"1000\r\n" + b"\xe9" * 4096 + b"\r\n")
            except OSError:
                pass
            conn.close()
            return
        if data is None:
            conn.send(response(404, b"not found\n"))
            conn.close_notify()
            return
        etag = '"%s"' % hashlib.sha256(data).hexdigest()[:32]
        rng_h = req.headers.get("range")
        start = None
        if rng_h and rng_h.startswith("bytes=") and rng_h.endswith("-"):
            if req.headers.get("if-range") in (None, etag):
                start = int(rng_h[6:-1])
        if kind in ("http_503", "http_500", "http_404"):
            status = int(kind[5:])
            out = response(status, b"", ["Retry-After: 1"] if status == 503 else [])
        elif start is None or kind == "range_ignored" or start >= len(data):
            out = response(200, data, ["ETag: " + etag, "Accept-Ranges: bytes"])
        else:
            body = data[start:]
            first = start
            tag = etag
            if kind == "range_wrong_start":
                first = max(0, start - 4096)
                body = data[first:]
            elif kind == "range_lie":
                shift = 1 + int(x * 4000)
                src = data[max(0, start - shift):] + data
                body = src[:len(data) - start]  # the right length, the wrong bytes
            elif kind == "etag_changed":
                tag = '"changed-%d"' % int(x * 1000)
            out = response(206, body, ["Content-Range: bytes %d-%d/%d" % (first, len(data) - 1, len(data)),
                                       "ETag: " + tag])
        head_len = out.index(b"\r\n\r\n") + 4
        if kind == "corrupt" and len(out) > head_len:
            at = head_len + int(x * (len(out) - head_len))
            out = out[:at] + bytes([out[at] ^ 0x20]) + out[at + 1:]
        if kind == "stale" and self.last is not None:
            out = self.last
        if kind == "short_body":
            out = out[: head_len + int(x * (len(out) - head_len))]
        cut = int(x * len(out))
        if kind in ("drop", "drop_image"):
            conn.send(out[:cut])
            conn.close()
        elif kind == "reset":
            conn.send(out[:cut])
            conn.reset()
        elif kind == "stall":
            conn.send(out[:cut])
            conn.wait(STALL_S)
        elif kind == "drip_head":
            conn.drip(out[:head_len], piece=1, delay=0.1)
            conn.close()
        elif kind == "slow_ok":
            for i in range(0, len(out), 8192):
                conn.send(out[i:i + 8192])
                time.sleep(0.02)
            conn.close_notify()
        else:
            conn.send(out)
            conn.close_notify()
        if kind not in ("stale", "short_body"):
            self.last = out


def _pki(folder):
    ca = make_ca("campaign CA")
    good = make_cert(ca)
    rogue = make_cert(make_ca("rogue CA"))
    out = {"ca_der": ca.der}
    out["server_pem"], out["server_key"] = good.write(folder, "server")
    out["rogue_pem"], out["rogue_key"] = rogue.write(folder, "rogue")
    return out


class NetAgent(W.CampaignAgent):
    connect_ms = 1200
    read_ms = 600
    stall_ms = 1200


def main_retrying():
    """main.py with retries: confirm or roll back, then up to CHECKS_PER_BOOT checks until one
    installs (and resets), finds nothing to do, or is refused by the policy."""
    a = NetAgent()
    first = a.boot()
    event = None
    for _ in range(CHECKS_PER_BOOT):
        event = a.check_now()
        if event == "up_to_date" or (event == "refused" and a.reason in W.POLICY_REASONS):
            break
    return first, event, a.reason


class Run:
    def __init__(self, index, kind, schedule):
        self.index = index
        self.kind = kind  # raw / zlib / delta / rdelta
        self.schedule = schedule
        self.succeeded = False
        self.wrong = []
        self.boots = 0
        self.events = []
        self.rollbacks = 0  # first boots of 2.0.0 that rolled back (a fault met its server check)

    def describe(self):
        return "run %d (%s, %s): boots %d, events %s" % (self.index, self.kind, [k for k, _ in self.schedule],
                                                          self.boots, self.events)


def one_run(r, mirror, base_path, workdir):
    mirror.schedule = list(r.schedule)
    mirror.last = None
    dev = W.copy_device(base_path, os.path.join(workdir, "net.bin"))
    for _ in range(BOOTS):
        out = dev.run(main_retrying)
        r.boots += 1
        image = W.IMAGES.get({"ota_0": "1.0.0", "ota_1": "2.0.0"}.get(out.booted))
        if image is None or dev.slot_image(out.booted, len(image)) != image:
            r.wrong.append("boot %d: %s holds an image that is neither 1.0.0 nor 2.0.0" % (r.boots, out.booted))
        if out.kind == sim.RESET and out.booted == "ota_1":
            r.rollbacks += 1
        if out.kind == sim.RETURNED:
            r.events.append(out.value[1:])
            if out.value[1] == "up_to_date" and out.booted == "ota_1":
                break
        else:
            r.events.append(out.kind)
    version, state, _, intact = W.running(dev)
    if not intact:
        r.wrong.append("the running image is not intact (%s)" % version)
    r.succeeded = (version, state, intact) == ("2.0.0", "valid", True) and r.events[-1][0] == "up_to_date"


class Result:
    def __init__(self):
        self.runs = []
        self.faults = {}
        self.applied = {}
        self.seconds = 0.0

    @property
    def wrong(self):
        return [r for r in self.runs if r.wrong]

    @property
    def succeeded(self):
        return [r for r in self.runs if r.succeeded]

    def row(self):
        return {"runs": len(self.runs), "faults": sum(len(r.schedule) for r in self.runs),
                "applied": sum(self.applied.values()),
                "wrong_images": len(self.wrong), "succeeded": len(self.succeeded),
                "rollbacks": sum(r.rollbacks for r in self.runs),
                "by_kind": {k: sum(1 for r in self.runs if r.kind == k and r.succeeded) for k in ("raw", "zlib", "delta", "rdelta")}}


def run(workdir, runs=200, seed=2024, progress=None):
    """`runs` randomized schedules; returns a Result."""
    res = Result()
    t0 = time.time()
    with contextlib.redirect_stdout(io.StringIO()):
        w = W.World(workdir)
        pki = _pki(_Path(workdir))
        evil = _evil_manifest(workdir)
        mirrors = {}
        started = []
        try:
            for kind, kw in (("raw", {}), ("zlib", {"compress": True}),
                             ("delta", {"compress": True, "bases": [V1], "rdelta": False}),
                             ("rdelta", {"compress": True, "bases": [V1]})):
                repo = w.repo("net-" + kind, serve=False)
                repo.publish(V1, "1.0.0")
                with open(os.path.join(repo.path, "stable.json"), "rb") as f:
                    old = f.read()
                repo.publish(V2, "2.0.0", **kw)
                m = Mirror(repo.path, pki, old, evil)
                started.append(m)
                path = os.path.join(workdir, "net-base-%s.bin" % kind)
                base = W.provision(w, path, m.url + "stable.json", pki["ca_der"])
                mirrors[kind] = (m, base.path)
            rng = random.Random(seed)
            for i in range(runs):
                kind = rng.choice(("raw", "raw", "zlib", "delta", "rdelta"))  # raw: the resumable kind
                r = Run(i, kind, make_schedule(rng))
                for k, _ in r.schedule:
                    res.faults[k] = res.faults.get(k, 0) + 1
                m, base = mirrors[kind]
                one_run(r, m, base, workdir)
                res.runs.append(r)
                if progress:
                    progress(r)
        finally:
            for m in started:
                for k, n in m.applied.items():
                    res.applied[k] = res.applied.get(k, 0) + n
                m.stop()
            w.close()
    res.seconds = time.time() - t0
    return res


def _evil_manifest(workdir):
    """A well-formed release manifest for 9.9.0 of EVIL, signed by a key no device trusts."""
    rogue = keys.generate(os.path.join(workdir, "rogue-release-key.pem"), force=True)
    folder = os.path.join(workdir, "evil-repo")
    from ota_tool import release

    release.build(EVIL, "9.9.0", [rogue], folder)
    with open(os.path.join(folder, "stable.json"), "rb") as f:
        return f.read()


class _Path(str):
    # faulty_server's Cert.write takes a folder supporting "/"
    def __truediv__(self, name):
        return os.path.join(self, name)

"""A caching gateway for a local fleet (`ota-tool serve --mirror UPSTREAM_URL CACHE_DIR`):
edge-to-gateway-to-cloud.

Devices talk to the gateway exactly as to `ota-tool serve` (HTTPS with the gateway's own local CA,
Range, ETags, POST /report). The gateway:
- fetches what devices ask for from UPSTREAM_URL (an `ota-tool serve`, a bucket behind a CDN,
  another gateway) over TLS with the certificate checked, and keeps it in CACHE_DIR;
- keeps content-addressed artifacts (`sha256-<16 hex>.<ext>`) forever: they never change, and a
  download is kept only when its bytes hash to its name (and to the size and SHA-256 the manifest
  lists, when a manifest named it);
- re-validates signed documents (manifests, keys.json) at most every `refresh` seconds (conditional
  GET with the upstream ETag). Only those (.json files that start like a signed document) and
  content-addressed artifacts are relayed: upstream's other pages (/status...) are not. A new firmware manifest is exposed to devices only after every
  artifact it names is in the cache: a device never sees a manifest whose artifacts the gateway
  cannot serve, even if upstream goes away right after;
- works on when upstream is unreachable: the last good copy of every file is served (and
  upstream is not asked again for `refresh` seconds, so devices do not wait on a dead uplink);
- takes device reports (POST /report, checked like `ota-tool serve` does), stores each in an
  SQLite outbox before answering 204, and forwards them in order to the upstream report URL when
  it answers; a report leaves the outbox only when upstream accepted it (2xx). One upstream
  refuses as malformed (400/413/415/422) is moved to a dead-letter table, never dropped.

Trust: the gateway is NOT trusted by devices. It checks no signature itself and needs no key:
every device verifies the signed manifest and the artifact hashes end to end, so a gateway that
alters anything only gets refused (tests/ota_tool/test_mirror.py). What a hostile gateway can
still do is withhold updates or keep serving an older signed manifest (devices refuse a
downgrade, and only an `expires` in the manifest plus a trusted clock bounds such a freeze).

Files under CACHE_DIR/.mirror are the gateway's own (downloads in progress); hidden paths are
never served.
"""
import hashlib
import http.client
import json
import os
import re
import sqlite3
import ssl
import threading
import time
import urllib.parse

from . import publish, reports
from .errors import ToolError

ARTIFACT_RE = publish.ARTIFACT_RE
MAX_MUTABLE = 64 * 1024  # manifests are at most ~8.5 KB, key lists 4 KB
DEFAULT_MAX_ARTIFACT = 16 * 1024 * 1024  # the device's own limit for an image (ota.manifest)
DEFAULT_REFRESH = 60
BLOCK = 1 << 16
PERMANENT_REFUSALS = (400, 413, 415, 422)
SIGNED = b"OTA-SIG-1 "  # how every signed document (ota.manifest) starts
MAX_TRACKED = 4096  # mutable names with state kept at once
MAX_QUEUED = 100000  # reports waiting for upstream; more are answered 503 (the device keeps its audit log)


class UpstreamError(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status  # HTTP status from upstream, or None for a network failure


class Upstream:
    """HTTPS (or, only when asked, HTTP) GET/POST to the upstream server; CA checked."""

    def __init__(self, base_url, ca=None, timeout=10.0, allow_http=False):
        u = urllib.parse.urlsplit(base_url)
        if u.scheme not in ("https", "http") or not u.hostname:
            raise ToolError("upstream %r is not an https:// URL" % base_url, "e.g. https://updates.example.com/fleet/")
        if u.scheme == "http" and not allow_http:
            raise ToolError("upstream %r is plain http" % base_url,
                            "the uplink must be TLS (devices trust the signatures, but reports and "
                            "availability should not be open to the network)")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.base_path = u.path if u.path.endswith("/") else u.path + "/"
        self.base_url = "%s://%s%s" % (u.scheme, u.netloc, self.base_path)
        self.timeout = timeout
        self.ctx = None
        if u.scheme == "https":
            self.ctx = ssl.create_default_context()
            if ca is not None:
                self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # only the given CA, no system ones
                self.ctx.load_verify_locations(cadata=ca)

    def _conn(self):
        if self.ctx is None:
            return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout, context=self.ctx)

    def path(self, rel):
        return self.base_path + urllib.parse.quote(rel)

    def get(self, rel, headers=None):
        """-> (status, response, connection); the caller reads and closes. Network failures raise
        UpstreamError(None, ...)."""
        conn = self._conn()
        try:
            conn.request("GET", self.path(rel), headers=dict(headers or {}, **{"Accept-Encoding": "identity",
                                                                                "User-Agent": "ota-tool-mirror"}))
            r = conn.getresponse()
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            conn.close()
            raise UpstreamError(None, "upstream %s: %s" % (self.base_url, e))
        return r.status, r, conn

    def post(self, url, body, headers):
        u = urllib.parse.urlsplit(url)
        if u.scheme == "https":
            conn = http.client.HTTPSConnection(u.hostname, u.port or 443, timeout=self.timeout,
                                               context=self.ctx or ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=self.timeout)
        try:
            conn.request("POST", u.path + ("?" + u.query if u.query else ""), body=body, headers=headers)
            r = conn.getresponse()
            r.read(4096)
            return r.status
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise UpstreamError(None, "report upstream %s: %s" % (url, e))
        finally:
            conn.close()


def _safe_rel(url_path):
    """URL path -> relative path to mirror, or None when it is not one a device may ask for
    (the same rules the server applies to files: no .., no hidden components, no NUL/backslash)."""
    path = urllib.parse.unquote(url_path)
    if "\x00" in path or "\\" in path:
        return None
    parts = [p for p in path.split("/") if p]
    if not parts or any(p == ".." or p.startswith(".") for p in parts):
        return None
    return "/".join(parts)


class Mirror:
    """The gateway's state: the cache folder, the upstream, freshness, the report outbox."""

    def __init__(self, upstream, root, refresh=DEFAULT_REFRESH, max_artifact=DEFAULT_MAX_ARTIFACT,
                 outbox=None, report_url=None, log=None):
        self.up = upstream
        self.root = os.path.realpath(root)
        self.work = os.path.join(self.root, ".mirror")
        os.makedirs(self.work, exist_ok=True)
        self.refresh = refresh
        self.max_artifact = max_artifact
        self.log = log or (lambda line: None)
        self._lock = threading.Lock()
        self._locks = {}
        self._state = {}  # rel -> {"checked": t, "failed": t, "etag": upstream etag}
        self.report_url = report_url or (upstream.base_url + "report")
        self.outbox = Outbox(outbox or os.path.join(os.path.dirname(self.root), "ota-mirror-outbox.sqlite"))
        self.forwarder = None
        self.stats = {"upstream_fetches": 0, "upstream_failures": 0, "served_stale": 0}
        self.max_queued = MAX_QUEUED

    # --- helpers

    def _lock_for(self, rel):
        with self._lock:
            lk = self._locks.get(rel)
            if lk is None:
                if len(self._locks) >= MAX_TRACKED:  # clients asking for endless names: forget (holders keep theirs)
                    self._locks.clear()
                    for k in [k for k, v in self._state.items() if v["checked"] is None]:
                        del self._state[k]
                lk = self._locks[rel] = threading.Lock()
            return lk

    def local(self, rel):
        return os.path.join(self.root, *rel.split("/"))

    def _download(self, rel, max_len, expect_size=None, expect_sha=None, etag=None):
        """GET rel from upstream into a temporary file, checked. -> (status, tmp path or None, etag).
        304 and 404/410 come back as statuses; other failures raise UpstreamError."""
        headers = {"If-None-Match": etag} if etag else {}
        status, r, conn = self.up.get(rel, headers)
        self.stats["upstream_fetches"] += 1
        try:
            if status in (304, 404, 410):
                return status, None, None
            if status != 200:
                raise UpstreamError(status, "upstream answered %d for %s" % (status, rel))
            length = r.getheader("Content-Length")
            if length is not None and (not length.isdigit() or int(length) > max_len):
                raise UpstreamError(status, "upstream %s is %s bytes, over the %d allowed" % (rel, length, max_len))
            fd, tmp = _mkstemp(self.work)
            h = hashlib.sha256()
            got = 0
            try:
                with os.fdopen(fd, "wb") as f:
                    while True:
                        block = r.read(BLOCK)
                        if not block:
                            break
                        got += len(block)
                        if got > max_len:
                            raise UpstreamError(status, "upstream %s is longer than %d bytes" % (rel, max_len))
                        h.update(block)
                        f.write(block)
                    f.flush()
                    os.fsync(f.fileno())
                if length is not None and got != int(length):
                    raise UpstreamError(status, "upstream %s ended after %d of %s bytes" % (rel, got, length))
                digest = h.hexdigest()
                m = ARTIFACT_RE.match(rel.rsplit("/", 1)[-1])
                if m and digest[:16] != m.group(1):
                    raise UpstreamError(status, "upstream %s does not hash to its name: not kept" % rel)
                if expect_size is not None and got != expect_size or expect_sha and digest != expect_sha:
                    raise UpstreamError(status, "upstream %s does not match the size/SHA-256 its manifest lists" % rel)
            except BaseException:
                os.remove(tmp)
                raise
            return 200, tmp, r.getheader("ETag")
        except (OSError, http.client.HTTPException, ssl.SSLError) as e:
            raise UpstreamError(None, "upstream %s: %s" % (rel, e))
        finally:
            conn.close()

    def _install(self, tmp, rel):
        """Move a checked download into place; False (logged, removed) when the path cannot hold
        it (a folder of that name, a file where a folder should be, a full disk)."""
        dst = self.local(rel)
        try:
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            os.replace(tmp, dst)
            return True
        except OSError as e:
            self.log("mirror: cannot keep %s: %s" % (rel, e))
            try:
                os.remove(tmp)
            except OSError:
                pass
            return False

    # --- artifacts

    def ensure_artifact(self, rel, size=None, sha=None):
        """Make the content-addressed `rel` present locally. -> None, or (status, text)."""
        dst = self.local(rel)
        if os.path.isfile(dst):
            return None
        with self._lock_for(rel):
            if os.path.isfile(dst):
                return None  # another request fetched it meanwhile
            try:
                status, tmp, _ = self._download(rel, min(size or self.max_artifact, self.max_artifact), size, sha)
            except UpstreamError as e:
                self.stats["upstream_failures"] += 1
                self.log("mirror: %s" % e)
                return 502, "upstream unavailable: %s" % e
            if status != 200:
                return 404, "not found upstream"
            if not self._install(tmp, rel):
                return 500, "the gateway cannot store %s" % rel
            self.log("mirror: cached %s" % rel)
            return None

    # --- mutable files (manifests, key lists)

    def ensure_mutable(self, rel, force=False):
        dst = self.local(rel)
        with self._lock_for(rel):
            have = os.path.isfile(dst)
            st = self._state.setdefault(rel, {"checked": None, "failed": None, "etag": None})
            now = time.monotonic()
            if have and not force:
                if st["checked"] is not None and now - st["checked"] < self.refresh:
                    return None
                if st["failed"] is not None and now - st["failed"] < self.refresh:
                    self.stats["served_stale"] += 1
                    return None  # upstream was down a moment ago: do not make devices wait on it again
            try:
                status, tmp, etag = self._download(rel, MAX_MUTABLE, etag=st["etag"] if have else None)
                if status == 200:
                    with open(tmp, "rb") as f:
                        signed = f.read(len(SIGNED)) == SIGNED
                    if not signed:  # only signed documents (manifests, key lists) are relayed
                        os.remove(tmp)
                        st["checked"] = None
                        return 404, "%s is not a signed OTA document upstream" % rel
                    self._prefetch(rel, tmp)
            except UpstreamError as e:
                st["failed"] = now
                self.stats["upstream_failures"] += 1
                if have:
                    self.stats["served_stale"] += 1
                    self.log("mirror: %s; serving the cached %s" % (e, rel))
                    return None
                self.log("mirror: %s" % e)
                if e.status == 403:  # S3 without ListBucket says 403 for a key that is not there
                    return 404, "not found upstream (403)"
                return 502, "upstream unavailable and %s not cached: %s" % (rel, e)
            st["failed"] = None
            st["checked"] = now
            if status == 304:
                return None
            if status in (404, 410):
                st["etag"] = None
                if have:
                    os.remove(dst)  # upstream withdrew it: so does the gateway
                    self.log("mirror: %s withdrawn upstream" % rel)
                return 404, "not found upstream"
            if not self._install(tmp, rel):
                return 500, "the gateway cannot store %s" % rel
            st["etag"] = etag
            self.log("mirror: updated %s" % rel)
            return None

    def _prefetch(self, rel, tmp):
        """Every artifact a new firmware manifest names, cached before the manifest is."""
        with open(tmp, "rb") as f:
            arts = publish.manifest_artifacts(f.read())
        try:
            for url, size, sha in arts or ():
                key = publish._resolve_key(rel, url)
                if key is None or _safe_rel(key) != key:
                    continue  # an absolute URL: devices fetch it themselves
                if not ARTIFACT_RE.match(key.rsplit("/", 1)[-1]):
                    continue  # not content-addressed: it would be re-validated, not cached for good
                size = size if isinstance(size, int) and 0 < size <= self.max_artifact else None
                sha = sha if isinstance(sha, str) and re.match(r"^[0-9a-f]{64}$", sha) else None
                refusal = self.ensure_artifact(key, size, sha)
                if refusal is not None:
                    raise UpstreamError(None, "artifact %s of %s: %s" % (key, rel, refusal[1]))
        except BaseException:
            os.remove(tmp)
            raise

    # --- the server hook

    def hook(self, url_path):
        rel = _safe_rel(url_path)
        if rel is None:
            return None  # the file server answers 403/404 itself
        name = rel.rsplit("/", 1)[-1]
        if ARTIFACT_RE.match(name):
            return self.ensure_artifact(rel)
        if not name.endswith(".json"):
            # what devices fetch: signed .json documents and content-addressed artifacts; nothing
            # else of upstream's (status pages...) is relayed to the local network
            return 404, "not relayed by the gateway"
        return self.ensure_mutable(rel)

    # --- reports

    def handle_report(self, req):
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype != "application/json":
                raise reports.ReportError(415, "send the report as Content-Type: application/json")
            reports.parse_report(req.body)  # refuse here what upstream would refuse
        except reports.ReportError as e:
            return e.status, "application/json", json.dumps({"ok": False, "error": e.message}).encode()
        if self.outbox.count() >= self.max_queued:  # a flood while upstream is away must not fill the disk
            return 503, "application/json", json.dumps({"ok": False, "error": "report queue full"}).encode()
        try:
            self.outbox.add(req.body, req.client[0] if req.client else None)
        except sqlite3.Error as e:
            return 503, "application/json", json.dumps({"ok": False, "error": "cannot store: %s" % e}).encode()
        if self.forwarder is not None:
            self.forwarder.kick()
        return 204, "application/json", b""

    def forward_reports(self, limit=100):
        """Send queued reports upstream, oldest first; stop at the first failure. -> sent count."""
        sent = 0
        for rid, body, client in self.outbox.oldest(limit):
            headers = {"Content-Type": "application/json", "User-Agent": "ota-tool-mirror"}
            if client:
                headers["X-Forwarded-For"] = client
            try:
                status = self.up.post(self.report_url, body, headers)
            except UpstreamError as e:
                self.log("mirror: %s; %d report(s) kept" % (e, self.outbox.count()))
                return sent
            if 200 <= status < 300:
                self.outbox.remove(rid)
                sent += 1
            elif status in PERMANENT_REFUSALS:
                self.outbox.dead(rid, status)
                self.log("mirror: upstream refused report %d with %d: moved to the dead letters" % (rid, status))
            else:
                self.log("mirror: upstream answered %d to a report; %d report(s) kept" % (status, self.outbox.count()))
                return sent
        return sent

    def status(self, req=None):
        doc = {"upstream": self.up.base_url, "report_url": self.report_url, "queued_reports": self.outbox.count(),
               "dead_reports": self.outbox.count(dead=True), "stats": dict(self.stats),
               "cached": sorted(k for k, v in self._state.items() if v["checked"] is not None)}
        return 200, "application/json", (json.dumps(doc, sort_keys=True) + "\n").encode()


def _mkstemp(folder):
    import tempfile

    return tempfile.mkstemp(dir=folder, prefix="dl-", suffix=".part")


class Outbox:
    """Reports waiting for upstream, in one SQLite file (WAL), committed before the device hears 204."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, received REAL NOT NULL, client TEXT, body BLOB NOT NULL);
    CREATE TABLE IF NOT EXISTS dead (id INTEGER PRIMARY KEY, received REAL NOT NULL, client TEXT, body BLOB NOT NULL,
                                     status INTEGER, moved REAL NOT NULL);
    """

    def __init__(self, path):
        self.path = os.path.abspath(path)
        self._lock = threading.Lock()
        try:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a 204 means the report survives a power cut
            self._db.executescript(self.SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise ToolError("cannot open the report outbox %s: %s" % (self.path, e), "give a writable --outbox PATH")

    def add(self, body, client=None):
        with self._lock:
            return self._db.execute("INSERT INTO outbox (received, client, body) VALUES (?, ?, ?)",
                                    (time.time(), client, bytes(body))).lastrowid

    def oldest(self, limit):
        with self._lock:
            return [(r[0], bytes(r[1]), r[2]) for r in
                    self._db.execute("SELECT id, body, client FROM outbox ORDER BY id LIMIT ?", (limit,))]

    def remove(self, rid):
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE id = ?", (rid,))

    def dead(self, rid, status):
        with self._lock:
            self._db.execute("BEGIN")
            self._db.execute("INSERT INTO dead (id, received, client, body, status, moved) SELECT id, received, client, "
                             "body, ?, ? FROM outbox WHERE id = ?", (status, time.time(), rid))
            self._db.execute("DELETE FROM outbox WHERE id = ?", (rid,))
            self._db.execute("COMMIT")

    def count(self, dead=False):
        with self._lock:
            return self._db.execute("SELECT count(*) FROM %s" % ("dead" if dead else "outbox")).fetchone()[0]

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


class Forwarder:
    """A thread that forwards queued reports: at once when one arrives, else every `interval`
    seconds, backing off (up to max_interval) while upstream does not take them."""

    def __init__(self, mirror, interval=5.0, max_interval=300.0):
        self.mirror = mirror
        self.interval = interval
        self.max_interval = max_interval
        self._event = threading.Event()
        self._stop = False
        self.thread = threading.Thread(target=self._run, name="ota-mirror-reports", daemon=True)

    def start(self):
        self.thread.start()
        return self

    def kick(self):
        self._event.set()

    def _run(self):
        wait = self.interval
        while not self._stop:
            self._event.wait(wait)
            self._event.clear()
            if self._stop:
                return
            try:
                self.mirror.forward_reports()
            except Exception as e:  # a bug here must not stop forwarding for good
                self.mirror.log("mirror: report forwarding: %r" % (e,))
            left = self.mirror.outbox.count()
            wait = self.interval if not left else min(wait * 2, self.max_interval)

    def stop(self):
        self._stop = True
        self._event.set()
        self.thread.join(5)


def attach(httpd, upstream_url, ca=None, refresh=DEFAULT_REFRESH, outbox=None, report_url=None,
           max_artifact=DEFAULT_MAX_ARTIFACT, forward_interval=5.0, allow_http=False, timeout=10.0):
    """Make a ReleaseServer (built with reports=False) a gateway. Returns the Mirror (httpd.mirror)."""
    up = Upstream(upstream_url, ca, timeout=timeout, allow_http=allow_http)
    m = Mirror(up, httpd.root, refresh, max_artifact, outbox, report_url, log=httpd.log)
    httpd.file_hook = m.hook
    httpd.add_route("POST", "/report", m.handle_report)
    for method in ("GET", "HEAD"):
        httpd.add_route(method, "/mirror-status.json", m.status)
    if forward_interval is not None:  # None: no thread, forward_reports() is called by the owner (tests)
        m.forwarder = Forwarder(m, forward_interval).start()
    httpd.mirror = m
    return m


def start_gateway(cache_dir, upstream_url, ca=None, tls_dir=None, port=0, bind="127.0.0.1", refresh=DEFAULT_REFRESH,
                  outbox=None, report_url=None, forward_interval=5.0, quiet=True, log_stream=None, sans=()):
    """A gateway on a background thread (tests, demo): a RunningServer with .mirror."""
    from . import server

    os.makedirs(cache_dir, exist_ok=True)
    httpd, url, files = server.make_server(cache_dir, port, tls_dir, bind, sans, quiet, True, log_stream, reports=False)
    m = attach(httpd, upstream_url, ca, refresh, outbox, report_url, forward_interval=forward_interval)
    running = server.RunningServer(httpd, url, files)
    running.mirror = m
    stop = running.stop

    def stop_all():
        stop()
        if m.forwarder is not None:
            m.forwarder.stop()
        m.outbox.close()

    running.stop = stop_all
    running.thread.start()
    return running


def load_ca(path):
    """A CA file (PEM or DER) -> what ssl's cadata takes."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        from .files import os_error

        raise os_error(e, path)
    if b"-----BEGIN" in data:
        return data.decode("ascii", "replace")
    return data

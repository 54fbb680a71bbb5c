"""Device status reports: the POST /report endpoint of `ota-tool serve`, their SQLite store, the
fleet summary behind `ota-tool fleet`, GET /status (HTML) and GET /status.json, and the gate of
`ota-tool rollout`.

The report a device POSTs (Content-Type: application/json, at most MAX_REPORT bytes, one object):
    device_id        str, required                 event  str, required, one of EVENTS
    running_version  str|null  the signed version the device runs now
    target_version   str|null  the release this event is about (for rolled_back: the release the
                               device rolled back FROM; for confirmed it defaults to running_version)
    reason           str|null  an OTAError reason code (failed, refused, rolled_back)
    message, channel, manifest_sha256: str|null;  bytes, duration_ms, boot_attempts, ticks_ms,
    time (device Unix time, only with a trusted clock): non-negative int|null
Unknown members are kept (the whole document is stored, normalised, in the `raw` column). Refused
with 400 and a JSON error: not UTF-8 JSON, not an object, a required member missing, a wrong type,
any string (member names included) over MAX_STRING characters. 413 over MAX_REPORT bytes, 415
without an application/json body (so a browser form cannot post one), 204 when stored. The server
stamps the receive time and the client address itself.

Reports are not authenticated beyond TLS: anyone who reaches the server can post them (see
`summarize` for what a report can and cannot influence).
"""
import html
import json
import os
import sqlite3
import threading
import time

from ota import manifest as device_manifest
from ota import version as device_version
from ota.errors import OTAError

from .errors import ToolError

MAX_REPORT = 4096
MAX_STRING = 256
DEFAULT_NAME = "ota-reports.sqlite"
DEFAULT_MAX_FAILURE_RATE = 0.05
STATUS_REFRESH_S = 30
DEVICE_LIST_MAX = 1000  # devices listed by fleet, /status and /status.json (most recently seen first)

EVENTS = ("checking", "downloading", "installed", "confirmed", "rolled_back", "refused", "failed",
          "up_to_date", "not_now")
STR_FIELDS = ("running_version", "target_version", "reason", "message", "channel", "manifest_sha256")
INT_FIELDS = ("bytes", "duration_ms", "boot_attempts", "ticks_ms", "time")
_INT_MAX = (1 << 63) - 1  # SQLite INTEGER

# Refusals by the device's policy (ota.policy.check): the device saw the release and correctly
# did not start it. They are not failures of the release (a test keeps this list in step with
# lib/ota/policy.py).
POLICY_REASONS = ("halted", "wrong_chip", "wrong_board", "board_unknown", "wrong_channel", "security_version",
                  "too_large", "expired", "up_to_date", "downgrade", "requires_micropython", "requires_idf",
                  "not_in_rollout", "known_bad", "replayed")
# Events that mean "this device tried to install the target release".
ATTEMPT_EVENTS = ("downloading", "installed", "confirmed", "rolled_back", "failed")
OUTCOMES = {"downloading": "downloading", "installed": "pending", "confirmed": "confirmed",
            "rolled_back": "rolled_back", "failed": "failed", "refused": "failed"}

SCHEMA = """
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    received REAL NOT NULL,
    client TEXT,
    device_id TEXT NOT NULL,
    event TEXT NOT NULL,
    running_version TEXT,
    target_version TEXT,
    reason TEXT,
    message TEXT,
    bytes INTEGER,
    duration_ms INTEGER,
    channel TEXT,
    manifest_sha256 TEXT,
    boot_attempts INTEGER,
    ticks_ms INTEGER,
    device_time INTEGER,
    raw TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS reports_device ON reports (device_id, id);
"""
COLUMNS = ("device_id", "event") + STR_FIELDS + INT_FIELDS[:-1]  # "time" goes to device_time


class ReportError(Exception):
    """A refused report: HTTP `status` and a message for the device's log."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status
        self.message = message


def default_path(release_dir):
    """Where `ota-tool serve RELEASE_DIR` keeps reports: next to the release folder, not in it
    (nothing in the folder devices download from changes)."""
    return os.path.join(os.path.dirname(os.path.abspath(release_dir).rstrip(os.sep)), DEFAULT_NAME)


# --- one report


def _no_constant(name):
    raise ValueError("%s is not JSON" % name)


def _check_strings(doc):
    # Every string, member names included, at most MAX_STRING characters (iterative: no recursion).
    stack = [("", doc)]
    while stack:
        where, v = stack.pop()
        if isinstance(v, str):
            if len(v) > MAX_STRING:
                raise ReportError(400, "%s: a string of %d characters (at most %d)" % (where or "report", len(v), MAX_STRING))
        elif isinstance(v, dict):
            for k, x in v.items():
                if len(k) > MAX_STRING:
                    raise ReportError(400, "a member name of %d characters (at most %d)" % (len(k), MAX_STRING))
                stack.append((("%s.%s" % (where, k)) if where else k, x))
        elif isinstance(v, list):
            for i, x in enumerate(v):
                stack.append(("%s[%d]" % (where, i), x))


def _plain(name, v):
    # Control characters would garble terminals and logs that print these fields.
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in v):
        raise ReportError(400, "%s has control characters" % name)
    return v


def parse_report(body):
    """The report in `body` (bytes) checked -> a dict of the columns (+ "raw"); ReportError otherwise."""
    if len(body) > MAX_REPORT:
        raise ReportError(413, "a report of %d bytes: at most %d" % (len(body), MAX_REPORT))
    try:
        doc = json.loads(body.decode("utf-8"), parse_constant=_no_constant)
    except (UnicodeError, ValueError, RecursionError):
        raise ReportError(400, "the report is not UTF-8 JSON")
    if not isinstance(doc, dict):
        raise ReportError(400, "the report must be a JSON object")
    _check_strings(doc)
    rec = {}
    device_id = doc.get("device_id")
    if not isinstance(device_id, str) or not device_id:
        raise ReportError(400, "device_id (a non-empty string) is required")
    rec["device_id"] = _plain("device_id", device_id)
    event = doc.get("event")
    if event not in EVENTS:
        raise ReportError(400, "event must be one of %s" % ", ".join(EVENTS))
    rec["event"] = event
    for name in STR_FIELDS:
        v = doc.get(name)
        if v is not None and not isinstance(v, str):
            raise ReportError(400, "%s must be a string or null" % name)
        rec[name] = _plain(name, v) if v is not None and name != "message" else v
    for name in INT_FIELDS:
        v = doc.get(name)
        if v is not None and (not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _INT_MAX):
            raise ReportError(400, "%s must be a non-negative integer or null" % name)
        rec["device_time" if name == "time" else name] = v
    rec["raw"] = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return rec


# --- the store


class ReportStore:
    """Reports in one SQLite file (WAL). Safe to share between the server's request threads: one
    writing connection behind a lock; every summary reads on its own short-lived connection, so a
    status page never holds up a device's report."""

    def __init__(self, path, create=True):
        self.path = os.path.abspath(path)
        if not create and not os.path.exists(self.path):
            raise ToolError("no reports at %s" % self.path,
                            "reports are written by `ota-tool serve` (see its --reports); give --reports PATH")
        self._lock = threading.Lock()
        try:
            if create:
                os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=10, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as e:
            raise ToolError("cannot open the reports database %s: %s" % (self.path, e),
                            "give a writable file with --reports PATH")

    def close(self):
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def add(self, rec, client=None, received=None):
        """Store one checked report (from parse_report). Returns its row id."""
        values = [received if received is not None else time.time(), client]
        values += [rec.get(c) for c in COLUMNS] + [rec.get("device_time"), rec["raw"]]
        sql = "INSERT INTO reports (received, client, %s, device_time, raw) VALUES (%s)" % (
            ", ".join(COLUMNS), ", ".join("?" * len(values)))
        with self._lock:
            return self._db.execute(sql, values).lastrowid

    def add_report(self, doc, client=None, received=None):
        """Check and store a report given as a dict (tests, imports)."""
        return self.add(parse_report(json.dumps(doc).encode()), client, received)

    def rows(self, device_id=None):
        """All reports (oldest first) as dicts, optionally of one device."""
        with self._reader() as db:
            db.row_factory = sqlite3.Row
            if device_id is None:
                cur = db.execute("SELECT * FROM reports ORDER BY id")
            else:
                cur = db.execute("SELECT * FROM reports WHERE device_id = ? ORDER BY id", (device_id,))
            return [dict(r) for r in cur]

    def _reader(self):
        return _Reader(self.path)

    def summary(self, versions=None):
        """The fleet summary (see summarize)."""
        with self._reader() as db:
            return summarize(db, versions)

    # --- HTTP routes

    def handle_report(self, req):
        """POST /report."""
        ctype = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        try:
            if ctype != "application/json":
                raise ReportError(415, "send the report as Content-Type: application/json")
            rec = parse_report(req.body)
        except ReportError as e:
            return e.status, "application/json", json.dumps({"ok": False, "error": e.message}).encode()
        try:
            self.add(rec, client=req.client[0] if req.client else None)
        except sqlite3.Error as e:
            return 503, "application/json", json.dumps({"ok": False, "error": "cannot store: %s" % e}).encode()
        return 204, "application/json", b""

    def handle_status_json(self, req, root=None):
        s = self.summary()
        if root:
            attach_manifests(s, root)
        return 200, "application/json", (json.dumps(s, indent=1, sort_keys=True) + "\n").encode()

    def handle_status_html(self, req, root=None):
        s = self.summary()
        if root:
            attach_manifests(s, root)
        return 200, "text/html; charset=utf-8", status_html(s)


class _Reader:
    # A read-only connection for one summary, closed afterwards (ThreadingHTTPServer makes a thread
    # per request: per-thread connections would pile up).
    def __init__(self, path):
        self.path = path

    def __enter__(self):
        if os.path.isdir(self.path):
            raise ToolError("%s is a folder, not a reports database" % self.path,
                            "give the ota-reports.sqlite that ota-tool serve writes")
        try:
            self.db = sqlite3.connect("file:%s?mode=ro" % _uri_path(self.path), uri=True, timeout=10)
        except sqlite3.Error as e:
            raise ToolError("cannot read the reports database %s: %s" % (self.path, e), "give the ota-reports.sqlite that ota-tool serve writes")
        return self.db

    def __exit__(self, *exc):
        self.db.close()


def _uri_path(path):
    import urllib.parse

    return urllib.parse.quote(path)


def attach(httpd, reports, root):
    """Wire the report routes into a ReleaseServer. `reports`: True (the default file next to the
    release folder), a path, a ReportStore, or False/None (no routes). Returns the store or None.
    The default file is optional: when it cannot be made the server runs without reports and says so."""
    if reports is None or reports is False:
        return None
    if isinstance(reports, ReportStore):
        store = reports
    else:
        path = default_path(root) if reports is True else reports
        try:
            store = ReportStore(path)
        except ToolError as e:
            if reports is not True:
                raise
            httpd.log("reports disabled: %s" % e.message)
            return None
    httpd.add_route("POST", "/report", store.handle_report)
    for method in ("GET", "HEAD"):
        httpd.add_route(method, "/status", lambda req: store.handle_status_html(req, root))
        httpd.add_route(method, "/status.json", lambda req: store.handle_status_json(req, root))
    return store


# --- the fleet summary


def version_sort_key(v):
    """Newest first when sorted ascending: versions by the device's SemVer precedence
    (ota.version), anything else after."""
    try:
        return (0, _Newest(device_version.key(v)))
    except OTAError:
        return (1, v or "")


class _Newest:
    # A device version key that sorts in reverse (higher precedence first).
    def __init__(self, key):
        self.key = key

    def __lt__(self, other):
        return other.key < self.key

    def __eq__(self, other):
        return self.key == other.key


_ATTEMPT_SQL = ("(event IN (%s) OR (event = 'refused' AND (reason IS NULL OR reason NOT IN (%s))))" % (
    ", ".join("'%s'" % e for e in ATTEMPT_EVENTS), ", ".join("'%s'" % r for r in POLICY_REASONS)))
_TARGET_SQL = "COALESCE(target_version, CASE WHEN event = 'confirmed' THEN running_version END)"


def summarize(db, versions=None):
    """The fleet by release, from a sqlite3 connection to a reports database.

    Devices are told apart by device_id. A report is "about" release V when its target_version is V
    (a "confirmed" report without a target is about its running_version). Per release V:

    - running: devices whose most recent report that names a running_version names V.
    - per device, its OUTCOME for V is the event of its most recent ATTEMPT report about V; an
      attempt report is one of downloading, installed, confirmed, rolled_back, failed, or refused
      with a reason that is not a policy refusal (POLICY_REASONS, e.g. not_in_rollout). Outcomes:
        downloading            event downloading
        pending                event installed (written, not yet confirmed by the new image)
        confirmed              event confirmed
        failed                 event failed, or refused for a non-policy reason (bad signature...)
        rolled_back            event rolled_back
      A later report of another kind (checking, up_to_date, an attempt at another release) does not
      change a device's outcome for V: a device that rolled back stays counted as rolled back.
      A retry does: a device whose download failed and that then confirmed V counts as confirmed.
    - attempted: devices with an outcome for V (the sum of the five counts above).
    - skipped: devices with reports about V but no attempt: policy refusals other than up_to_date
      (not_in_rollout, wrong_chip...) and not_now.
    - failure_rate: (failed + rolled_back) / attempted, None when nothing was attempted.
    - reasons: {reason or "unknown": devices} among the failed and rolled back ones.
    - last_report: receive time (Unix) of the newest report about V or running V.

    Fleet-wide: devices, reports, latest_events {event: devices whose most recent report is it},
    and unattributed_failures: devices whose most recent report is failed/refused about no release
    (e.g. the manifest could not be fetched or verified), by reason.

    `versions`: only those releases (the list keeps every release otherwise). Releases are sorted
    newest first. Reports are unauthenticated: a forged report can move these numbers (e.g. block a
    widening), never a device; `ota-tool rollout --force` overrides.
    """
    _check_types(db)
    running = {}
    for _dev, ver, _ in db.execute(
            "SELECT device_id, running_version, max(id) FROM reports WHERE running_version IS NOT NULL "
            "GROUP BY device_id"):
        running[ver] = running.get(ver, 0) + 1
    rel = {}

    def entry(v):
        e = rel.get(v)
        if e is None:
            e = rel[v] = {"version": v, "running": 0, "attempted": 0, "downloading": 0, "pending": 0,
                          "confirmed": 0, "failed": 0, "rolled_back": 0, "skipped": 0,
                          "failure_rate": None, "reasons": {}, "last_report": None}
        return e

    for v, n in running.items():
        entry(v)["running"] = n
    attempted = set()
    for dev, tgt, event, reason, _ in db.execute(
            "SELECT device_id, tgt, event, reason, max(id) FROM (SELECT id, device_id, event, reason, %s AS tgt "
            "FROM reports WHERE %s) WHERE tgt IS NOT NULL GROUP BY device_id, tgt" % (_TARGET_SQL, _ATTEMPT_SQL)):
        e = entry(tgt)
        outcome = OUTCOMES[event]
        e[outcome] += 1
        e["attempted"] += 1
        if outcome in ("failed", "rolled_back"):
            key = reason or "unknown"
            e["reasons"][key] = e["reasons"].get(key, 0) + 1
        attempted.add((dev, tgt))
    for dev, tgt in db.execute(
            "SELECT DISTINCT device_id, target_version FROM reports WHERE target_version IS NOT NULL AND "
            "(event = 'not_now' OR (event = 'refused' AND reason IN (%s) AND reason != 'up_to_date'))"
            % ", ".join("'%s'" % r for r in POLICY_REASONS)):
        if (dev, tgt) not in attempted:
            entry(tgt)["skipped"] += 1
    for v, last in db.execute(
            "SELECT v, max(received) FROM (SELECT target_version AS v, received FROM reports UNION ALL "
            "SELECT running_version, received FROM reports) WHERE v IS NOT NULL GROUP BY v"):
        if v in rel:
            rel[v]["last_report"] = last
    for e in rel.values():
        if e["attempted"]:
            e["failure_rate"] = (e["failed"] + e["rolled_back"]) / e["attempted"]
    latest = {}
    unattributed = {}
    for event, reason, tgt, _ in db.execute(
            "SELECT event, reason, target_version, max(id) FROM reports GROUP BY device_id"):
        latest[event] = latest.get(event, 0) + 1
        if event in ("failed", "refused") and tgt is None and reason not in POLICY_REASONS:
            key = reason or "unknown"
            unattributed[key] = unattributed.get(key, 0) + 1
    devices, count = db.execute("SELECT count(DISTINCT device_id), count(*) FROM reports").fetchone()
    releases = sorted(rel.values(), key=lambda e: version_sort_key(e["version"]))
    if versions is not None:
        releases = [e for e in releases if e["version"] in versions]
    return {"devices": devices, "reports": count, "generated": time.time(), "latest_events": latest,
            "unattributed_failures": unattributed, "releases": releases, "device_list": device_list(db)}


# The types the summary reads, as parse_report stores them (SQLite keeps whatever a row was given).
_TYPED = (("received", "'real', 'integer'"), ("device_id", "'text'"), ("event", "'text'"),
          ("running_version", "'text', 'null'"), ("target_version", "'text', 'null'"), ("reason", "'text', 'null'"),
          ("channel", "'text', 'null'"), ("raw", "'text'"))


def _check_types(db):
    """ToolError naming the first row a summary cannot read (one not written by ota-tool serve)."""
    cond = " OR ".join("typeof(%s) NOT IN (%s)" % c for c in _TYPED)
    row = db.execute("SELECT id, %s FROM reports WHERE %s ORDER BY id LIMIT 1" % (
        ", ".join(c for c, _ in _TYPED), cond)).fetchone()
    if row is None:
        return
    bad = [(c, v) for (c, allowed), v in zip(_TYPED, row[1:])
           if ("'%s'" % {type(None): "null", str: "text", float: "real", int: "integer"}.get(type(v), "blob"))
           not in allowed]
    raise ToolError("the reports database has a row ota-tool did not write: report %d has %s" % (
        row[0], ", ".join("%s %r" % cv for cv in bad)),
        "delete or fix that row (sqlite3 FILE \"DELETE FROM reports WHERE id = %d\"); ota-tool serve writes "
        "every report checked" % row[0])


def device_list(db, limit=DEVICE_LIST_MAX):
    """The devices, most recently heard from first (at most `limit`): id, release (the running
    version it last reported), app (the app bundle version it last reported), state (its latest
    event, with the release and reason it names), channel, last_seen (receive time)."""
    out = []
    rows = db.execute(
        "SELECT r.device_id, r.event, r.target_version, r.reason, r.received, r.channel, "
        "(SELECT running_version FROM reports x WHERE x.device_id = r.device_id AND x.running_version IS NOT NULL "
        " ORDER BY x.id DESC LIMIT 1), "
        "(SELECT raw FROM reports y WHERE y.device_id = r.device_id AND y.raw LIKE '%\"app_version\"%' "
        " ORDER BY y.id DESC LIMIT 1) "
        "FROM reports r WHERE r.id IN (SELECT max(id) FROM reports GROUP BY device_id) "
        "ORDER BY r.received DESC, r.id DESC LIMIT ?", (limit,))
    for dev, event, target, reason, received, channel, running, app_raw in rows:
        app = None
        if app_raw:
            try:
                app = json.loads(app_raw).get("app_version")
            except ValueError:
                pass
        state = event.replace("_", " ")
        if target:
            state += " " + target
        if reason:
            state += ": " + reason
        out.append({"device_id": dev, "release": running, "app": app if isinstance(app, str) else None,
                    "state": state, "event": event, "channel": channel, "last_seen": received})
    return out


def summary_from_path(path, versions=None):
    """summarize() of the reports file at `path`; ToolError if it is missing."""
    if not os.path.exists(path):
        raise ToolError("no reports at %s" % path, "reports are written by `ota-tool serve` (see its --reports)")
    with _Reader(os.path.abspath(path)) as db:
        try:
            return summarize(db, versions)
        except sqlite3.Error as e:
            from .filekinds import of_path

            raise ToolError("%s is %s, not a reports database (%s)" % (path, of_path(path), e),
                            "give the ota-reports.sqlite that ota-tool serve writes (--reports PATH)")


def release_entry(summary, version):
    """The summary of one release (all zero when no device reported about it)."""
    for e in summary["releases"]:
        if e["version"] == version:
            return e
    return {"version": version, "running": 0, "attempted": 0, "downloading": 0, "pending": 0, "confirmed": 0,
            "failed": 0, "rolled_back": 0, "skipped": 0, "failure_rate": None, "reasons": {}, "last_report": None}


def device_channels(path):
    """{device_id: its most recently reported channel or None}, for the rollout's expected share."""
    if not os.path.exists(path):
        return {}
    with _Reader(os.path.abspath(path)) as db:
        out = {dev: None for (dev,) in db.execute("SELECT DISTINCT device_id FROM reports")}
        for dev, ch, _ in db.execute("SELECT device_id, channel, max(id) FROM reports WHERE channel IS NOT NULL "
                                     "GROUP BY device_id"):
            out[dev] = ch
    return out


# --- what is published (for the status page; signatures are not checked there)


def attach_manifests(summary, root, limit=16):
    """Add the rollout state of the manifests at the top of the release folder to the summary:
    "manifests": [{file, version, channel, percent, halted}], and "manifest" on matching releases."""
    found = []
    try:
        names = sorted(n for n in os.listdir(root) if n.endswith(".json") and not n.startswith("."))
    except OSError:
        names = []
    for name in names[:limit]:
        try:
            with open(os.path.join(root, name), "rb") as f:
                blob = f.read(device_manifest.MAX_DOCUMENT + 1024)
            _, doc = device_manifest.split(blob)
            d = json.loads(doc)
        except (OSError, OTAError, ValueError):
            continue
        if not isinstance(d, dict) or d.get("type") != "firmware":
            continue
        ro = d.get("rollout") if isinstance(d.get("rollout"), dict) else {}
        found.append({"file": name, "version": d.get("version"), "channel": d.get("channel"),
                      "percent": ro.get("percent", 100), "halted": d.get("halted") is True})
    summary["manifests"] = found
    by_version = {m["version"]: m for m in found}
    for e in summary["releases"]:
        if e["version"] in by_version:
            e["manifest"] = by_version[e["version"]]
    for m in found:
        if not any(e["version"] == m["version"] for e in summary["releases"]):
            summary["releases"].append(dict(release_entry(summary, m["version"]), manifest=m))
    summary["releases"].sort(key=lambda e: version_sort_key(e["version"]))
    return summary


# --- presentation

TABLE_COLUMNS = (("version", "RELEASE"), ("running", "RUNNING"), ("attempted", "ATTEMPTED"),
                 ("downloading", "DOWNLOADING"), ("pending", "PENDING"), ("confirmed", "CONFIRMED"),
                 ("failed", "FAILED"), ("rolled_back", "ROLLED BACK"), ("failure_rate", "FAIL RATE"),
                 ("skipped", "SKIPPED"))


def _rate(r):
    return "-" if r is None else "%.1f%%" % (100 * r)


def _cell(e, key):
    if key == "failure_rate":
        return _rate(e[key])
    return str(e[key])


def when(t, now=None):
    """A receive time as people read it: UTC, and how long ago."""
    now = time.time() if now is None else now
    ago = max(0, int(now - t))
    rel = "%d s" % ago if ago < 120 else "%d min" % (ago // 60) if ago < 7200 else "%d h" % (ago // 3600) \
        if ago < 172800 else "%d days" % (ago // 86400)
    return "%s UTC (%s ago)" % (time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)), rel)


DEVICE_COLUMNS = (("device_id", "DEVICE"), ("release", "RELEASE"), ("app", "APP"), ("state", "STATE"),
                  ("last_seen", "LAST SEEN"))


def _device_cells(d, now):
    return [d["device_id"], d["release"] or "-", d["app"] or "-", d["state"], when(d["last_seen"], now)]


def _columns(rows):
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def format_devices(summary, most=50):
    """The device list as text lines (ota-tool fleet)."""
    devs = summary.get("device_list") or []
    if not devs:
        return []
    now = summary.get("generated")
    rows = [[h for _, h in DEVICE_COLUMNS]] + [_device_cells(d, now) for d in devs[:most]]
    lines = ["", "devices, most recently heard from first:"] + _columns(rows)
    if len(devs) > most or summary["devices"] > len(devs):
        lines.append("... and %d more (ota-tool fleet --json lists %d)" % (summary["devices"] - min(most, len(devs)),
                                                                            len(devs)))
    return lines


def format_table(summary):
    """The summary as a text table (ota-tool fleet)."""
    rows = [[h for _, h in TABLE_COLUMNS]]
    for e in summary["releases"]:
        rows.append([_cell(e, k) for k, _ in TABLE_COLUMNS])
    widths = [max(len(r[i]) for r in rows) for i in range(len(TABLE_COLUMNS))]
    lines = ["%d devices, %d reports" % (summary["devices"], summary["reports"])]
    for r in rows:
        lines.append("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip())
    for e in summary["releases"]:
        if e["reasons"]:
            lines.append("%s failed/rolled back by reason: %s" % (e["version"], ", ".join(
                "%s %d" % kv for kv in sorted(e["reasons"].items(), key=lambda kv: (-kv[1], kv[0])))))
    if summary["unattributed_failures"]:
        lines.append("devices failing before a release was known: %s" % ", ".join(
            "%s %d" % kv for kv in sorted(summary["unattributed_failures"].items())))
    return "\n".join(lines + format_devices(summary))


def status_html(summary, max_failure_rate=DEFAULT_MAX_FAILURE_RATE):
    """A small self-refreshing HTML page of the summary (no JavaScript)."""
    esc = html.escape
    out = ['<!doctype html><html><head><meta charset="utf-8">',
           '<meta http-equiv="refresh" content="%d">' % STATUS_REFRESH_S,
           "<title>ota fleet</title><style>body{font-family:sans-serif;margin:1em}"
           "table{border-collapse:collapse}td,th{padding:.2em .6em;border-bottom:1px solid #ccc;text-align:right}"
           "td:first-child,th:first-child{text-align:left}.bad{color:#b00;font-weight:bold}"
           ".muted{color:#777}</style></head><body>",
           "<h1>Fleet</h1><p>%d devices, %d reports; %s UTC (refreshes every %d s)</p>" % (
               summary["devices"], summary["reports"],
               time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(summary["generated"])), STATUS_REFRESH_S)]
    out.append("<table><tr>%s<th>STAGE</th></tr>" % "".join("<th>%s</th>" % esc(h) for _, h in TABLE_COLUMNS))
    for e in summary["releases"]:
        cells = []
        for k, _ in TABLE_COLUMNS:
            bad = k == "failure_rate" and e[k] is not None and e[k] > max_failure_rate
            cells.append('<td%s>%s</td>' % (' class="bad"' if bad else "", esc(_cell(e, k))))
        m = e.get("manifest")
        stage = ("halted" if m["halted"] else "%s%%" % m["percent"]) + " (%s)" % m["file"] if m else ""
        cells.append('<td class="%s">%s</td>' % ("bad" if m and m["halted"] else "muted", esc(stage)))
        out.append("<tr>%s</tr>" % "".join(cells))
    out.append("</table>")
    reasons = [(e["version"], e["reasons"]) for e in summary["releases"] if e["reasons"]]
    if reasons:
        out.append("<h2>Failures by reason</h2><ul>")
        for v, rs in reasons:
            out.append("<li>%s: %s</li>" % (esc(v), esc(", ".join("%s %d" % kv for kv in sorted(rs.items())))))
        out.append("</ul>")
    if summary["latest_events"]:
        out.append("<h2>Latest event per device</h2><p>%s</p>" % esc(", ".join(
            "%s %d" % kv for kv in sorted(summary["latest_events"].items()))))
    devs = summary.get("device_list") or []
    if devs:
        out.append("<h2>Devices</h2><p>%d shown, most recently heard from first</p><table><tr>%s</tr>" % (
            len(devs), "".join("<th>%s</th>" % esc(h) for _, h in DEVICE_COLUMNS)))
        for d in devs:
            bad = d["event"] in ("rolled_back", "failed", "refused")
            out.append("<tr>%s</tr>" % "".join('<td%s>%s</td>' % (' class="bad"' if bad and i == 3 else "", esc(c))
                                               for i, c in enumerate(_device_cells(d, summary["generated"]))))
        out.append("</table>")
    if summary.get("manifests") is not None:
        out.append('<p class="muted">Stage: read from the manifests in the release folder; their '
                   "signatures are not checked by this page.</p>")
    out.append("</body></html>\n")
    return "".join(out).encode()

"""Device status reports: POST /report over real HTTPS with the device's own client, the SQLite
store, the fleet summary semantics on a synthetic fleet, GET /status(.json), `ota-tool fleet`."""
import concurrent.futures
import http.client
import json
import os
import re
import sqlite3
import ssl

import pytest
from ota.errors import OTAError
from ota.http import HttpFetcher
from ota_tool import cli, reports
from ota_tool.reports import ReportError, ReportStore, parse_report
from ota_tool.server import start_server

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def srv(tmp_path):
    rel = tmp_path / "release"
    rel.mkdir()
    (rel / "fw.bin").write_bytes(b"x" * 100)
    s = start_server(str(rel), tls_dir=str(tmp_path / "tls"))
    yield s
    s.stop()


def post(srv, doc, fetcher=None):
    body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return (fetcher or HttpFetcher(ca=srv.ca_der)).post_json(srv.url + "report", body, 256)


def raw_request(srv, method, path, body=None, headers=None):
    ctx = ssl.create_default_context(cadata=srv.ca_der)
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def db_rows(path):
    db = sqlite3.connect(path)
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM reports ORDER BY id")]
    finally:
        db.close()


def test_report_stored_over_https(srv, tmp_path):
    assert srv.reports.path == str(tmp_path / "ota-reports.sqlite")  # default: next to the release folder
    doc = {"device_id": "esp-a1", "event": "installed", "running_version": "1.0.0", "target_version": "1.1.0",
           "bytes": 123456, "duration_ms": 8150, "channel": "stable", "manifest_sha256": "ab" * 32,
           "boot_attempts": 0, "ticks_ms": 99, "time": 1700000000, "reason": None, "message": "ok",
           "heap_free": 41000, "extra": {"nested": [1, 2]}}
    assert post(srv, doc) == b""  # 204, no body
    rows = db_rows(srv.reports.path)
    assert len(rows) == 1
    r = rows[0]
    assert (r["device_id"], r["event"], r["running_version"], r["target_version"]) == ("esp-a1", "installed", "1.0.0", "1.1.0")
    assert (r["bytes"], r["duration_ms"], r["boot_attempts"], r["ticks_ms"], r["device_time"]) == (123456, 8150, 0, 99, 1700000000)
    assert (r["channel"], r["manifest_sha256"], r["message"], r["reason"]) == ("stable", "ab" * 32, "ok", None)
    assert r["client"] == "127.0.0.1"
    assert abs(r["received"] - __import__("time").time()) < 60  # stamped by the server
    assert json.loads(r["raw"]) == doc  # unknown members kept
    # minimal report: only the required members
    post(srv, {"device_id": "esp-b2", "event": "checking"})
    r = db_rows(srv.reports.path)[1]
    assert (r["device_id"], r["event"], r["running_version"], r["bytes"]) == ("esp-b2", "checking", None, None)
    # WAL mode and the index are there
    db = sqlite3.connect(srv.reports.path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert "reports_device" in {r[1] for r in db.execute("PRAGMA index_list(reports)")}
    db.close()


BAD = [
    (b"[]", "object"), (b'"x"', "object"), (b"1", "object"), (b"null", "object"),
    (b"{not json", "UTF-8 JSON"), (b'{"device_id": "\xff", "event": "checking"}', "UTF-8 JSON"),
    (b'{"device_id": "a", "event": "checking", "bytes": NaN}', "UTF-8 JSON"),
    (b"[" * 3000 + b"]" * 3000, None),  # over 4 KiB: 413, see below
    (b'{"event": "checking"}', "device_id"), (b'{"device_id": "", "event": "checking"}', "device_id"),
    (b'{"device_id": 5, "event": "checking"}', "device_id"),
    (b'{"device_id": "a"}', "event"), (b'{"device_id": "a", "event": "exploded"}', "event"),
    (b'{"device_id": "a", "event": "failed", "reason": 3}', "reason"),
    (b'{"device_id": "a", "event": "failed", "bytes": "12"}', "bytes"),
    (b'{"device_id": "a", "event": "failed", "bytes": -1}', "bytes"),
    (b'{"device_id": "a", "event": "failed", "bytes": 1.5}', "bytes"),
    (b'{"device_id": "a", "event": "failed", "duration_ms": true}', "duration_ms"),
    (b'{"device_id": "a", "event": "failed", "time": 99999999999999999999}', "time"),
    (b'{"device_id": "a\\u001b[2J", "event": "checking"}', "control"),
    (json.dumps({"device_id": "a" * 257, "event": "checking"}).encode(), "257"),
    (json.dumps({"device_id": "a", "event": "checking", "note": {"deep": ["b" * 300]}}).encode(), "note.deep[0]"),
    (json.dumps({"device_id": "a", "event": "checking", "k" * 300: 1}).encode(), "member name"),
]


@pytest.mark.parametrize("body, words", BAD)
def test_parse_report_refuses(body, words):
    with pytest.raises(ReportError) as e:
        parse_report(body)
    if words is None:
        assert e.value.status == 413
    else:
        assert e.value.status == 400 and words in e.value.message


def test_parse_report_limits_are_inclusive():
    rec = parse_report(json.dumps({"device_id": "d" * 256, "event": "checking", "message": "m" * 256,
                                   "x": "y" * 256}).encode())
    assert rec["device_id"] == "d" * 256
    body = json.dumps({"device_id": "a", "event": "checking", "pad": "p" * 200}).encode()
    body = body[:-1] + b" " * (4096 - len(body)) + b"}"
    assert len(body) == 4096 and parse_report(body)["event"] == "checking"
    with pytest.raises(ReportError) as e:
        parse_report(body + b" ")
    assert e.value.status == 413


def test_bad_reports_refused_over_https(srv):
    f = HttpFetcher(ca=srv.ca_der)
    for body, words in BAD:
        with pytest.raises(OTAError) as e:
            post(srv, body, f)
        assert e.value.reason == ("http_413" if words is None else "http_400"), body[:60]
    # over the server's own 64 KiB limit: it answers 413 without reading the body and closes, so
    # a client still sending may see the connection end instead
    with pytest.raises(OTAError) as e:
        post(srv, b"{" + b" " * 70000 + b"}", f)
    assert e.value.reason in ("http_413", "truncated", "network")
    # the error is JSON that says what is wrong
    status, h, body = raw_request(srv, "POST", "/report", b'{"device_id": "a", "event": "boom"}',
                                  {"Content-Type": "application/json"})
    assert status == 400 and h["content-type"] == "application/json"
    err = json.loads(body)
    assert err["ok"] is False and "event must be one of" in err["error"]
    # not JSON content: 415 (a browser form cannot post a report)
    status, _, body = raw_request(srv, "POST", "/report", b'{"device_id": "a", "event": "checking"}',
                                  {"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in json.loads(body)["error"]
    assert db_rows(srv.reports.path) == []  # nothing stored


def test_reports_off_and_explicit_path(tmp_path):
    rel = tmp_path / "release"
    rel.mkdir()
    s = start_server(str(rel), tls_dir=str(tmp_path / "tls"), reports=False)
    try:
        assert s.reports is None
        with pytest.raises(OTAError) as e:
            post(s, {"device_id": "a", "event": "checking"})
        assert e.value.reason == "http_404"
        assert raw_request(s, "GET", "/status")[0] == 404
    finally:
        s.stop()
    assert not (tmp_path / "ota-reports.sqlite").exists()
    path = tmp_path / "elsewhere" / "r.sqlite"
    s = start_server(str(rel), tls_dir=str(tmp_path / "tls"), reports=str(path))
    try:
        post(s, {"device_id": "a", "event": "checking"})
    finally:
        s.stop()
    assert [r["device_id"] for r in db_rows(str(path))] == ["a"]


# --- a synthetic fleet of 60 devices (the numbers below are worked out by hand from it)

OLD, NEW = "1.0.0", "1.1.0"


def _r(event, run, tgt=None, **kw):
    d = {"event": event, "running_version": run, "target_version": tgt, "channel": "stable"}
    d.update(kw)
    return d


def fleet_reports():
    """{device_id: [report, ...] in order}."""
    dev = {}
    update = [_r("checking", OLD), _r("downloading", OLD, NEW), _r("installed", OLD, NEW, bytes=70000, duration_ms=9000)]
    for i in range(30):  # confirmed; the first 5 send "confirmed" without a target
        conf = _r("confirmed", NEW) if i < 5 else _r("confirmed", NEW, NEW, boot_attempts=1)
        dev[i] = update + [conf, _r("checking", NEW), _r("up_to_date", NEW, NEW)]
    for i in range(30, 36):  # pending: installed, never confirmed
        dev[i] = list(update)
    for i in range(36, 39):  # still downloading
        dev[i] = update[:2]
    for i in range(39, 43):  # failed, then a plain check (does not change the outcome)
        reason = "artifact_hash_mismatch" if i < 41 else "timeout"
        dev[i] = update[:2] + [_r("failed", OLD, NEW, reason=reason), _r("checking", OLD)]
    for i in range(43, 45):  # failed, retried, confirmed: counts as confirmed
        dev[i] = update[:2] + [_r("failed", OLD, NEW, reason="timeout")] + update[1:] + [_r("confirmed", NEW, NEW)]
    for i in range(45, 48):  # rolled back
        dev[i] = update + [_r("rolled_back", OLD, NEW, reason="self_test_failed", boot_attempts=3), _r("checking", OLD)]
    dev[47] = dev[47][:-1] + [_r("refused", OLD, NEW, reason="not_in_rollout")]  # later outside the stage
    dev[48] = [_r("checking", OLD), _r("refused", OLD, NEW, reason="insufficient_heap")]  # non-policy: failed
    for i in range(49, 54):
        dev[i] = [_r("checking", OLD), _r("refused", OLD, NEW, reason="not_in_rollout")]
    for i in range(54, 56):
        dev[i] = [_r("checking", OLD), _r("not_now", OLD, NEW, reason="battery_low")]
    dev[56] = [_r("refused", NEW, NEW, reason="up_to_date")]  # factory-flashed with NEW
    dev[57] = [_r("checking", OLD), _r("failed", OLD, None, reason="timeout")]  # manifest never fetched
    dev[58] = [_r("checking", OLD)]
    dev[59] = [_r("checking", "0.9.0"), _r("downloading", "0.9.0", OLD), _r("installed", "0.9.0", OLD),
               _r("confirmed", OLD, OLD), _r("not_now", OLD, NEW)]
    return {"dev-%02d" % i: [dict(r, device_id="dev-%02d" % i) for r in seq] for i, seq in dev.items()}


EXPECTED_NEW = {"version": NEW, "running": 33, "attempted": 49, "downloading": 3, "pending": 6, "confirmed": 32,
                "failed": 5, "rolled_back": 3, "skipped": 8,
                "reasons": {"artifact_hash_mismatch": 2, "timeout": 2, "insufficient_heap": 1, "self_test_failed": 3}}
EXPECTED_OLD = {"version": OLD, "running": 27, "attempted": 1, "downloading": 0, "pending": 0, "confirmed": 1,
                "failed": 0, "rolled_back": 0, "skipped": 0, "reasons": {}}
EXPECTED_LATEST = {"up_to_date": 30, "installed": 6, "downloading": 3, "checking": 7, "confirmed": 2, "refused": 8,
                   "not_now": 3, "failed": 1}


def check_fleet_summary(s):
    assert s["devices"] == 60
    assert s["reports"] == sum(len(v) for v in fleet_reports().values())
    assert [e["version"] for e in s["releases"]] == [NEW, OLD]  # newest first; 0.9.0 has no device left
    new, old = s["releases"]
    assert {k: new[k] for k in EXPECTED_NEW} == EXPECTED_NEW
    assert new["failure_rate"] == pytest.approx(8 / 49)
    assert {k: old[k] for k in EXPECTED_OLD} == EXPECTED_OLD
    assert old["failure_rate"] == 0.0
    assert sum(e["running"] for e in s["releases"]) == 60  # every device runs exactly one release
    assert s["latest_events"] == EXPECTED_LATEST
    assert s["unattributed_failures"] == {"timeout": 1}
    assert new["last_report"] is not None


def test_fleet_summary_semantics(tmp_path):
    with ReportStore(str(tmp_path / "r.sqlite")) as store:
        for seq in fleet_reports().values():
            for doc in seq:
                store.add_report(doc)
        check_fleet_summary(store.summary())
        only = store.summary([OLD])
        assert [e["version"] for e in only["releases"]] == [OLD]


def test_fleet_posted_concurrently_over_https(srv):
    """Each device posts its own sequence in order; the devices post at once (the server's threads
    share the store)."""
    def device(seq):
        f = HttpFetcher(ca=srv.ca_der)
        for doc in seq:
            assert post(srv, doc, f) == b""

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        list(pool.map(device, fleet_reports().values()))
    check_fleet_summary(srv.reports.summary())
    # /status.json: the same summary
    status, h, body = raw_request(srv, "GET", "/status.json")
    assert status == 200 and h["content-type"] == "application/json"
    s = json.loads(body)
    check_fleet_summary(s)
    assert s["manifests"] == []  # nothing published in this release folder
    # /status: a small HTML page, no script, refreshing itself
    status, h, body = raw_request(srv, "GET", "/status")
    assert status == 200 and h["content-type"] == "text/html; charset=utf-8"
    page = body.decode()
    assert '<meta http-equiv="refresh" content="30">' in page and "<script" not in page
    assert "60 devices" in page
    row = re.search(r"<tr><td>1\.1\.0</td>(.*?)</tr>", page).group(1)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
    assert cells[:9] == ["33", "49", "3", "6", "32", "5", "3", "16.3%", "8"]
    assert '<td class="bad">16.3%</td>' in row  # above the default 5% threshold
    assert page.count("<tr><td>dev-") == 60  # the device list: id, release, app, state, last seen
    assert len(body) < 4096 + 300 * 60
    status, h, body = raw_request(srv, "HEAD", "/status")
    assert status == 200 and body == b""


def test_status_page_escapes_and_shows_stage(srv, tmp_path):
    # a version string from a device is data, never markup
    post(srv, {"device_id": "x", "event": "failed", "target_version": "<b>1</b>", "reason": "<i>"})
    # a manifest-looking file in the release folder: the page shows its stage
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from ota_tool import keys

    KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    doc = {"type": "firmware", "version": "2.0.0", "channel": "beta", "rollout": {"percent": 5, "salt": "s"},
           "halted": True}
    (tmp_path / "release" / "beta.json").write_bytes(keys.sign(doc, [KEY]))
    page = raw_request(srv, "GET", "/status")[2].decode()
    assert "<b>1</b>" not in page and "&lt;b&gt;1&lt;/b&gt;" in page and "&lt;i&gt;" in page
    assert re.search(r"<tr><td>2\.0\.0</td>.*halted \(beta\.json\)", page)
    s = json.loads(raw_request(srv, "GET", "/status.json")[2])
    assert s["manifests"] == [{"file": "beta.json", "version": "2.0.0", "channel": "beta", "percent": 5, "halted": True}]


def test_policy_reasons_match_device_policy():
    """Every refusal reason ota.policy.check can raise is a POLICY_REASON (not counted as a failure)."""
    with open(os.path.join(ROOT, "lib", "ota", "policy.py")) as f:
        src = f.read()
    found = set(re.findall(r'OTAError\("([a-z_]+)",', src))
    found |= {"requires_" + w for w in re.findall(r'for what in \(([^)]*)\)', src)[0].replace('"', "").replace(" ", "").split(",") if w}
    assert found and found <= set(reports.POLICY_REASONS), found - set(reports.POLICY_REASONS)
    assert {"not_in_rollout", "halted", "up_to_date"} <= found


def test_fleet_command(tmp_path, capsys):
    rel = tmp_path / "release"
    rel.mkdir()
    with ReportStore(reports.default_path(str(rel))) as store:
        for seq in fleet_reports().values():
            for doc in seq:
                store.add_report(doc)
    assert cli.main(["fleet", str(rel), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is True
    check_fleet_summary(out)
    assert cli.main(["fleet", "--reports", reports.default_path(str(rel))]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "60 devices, %d reports" % out["reports"]
    line = next(ln for ln in text.splitlines() if ln.startswith(NEW))
    assert line.split() == [NEW, "33", "49", "3", "6", "32", "5", "3", "16.3%", "8"]
    assert "1.1.0 failed/rolled back by reason: self_test_failed 3, artifact_hash_mismatch 2, timeout 2, insufficient_heap 1" in text
    assert cli.main(["fleet", "--reports", str(tmp_path / "missing.sqlite"), "--json"]) == 1
    assert "no reports at" in json.loads(capsys.readouterr().out)["error"]


@pytest.mark.micropython
def test_report_from_micropython(srv, tmp_path, mp):
    """The device library under MicroPython posts a report (heap-limited, real TLS): 204, stored."""
    ca = tmp_path / "ca.der"
    ca.write_bytes(srv.ca_der)
    code = ("from ota.http import HttpFetcher\n"
            "f = HttpFetcher(ca=open(%r, 'rb').read())\n"
            "r = f.post_json(%r, b'{\"device_id\":\"mp-1\",\"event\":\"rolled_back\",\"running_version\":\"1.0.0\","
            "\"target_version\":\"1.1.0\",\"reason\":\"self_test_failed\",\"boot_attempts\":3}', 64)\n"
            "print('answer', len(r))\n") % (str(ca), srv.url + "report")
    assert mp(code, heap="64k").split() == ["answer", "0"]
    [row] = db_rows(srv.reports.path)
    assert (row["device_id"], row["event"], row["target_version"], row["boot_attempts"]) == ("mp-1", "rolled_back", "1.1.0", 3)
    assert srv.reports.summary()["releases"][0]["rolled_back"] == 1

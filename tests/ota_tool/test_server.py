"""`ota-tool serve` / ota_tool.server: ranges, ETags, HEAD, traversal, TLS material, access log."""
import hashlib
import http.client
import io
import os
import socket
import ssl
import stat
import subprocess
import sys
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ota.errors import OTAError
from ota.http import HttpFetcher
from ota_tool import server as srvmod
from ota_tool.server import parse_range, start_server

DATA = bytes(range(256)) * 40  # 10240 bytes


@pytest.fixture
def release(tmp_path):
    rel = tmp_path / "release"
    (rel / "sub").mkdir(parents=True)
    (rel / "fw.bin").write_bytes(DATA)
    (rel / "manifest.json").write_bytes(b'{"version": 1}')
    (rel / "sub" / "x.bin").write_bytes(b"x" * 10)
    (rel / ".hidden").write_bytes(b"secret")
    (tmp_path / "outside.txt").write_bytes(b"outside")
    return rel


@pytest.fixture
def running(release, tmp_path):
    log = io.StringIO()
    srv = start_server(str(release), quiet=False, log_stream=log)
    srv.log = log
    yield srv
    srv.stop()


def request(srv, path, method="GET", headers=None):
    """Raw request (the path goes out as given); -> (status, headers dict, body)."""
    ctx = ssl.create_default_context(cadata=srv.ca_der)
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_get_whole_file(running):
    status, h, body = request(running, "/fw.bin")
    assert (status, body) == (200, DATA)
    assert h["content-length"] == str(len(DATA))
    assert h["content-type"] == "application/octet-stream"
    assert h["accept-ranges"] == "bytes"
    assert h["etag"] == '"%s"' % hashlib.sha256(DATA).hexdigest()[:32]
    status, h, body = request(running, "/manifest.json")
    assert (status, body, h["content-type"]) == (200, b'{"version": 1}', "application/json")
    assert request(running, "/sub/x.bin")[2] == b"x" * 10


@pytest.mark.parametrize("rng, start, end", [
    ("bytes=0-0", 0, 0), ("bytes=100-199", 100, 199), ("bytes=10000-", 10000, 10239),
    ("bytes=-40", 10200, 10239), ("bytes=10000-99999", 10000, 10239), ("bytes=-99999", 0, 10239),
])
def test_ranges(running, rng, start, end):
    status, h, body = request(running, "/fw.bin", headers={"Range": rng})
    assert status == 206
    assert body == DATA[start:end + 1]
    assert h["content-range"] == "bytes %d-%d/%d" % (start, end, len(DATA))
    assert h["content-length"] == str(end + 1 - start)


@pytest.mark.parametrize("rng", ["bytes=10240-", "bytes=20000-20001", "bytes=-0"])
def test_range_not_satisfiable(running, rng):
    status, h, body = request(running, "/fw.bin", headers={"Range": rng})
    assert status == 416
    assert h["content-range"] == "bytes */%d" % len(DATA)
    assert h["content-length"] == str(len(body))


@pytest.mark.parametrize("rng", ["bytes=0-1,5-6", "items=0-5", "bytes=5-1", "bytes=a-b", "bytes=-"])
def test_range_ignored_when_unusable(running, rng):
    status, _, body = request(running, "/fw.bin", headers={"Range": rng})
    assert (status, body) == (200, DATA)


def test_parse_range_unit():
    assert parse_range("bytes=5-", 10) == (5, 9)
    assert parse_range("bytes=-3", 10) == (7, 9)
    assert parse_range("bytes=0-", 0) == "unsatisfiable"
    assert parse_range("bytes= 2 - 3 ", 10) == (2, 3)
    assert parse_range("bytes=1-2,3-4", 10) is None


def test_etag_if_range_if_none_match(running, release):
    _, h, _ = request(running, "/fw.bin")
    etag = h["etag"]
    assert request(running, "/fw.bin")[1]["etag"] == etag  # stable
    status, _, body = request(running, "/fw.bin", headers={"Range": "bytes=10-", "If-Range": etag})
    assert (status, body) == (206, DATA[10:])
    status, _, body = request(running, "/fw.bin", headers={"Range": "bytes=10-", "If-Range": '"other"'})
    assert (status, body) == (200, DATA)
    status, _, body = request(running, "/fw.bin", headers={"Range": "bytes=10-", "If-Range": "W/" + etag})
    assert (status, body) == (200, DATA)  # If-Range compares strongly
    status, h, body = request(running, "/fw.bin", headers={"If-None-Match": '"x", ' + etag})
    assert (status, body, h["etag"]) == (304, b"", etag)
    assert request(running, "/fw.bin", headers={"If-None-Match": '"x"'})[0] == 200
    # new content -> new ETag (the cache keys on mtime and size)
    new = DATA[::-1]
    (release / "fw.bin").write_bytes(new)
    os.utime(release / "fw.bin", ns=(time.time_ns(), time.time_ns() + 10**9))
    status, h, body = request(running, "/fw.bin", headers={"Range": "bytes=10-", "If-Range": etag})
    assert (status, body) == (200, new)
    assert h["etag"] != etag


def test_head(running):
    status, h, body = request(running, "/fw.bin", method="HEAD")
    assert (status, body) == (200, b"")
    assert h["content-length"] == str(len(DATA))
    status, h, body = request(running, "/fw.bin", method="HEAD", headers={"Range": "bytes=0-9"})
    assert (status, body, h["content-length"]) == (206, b"", "10")
    status, h, _ = request(running, "/missing", method="HEAD")
    assert status == 404


@pytest.mark.parametrize("path", [
    "/../outside.txt", "/%2e%2e/outside.txt", "/sub/../../outside.txt", "/sub/%2E%2E/%2e%2e/outside.txt",
    "/..%2foutside.txt", "/.hidden", "/sub/..%5c..%5coutside.txt", "/fw.bin%00", "/sub", "/nope",
])  # "/" is the index page (tests/ota_tool/test_release_rules.py)
def test_traversal_and_missing_refused(running, path):
    status, _, body = request(running, path)
    assert status in (400, 403, 404)
    assert b"outside" not in body and b"secret" not in body


def test_symlink_out_refused(running, release, tmp_path):
    os.symlink(tmp_path / "outside.txt", release / "link.txt")
    assert request(running, "/link.txt")[0] == 403


def test_access_log(running):
    request(running, "/fw.bin", headers={"Range": "bytes=0-99"})
    request(running, "/missing")
    # The server writes its line once the response is out: the client may have it all first.
    deadline = time.monotonic() + 5
    while True:
        lines = [ln for ln in running.log.getvalue().splitlines() if '"GET' in ln]
        if len(lines) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert len(lines) == 2
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '"GET /fw.bin HTTP/1.1" 206 100 range="bytes=0-99"' in lines[0]
    assert '"GET /missing HTTP/1.1" 404' in lines[1]


def test_http_fetcher_against_server(running):
    f = HttpFetcher(ca=running.ca_der)
    body = f.open(running.url + "fw.bin", 0, len(DATA))
    etag = body.etag
    body.close()
    body = f.open(running.url + "fw.bin", 5000, len(DATA), etag=etag)
    assert (body.status, body.offset, body.total) == (206, 5000, len(DATA))
    buf = bytearray(1000)
    got = b""
    while True:
        n = body.readinto(buf)
        if not n:
            break
        got += bytes(buf[:n])
    body.close()
    assert got == DATA[5000:]
    with pytest.raises(OTAError) as e:
        f.open(running.url + "fw.bin", len(DATA), len(DATA) + 1)
    assert e.value.reason == "range_not_satisfiable"
    with pytest.raises(OTAError) as e:
        f.open(running.url + "../outside.txt")
    assert e.value.reason in ("http_403", "http_404")


def test_report_route_hook(running):
    seen = []

    def report(req):
        seen.append(req.json())
        return 200, "application/json", b'{"ok": true}'

    running.add_route("POST", "/report", report)
    f = HttpFetcher(ca=running.ca_der)
    assert f.post_json(running.url + "report", b'{"device": "d1"}', 100) == b'{"ok": true}'
    assert seen == [{"device": "d1"}]
    with pytest.raises(OTAError) as e:
        f.post_json(running.url + "other", b"{}", 100)
    assert e.value.reason == "http_404"


def test_tls_material_made_once_and_private(release, tmp_path):
    tls_dir = tmp_path / ".ota-tls"  # the default: RELEASE_DIR/../.ota-tls
    srv = start_server(str(release))
    try:
        ca1 = srv.ca_der
        assert request(srv, "/fw.bin")[0] == 200
    finally:
        srv.stop()
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE(os.stat(tls_dir / name).st_mode) == 0o600
    mtimes = {p.name: p.stat().st_mtime_ns for p in tls_dir.iterdir()}
    srv = start_server(str(release))
    try:
        assert srv.ca_der == ca1
        assert {p.name: p.stat().st_mtime_ns for p in tls_dir.iterdir()} == mtimes  # nothing remade
    finally:
        srv.stop()
    # a new name remakes the server certificate only, signed by the same CA
    files = srvmod.ensure_tls(str(tls_dir), sans=["ota.example", "10.1.2.3"])
    assert files.created == ["server.pem", "server.key"]
    assert files.ca_der == ca1
    cert = x509.load_pem_x509_certificate((tls_dir / "server.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    names = {str(v) for v in san.get_values_for_type(x509.DNSName)} | \
        {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    assert {"localhost", "127.0.0.1", "::1", socket.gethostname(), "ota.example", "10.1.2.3"} <= names
    ca = x509.load_der_x509_certificate(ca1)
    assert cert.issuer == ca.subject
    ca.public_key().verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    assert srvmod.fingerprint(ca1) == ":".join("%02X" % b for b in hashlib.sha256(ca1).digest())


def test_plain_http_only_when_asked(release, tmp_path):
    srv = start_server(str(release), tls=False, tls_dir=str(tmp_path / "t"))
    try:
        assert srv.url.startswith("http://") and srv.ca_der is None
        assert not (tmp_path / "t").exists()
        with pytest.raises(OTAError) as e:
            HttpFetcher().open(srv.url + "fw.bin")
        assert e.value.reason == "insecure"
    finally:
        srv.stop()


def test_serve_command(release, tmp_path):
    """The CLI prints the URL, the CA path and fingerprint, then serves until stopped."""
    env = dict(os.environ)
    proc = subprocess.Popen(
        [sys.executable, "-m", "ota_tool.cli", "serve", str(release), "--bind", "127.0.0.1", "--port", "0",
         "--tls-dir", str(tmp_path / "tls"), "--san", "device-gw.local"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        lines = []
        deadline = time.time() + 30
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "the board's settings then name" in line:  # the last line it prints before serving
                break
        text = "".join(lines)
        assert "SHA-256 fingerprint " in text and "ota-tool deploy --server %s" % text.split(" at ")[1].split()[0] in text, text
        url = text.split(" at ")[1].split()[0]
        ca_der = (tmp_path / "tls" / "ca.der").read_bytes()
        assert srvmod.fingerprint(ca_der) in text
        assert "device-gw.local" in text
        port = int(url.rsplit(":", 1)[1].strip("/"))
        status = request(type("S", (), {"ca_der": ca_der, "port": port}), "/manifest.json")[0]
        assert status == 200
        # The server writes its log line once the response is out: the client may have it all first.
        import select

        log = ""
        deadline = time.time() + 5
        while '"GET /manifest.json' not in log and time.time() < deadline:
            if select.select([proc.stderr], [], [], 0.1)[0]:
                log += proc.stderr.readline()
    finally:
        proc.terminate()
        proc.wait(10)
    assert '"GET /manifest.json HTTP/1.1" 200 14' in log + proc.stderr.read()


def test_serve_help():
    res = subprocess.run([sys.executable, "-m", "ota_tool.cli", "serve", "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    assert "--tls-dir" in res.stdout and "--no-tls" in res.stdout


def test_serve_refuses_missing_dir(tmp_path):
    res = subprocess.run([sys.executable, "-m", "ota_tool.cli", "serve", str(tmp_path / "nope"), "--port", "0"],
                         capture_output=True, text=True)
    assert res.returncode == 1
    assert "not a directory" in res.stderr

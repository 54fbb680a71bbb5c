"""HttpFetcher keep-alive (lib/ota/http.py): one TLS connection for the requests of a check, and
the fallbacks when a server closes it, under CPython and MicroPython.

Each scenario runs a few requests on one fetcher against its own scripted server (faulty_server),
then compares what the client got (the exact bytes or an OTAError reason) and how many TLS
handshakes the server saw. A connection must be reused only after a response read to its framed
end, never after an error or an unfinished body; when the server closes a kept connection (after
a response, between requests, with an RST) the next request still succeeds on a new one; when it
closes in the middle of a response the client reports it and does not retry that request.
"""
import hashlib
import json
import random

import pytest

from .faulty_server import FaultyServer, chunked, make_ca, make_cert, response

BODY = random.Random(5).randbytes(3000)
OK = response(200, BODY, ['ETag: "k1"'])
SMALL = response(200, b'{"v": 1}', ["Content-Type: application/json"])

RUNNER = r"""
import json, hashlib, binascii
from ota.http import HttpFetcher
from ota.errors import OTAError

def run_scenarios(path):
    for line in open(path):
        s = json.loads(line)
        f = HttpFetcher(ca=open(s["ca"], "rb").read(), read_timeout=1500, stall_timeout=3000,
                        connect_timeout=3000, keep_alive=s["keep"], idle_timeout=s["idle"])
        buf = bytearray(512)
        for i, st in enumerate(s["steps"]):
            try:
                if st["m"] == "POST":
                    data = f.post_json(s["base"] + st["p"], b'{"event": "x"}', 256)
                    res = "OK\t%d\t%s" % (len(data), binascii.hexlify(hashlib.sha256(data).digest()).decode())
                else:
                    b = f.open(s["base"] + st["p"], 0, 100000)
                    h = hashlib.sha256()
                    got = 0
                    try:
                        while st["read"] < 0 or got < st["read"]:
                            n = b.readinto(buf if st["read"] < 0 else memoryview(buf)[:min(512, st["read"] - got)])
                            if not n:
                                break
                            h.update(memoryview(buf)[:n])
                            got += n
                    finally:
                        b.close()
                    res = "OK\t%d\t%s" % (got, binascii.hexlify(h.digest()).decode())
            except OTAError as e:
                res = "ERR\t%s" % e.reason
            except Exception as e:
                res = "EXC\t%s %s" % (type(e).__name__, e)
            print("%s\t%d\t%s" % (s["name"], i, res))
        f.close()
"""


def keep(data):
    def script(conn, req):
        conn.send(data)
    return script


def then(data, how):
    def script(conn, req):
        conn.send(data)
        getattr(conn, how)()
    return script


def on_reuse(first, later):
    """`first` on a connection's first request, `later` on the requests after it."""
    def script(conn, req):
        (first if conn.served == 1 else later)(conn, req)
    return script


def nothing(how):
    def script(conn, req):
        getattr(conn, how)()  # the request is read, never answered
    return script


def cut(data, n):
    def script(conn, req):
        conn.send(data[:n])
        conn.close()
    return script


def no_close_header(conn, req):
    assert "close" not in req.headers.get("connection", "")
    conn.send(OK)


def asks_close(conn, req):
    assert req.headers.get("connection") == "close"
    conn.send(OK)
    conn.close()


def get(path, read=-1):
    return {"m": "GET", "p": path, "read": read}


def digest(data):
    return "OK\t%d\t%s" % (len(data), hashlib.sha256(data).hexdigest())


# name: (scripts by path, steps, expected result per step, handshakes, fetcher options)
SCENARIOS = {
    # one connection for manifest, key list (missing: a 404 whose body is read out), artifact, report
    "check_flow": ({"/stable.json": keep(SMALL), "/keys.json": keep(response(404, b"no such file\n")),
                    "/a.bin": no_close_header, "/report": keep(SMALL)},
                   [get("/stable.json"), get("/keys.json"), get("/a.bin"), {"m": "POST", "p": "/report"}],
                   [digest(b'{"v": 1}'), "ERR\thttp_404", digest(BODY), digest(b'{"v": 1}')], 1, {}),
    "chunked_then_redirect": ({"/c": keep(response(200, chunked(BODY, [1000, 7]), ["Transfer-Encoding: chunked"])),
                               "/r": keep(response(302, b"moved", ["Location: /a"])), "/a": keep(OK)},
                              [get("/c"), get("/r")], [digest(BODY), digest(BODY)], 1, {}),
    # the server closes after a response (FIN, or TLS close_notify): the next request goes anew
    "closed_after_response": ({"/a": then(OK, "close")}, [get("/a"), get("/a"), get("/a")],
                              [digest(BODY)] * 3, 3, {}),
    "notify_after_response": ({"/a": then(OK, "close_notify")}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {}),
    # the server closes a kept connection between requests, when the next request is on its way
    "closed_between": ({"/a": on_reuse(keep(OK), nothing("close"))}, [get("/a"), get("/a"), get("/a")],
                       [digest(BODY)] * 3, 3, {}),
    "reset_between": ({"/a": on_reuse(keep(OK), nothing("reset"))}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {}),
    # ... or in the middle of the next response: an error, not retried; the one after goes anew
    "closed_mid_body": ({"/a": keep(OK), "/b": on_reuse(keep(OK), cut(OK, len(OK) - 1000))},
                        [get("/a"), get("/b"), get("/a")], [digest(BODY), "ERR\ttruncated", digest(BODY)], 2, {}),
    "closed_mid_head": ({"/a": keep(OK), "/b": on_reuse(keep(OK), cut(OK, 20))},
                        [get("/a"), get("/b"), get("/a")], [digest(BODY), "ERR\ttruncated", digest(BODY)], 2, {}),
    # never reused: an unfinished body, more bytes than the body, Connection: close, HTTP/1.0,
    # a body without a length, a protocol error, keep_alive=False, an idle limit of 0
    "unfinished_body": ({"/a": keep(OK)}, [get("/a", read=1024), get("/a")], [digest(BODY[:1024]), digest(BODY)], 2, {}),
    "bytes_past_body": ({"/a": keep(OK + b"HTTP/1.1 200 OK\r\n")}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {}),
    "connection_close": ({"/a": keep(response(200, BODY, ["Connection: close"]))}, [get("/a"), get("/a")],
                         [digest(BODY)] * 2, 2, {}),
    "http_1_0": ({"/a": keep(OK.replace(b"HTTP/1.1", b"HTTP/1.0", 1))}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {}),
    "bad_response": ({"/a": keep(OK), "/bad": keep(response(206, BODY))}, [get("/a"), get("/bad"), get("/a")],
                     [digest(BODY), "ERR\tbad_response", digest(BODY)], 2, {}),
    "keep_alive_off": ({"/a": asks_close}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {"keep": False}),
    "idle_limit": ({"/a": keep(OK)}, [get("/a"), get("/a")], [digest(BODY)] * 2, 2, {"idle": 0}),
}


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = make_ca()
    paths = make_cert(ca).write(d, "server")
    (d / "ca.der").write_bytes(ca.der)
    started = {}
    for name, (scripts, *_rest) in SCENARIOS.items():
        s = FaultyServer(*paths)
        for path, script in scripts.items():
            s.add(path, script)
        started[name] = s
    yield started, str(d / "ca.der")
    for s in started.values():
        s.stop()


def _cases(tmp_path, servers, ca):
    path = tmp_path / "scenarios.jsonl"
    with open(path, "w") as f:
        for name, (_, steps, _, _, opts) in SCENARIOS.items():
            f.write(json.dumps({"name": name, "base": servers[name].url.rstrip("/"), "ca": ca, "steps": steps,
                                "keep": opts.get("keep", True), "idle": opts.get("idle", 20000)}) + "\n")
    return str(path)


@pytest.mark.parametrize("interp", ["cpython", pytest.param("micropython", marks=pytest.mark.micropython)])
def test_keep_alive_and_fallbacks(interp, servers, mp, tmp_path):
    started, ca = servers
    for s in started.values():
        s.handshakes = 0
    path = _cases(tmp_path, started, ca)
    if interp == "cpython":
        import contextlib
        import io

        scope = {}
        exec(RUNNER, scope)
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            scope["run_scenarios"](path)
        out = out.getvalue()
    else:
        out = mp(RUNNER + "\nrun_scenarios(%r)\n" % path, heap="96k")
    got = {}
    for line in out.splitlines():
        name, i, res = line.split("\t", 2)
        got.setdefault(name, []).append(res)
    problems = []
    for name, (_, _, expect, handshakes, _) in SCENARIOS.items():
        if got.get(name) != expect:
            problems.append("%s: got %s, expected %s" % (name, got.get(name), expect))
        if started[name].handshakes != handshakes:
            problems.append("%s: %d TLS handshakes, expected %d (%s)" % (
                name, started[name].handshakes, handshakes, started[name].errors[-3:]))
    assert not problems, "\n".join(problems)


# --- the agent's check through `ota-tool serve` and through the gateway: one TLS handshake


@pytest.mark.parametrize("via", ["serve", "gateway"])
def test_one_handshake_per_check(tmp_path, via):
    from ota import agent as ota_agent
    from ota_tool import devfs, images, keys, mirror, release, reports, server, sim
    from tests.simhelpers import SMALL

    v1 = images.app_image("1.0.0", size=SMALL, seed=1)
    v2 = images.app_image("2.0.0", size=SMALL, seed=2)
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = tmp_path / "repo"
    release.build(v2, "2.0.0", [key], str(repo))
    store = str(tmp_path / "reports.sqlite")
    up = server.start_server(str(repo), tls_dir=str(tmp_path / "tls"), reports=store)
    gw = None
    front = up
    if via == "gateway":
        gw = mirror.start_gateway(str(tmp_path / "cache"), up.url, ca=up.ca_der, tls_dir=str(tmp_path / "gw-tls"),
                                  refresh=0, outbox=str(tmp_path / "outbox.sqlite"), forward_interval=0.05)
        front = gw
    try:
        dev = sim.create(str(tmp_path / "dev.bin"), v1)
        devfs.put(dev.path, "ota.json", json.dumps({
            "source": front.url + "stable.json", "keys": {"release": keys.public_text(key)},
            "report_url": front.url + "report", "device_id": "d1"}).encode())
        devfs.put(dev.path, "ota_ca.der", front.ca_der)
        out = dev.run(lambda: ota_agent.Agent().check_now(reboot=False))
        assert out.value == "installed", out
        # manifest, key list (absent: 404), the "downloading" report, the image, the "installed" report
        assert front.httpd.tls_sessions == 1
        dev.run(lambda: ota_agent.Agent().check_now(reboot=False))  # the next check: one more
        assert front.httpd.tls_sessions == 2
    finally:
        if gw is not None:
            gw.stop()
        up.stop()
    events = [r["event"] for r in reports.ReportStore(store).rows("d1")] if via == "serve" else None
    assert events is None or events[:2] == ["downloading", "installed"], events

"""Slow retrieval (TUF) from a malicious mirror/CDN: SECURITY.md says "a stall timeout (the response
head, and each body read, must make progress: a byte-by-byte drip fails)" and, for Issue 14 class 4,
that no server-chosen delay holds the device. These cases drip the body one byte per TLS record,
each within the read timeout, and measure how long one check is held.

The device's timeouts are scaled down x33 (read 300 ms, stall 1 s instead of 10 s / 30 s) so that
the tests run in seconds; the device code is unchanged. Property: one check against a server that
never completes ends within a few stall timeouts, whatever the server does."""
import time

import pytest

from . import rt

STALL_S = 1.0
BOUND_S = 5 * STALL_S  # generous: 5 stall timeouts


@pytest.fixture
def world(tmp_path, monkeypatch):
    rt.short_timeouts(monkeypatch, read_ms=300, stall_ms=int(STALL_S * 1000))
    w = rt.World(tmp_path)
    yield w
    w.close()


def _timed_check(world, **kw):
    t0 = time.time()
    r = world.check(**kw)
    return r, time.time() - t0


def test_manifest_body_drip_holds_one_check(world):
    """The manifest (about 1 KB) dripped at 1 byte / 200 ms (under the 300 ms read timeout); the
    mirror gives up after 8 s. With the real timeouts (1 byte / 9 s) the same drip holds one check
    for about 1 KB x 9 s = 2.5 hours, up to 8.7 KB x 9 s = 22 hours for the largest manifest."""
    info = world.publish("2.0.0")
    hostile = rt.HostileServer(world, {"/stable.json": rt.drip(info["blob"], 0.2, hold=8)})
    try:
        world.put_settings(dict(world.cfg, source=hostile.url + "stable.json"))
        r, took = _timed_check(world)
    finally:
        hostile.stop()
    assert took < BOUND_S, "one check held %.1f s (stall timeout %.1f s): %s %s" % (took, STALL_S, r["event"], r["last"])


def test_artifact_drip_holds_one_check(world):
    """The manifest is served at once, the image artifact dripped the same way. With the real
    timeouts a 1.5 MB image dripped at 1 byte / 9 s holds the device for 157 days (and the agent's
    three retries resume where the drip stopped)."""
    info = world.publish("2.0.0")
    art = info["artifacts"][0]
    with open(world.repo + "/" + art["url"], "rb") as f:
        data = f.read()
    hostile = rt.HostileServer(world, {"/stable.json": rt.static(info["blob"]),
                                       "/" + art["url"]: rt.drip(data, 0.2, hold=8)})
    try:
        world.put_settings(dict(world.cfg, source=hostile.url + "stable.json"))
        r, took = _timed_check(world)
    finally:
        hostile.stop()
    assert took < BOUND_S, "one check held %.1f s (stall timeout %.1f s): %s %s" % (took, STALL_S, r["event"], r["last"])


def test_report_answer_drip_holds_the_agent(world):
    """README: status reports "never block an update or a rollback", "never blocks long". The
    report URL (unauthenticated everywhere, e.g. the untrusted gateway) answers 512 bytes, dripped."""
    hostile = rt.HostileServer(world, {"/report": rt.drip(b"x" * 512, 0.2, hold=8, status=b"200 OK")})
    try:
        world.put_settings(dict(world.cfg, report_url=hostile.url + "report"))
        r, took = _timed_check(world)  # no manifest (404): the check fails and reports it
    finally:
        hostile.stop()
    assert r["event"] == "failed"
    assert took < BOUND_S, "one report held the agent %.1f s (stall timeout %.1f s)" % (took, STALL_S)


def test_tls_handshake_drip_holds_one_check(world, monkeypatch):
    """The TLS handshake itself dripped (the server's certificate flight, ~1-2 KB, one byte per
    200 ms, under a 300 ms per-operation timeout), by an on-path relay that needs no certificate.
    SECURITY.md: "a connect/handshake timeout"; "tls_drip". With the real 15 s connect timeout a
    drip of one byte per 14 s holds a check for hours per connection (and a check makes three:
    keys.json, the manifest, the artifact)."""
    from ota import agent

    monkeypatch.setattr(agent.Agent._fetcher, "__defaults__", (300,))  # connect/handshake timeout 300 ms
    world.publish("2.0.0")
    proxy = rt.DripProxy(("127.0.0.1", world.srv.port), 0.2, hold=8)
    try:
        world.put_settings(dict(world.cfg, source=world.url.replace(":%d/" % world.srv.port, ":%d/" % proxy.port)))
        r, took = _timed_check(world)
    finally:
        proxy.stop()
    assert took < BOUND_S, "one check held %.1f s (handshake timeout 0.3 s): %s %s" % (took, r["event"], r["last"])

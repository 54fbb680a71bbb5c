"""`ota-tool serve --mirror`: a caching gateway between a cloud `ota-tool serve` and a local fleet of
simulated boards (edge-to-gateway-to-cloud). Devices update through it, go on updating while the
uplink is down, their reports reach the cloud once it is back, and a gateway that tampers with
anything is refused by every device (signatures are end to end)."""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import ota
from ota import agent as ota_agent
from ota import audit
from ota.http import HttpFetcher
from ota_tool import devfs, images, keys, mirror, release, reports, server, sim
from tests.simhelpers import SMALL

V1 = images.app_image("1.0.0", size=SMALL, seed=1)
V15 = images.app_image("1.5.0", size=SMALL, seed=15)
V2 = images.app_image("2.0.0", size=SMALL, seed=2)
V3 = images.app_image("3.0.0", size=SMALL, seed=3)


@pytest.fixture
def world(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = tmp_path / "cloud"
    repo.mkdir()
    up = server.start_server(str(repo), tls_dir=str(tmp_path / "cloud-tls"), reports=str(tmp_path / "cloud.sqlite"))
    gw = mirror.start_gateway(str(tmp_path / "cache"), up.url, ca=up.ca_der, tls_dir=str(tmp_path / "gw-tls"),
                              refresh=0, outbox=str(tmp_path / "outbox.sqlite"), forward_interval=0.05)
    w = {"key": key, "repo": str(repo), "up": up, "gw": gw, "tmp": tmp_path, "cache": str(tmp_path / "cache"),
         "template": None}
    yield w
    gw.stop()
    w["up"].stop()


def publish(w, image, version, **kw):
    return release.build(image, version, [w["key"]], w["repo"], **kw)


def board(w, name):
    """A board of the local fleet: it knows only the gateway (its URL and its CA)."""
    if w["template"] is None:
        t = sim.create(str(w["tmp"] / "template.bin"), V1)
        w["template"] = t.path
    dev = sim.Device(str(w["tmp"] / (name + ".bin")))
    shutil.copyfile(w["template"], dev.path)
    gw = w["gw"]
    devfs.put(dev.path, "ota.json", json.dumps({
        "source": gw.url + "stable.json", "keys": {"release": keys.public_text(w["key"])},
        "report_url": gw.url + "report", "device_id": name}).encode())
    devfs.put(dev.path, "ota_ca.der", gw.ca_der)
    return dev


def check(dev):
    return dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value


def cloud_events(w, device):
    store = reports.ReportStore(w["tmp"] / "cloud.sqlite")
    try:
        return [(r["event"], r["target_version"], r["reason"]) for r in store.rows(device)]
    finally:
        store.close()


def wait_for(cond, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def restart_upstream(w):
    port = w["up"].port
    w["up"] = server.start_server(w["repo"], port=port, tls_dir=str(w["tmp"] / "cloud-tls"),
                                  reports=str(w["tmp"] / "cloud.sqlite"))


MP_MAIN = """
from ota import agent
print("check", agent.Agent().check_now(reboot=False))
"""


def test_fleet_updates_through_the_gateway(world):
    info = publish(world, V2, "2.0.0", compress=True)
    dev = board(world, "edge-1")
    assert check(dev) == "installed"
    assert dev.slot_image("ota_1", len(V2)) == V2
    # the gateway keeps every artifact the manifest names, content-addressed, and the manifest
    for a in info["artifacts"]:
        path = os.path.join(world["cache"], a["url"])
        with open(path, "rb") as f:
            assert hashlib.sha256(f.read()).hexdigest() == a["sha256"]
    with open(os.path.join(world["cache"], "stable.json"), "rb") as f, open(info["manifest"], "rb") as g:
        assert f.read() == g.read()
    # a MicroPython board through the same gateway
    mp = board(world, "edge-mp")
    out = mp.run_micropython(MP_MAIN, heap="208k")
    assert "check installed" in out.stdout, out.stdout + out.stderr
    # the devices' reports reached the cloud through the gateway
    assert wait_for(lambda: world["gw"].mirror.outbox.count() == 0)
    assert ("installed", "2.0.0", None) in cloud_events(world, "edge-1")
    assert ("installed", "2.0.0", None) in cloud_events(world, "edge-mp")
    # Range through the gateway (a resume)
    url = world["gw"].url + release.artifact_name(V2, "bin")
    body = HttpFetcher(ca=world["gw"].ca_der).open(url, 5000, len(V2))
    buf = bytearray(len(V2))
    got = 0
    while True:
        n = body.readinto(memoryview(buf)[got:])
        if not n:
            break
        got += n
    body.close()
    assert body.offset == 5000 and bytes(buf[:got]) == V2[5000:]


def test_gateway_works_on_while_upstream_is_down(world):
    publish(world, V2, "2.0.0")
    assert check(board(world, "warm")) == "installed"  # the gateway now holds 2.0.0
    world["up"].stop()
    offline = board(world, "offline")
    assert check(offline) == "installed"  # everything from the cache
    assert offline.slot_image("ota_1", len(V2)) == V2
    gw = world["gw"].mirror
    assert gw.stats["served_stale"] >= 1
    assert wait_for(lambda: gw.outbox.count() >= 2)  # reports kept while the cloud is away
    queued = gw.outbox.count()
    time.sleep(0.3)
    assert gw.outbox.count() == queued  # not dropped by failed attempts
    # a new release appears upstream while the gateway is cut off: its devices see it once it is back
    publish(world, V3, "3.0.0")
    assert check(board(world, "still-offline")) == "installed"  # 2.0.0 from the cache
    restart_upstream(world)
    gw.forwarder.kick()
    assert wait_for(lambda: gw.outbox.count() == 0)
    assert ("installed", "2.0.0", None) in cloud_events(world, "offline")
    assert check(board(world, "after")) == "installed"
    after = sim.Device(str(world["tmp"] / "after.bin"))
    assert after.slot_image("ota_1", len(V3)) == V3


def test_new_manifest_exposed_only_with_its_artifacts(world):
    publish(world, V2, "2.0.0")
    assert check(board(world, "a")) == "installed"
    info = publish(world, V3, "3.0.0")
    os.remove(os.path.join(world["repo"], info["artifacts"][0]["url"]))  # upstream is missing the artifact
    dev = board(world, "b")
    assert check(dev) == "installed" and dev.slot_image("ota_1", len(V2)) == V2  # still 2.0.0, whole
    assert not os.path.exists(os.path.join(world["cache"], info["artifacts"][0]["url"]))


def test_gateway_refuses_bad_upstream_bytes_and_paths(world):
    publish(world, V2, "2.0.0")
    name = release.artifact_name(V2, "bin")
    with open(os.path.join(world["repo"], name), "r+b") as f:
        f.seek(100)
        f.write(b"\xff")  # upstream (or the path to it) corrupts the artifact
    f = HttpFetcher(ca=world["gw"].ca_der)
    with pytest.raises(ota.OTAError) as e:
        f.open(world["gw"].url + name, 0, len(V2)).close()
    assert e.value.reason == "http_502"
    assert not os.path.exists(os.path.join(world["cache"], name))  # never cached
    fetches = world["gw"].mirror.stats["upstream_fetches"]
    for path in ("/../cloud/stable.json", "/.mirror/x", "/%2e%2e/x", "/a/.hidden", "/status", "/notes.txt"):
        status, _, _ = _raw_get(world["gw"], path)
        assert status in (403, 404), path
    assert world["gw"].mirror.stats["upstream_fetches"] == fetches  # nothing asked upstream for them
    # upstream's fleet status page is JSON but not a signed document: not relayed to the local network
    assert _raw_get(world["gw"], "/status.json")[0] == 404
    assert not os.path.exists(os.path.join(world["cache"], "status.json"))
    # a name that is a folder in the cache cannot make the gateway fail
    os.makedirs(os.path.join(world["cache"], "dir.json"))
    with open(os.path.join(world["repo"], "dir.json"), "wb") as f:  # a signed document (a key list)
        f.write(keys.key_list([("r", keys.public_bytes(world["key"]))], 1, [world["key"]]))
    assert _raw_get(world["gw"], "/dir.json")[0] == 500


def _raw_get(srv, path):
    import http.client
    import ssl

    ctx = ssl.create_default_context(cadata=srv.ca_der)
    conn = http.client.HTTPSConnection("127.0.0.1", srv.port, context=ctx, timeout=10)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


# --- a malicious gateway


def _flip(path, at):
    with open(path, "r+b") as f:
        f.seek(at)
        b = f.read(1)
        f.seek(at)
        f.write(bytes([b[0] ^ 0x01]))


def tamper_manifest_version(w, cache):
    p = os.path.join(cache, "stable.json")
    with open(p, "rb") as f:
        blob = f.read()
    with open(p, "wb") as f:
        f.write(blob.replace(b'"version":"2.0.0"', b'"version":"9.0.0"'))


def tamper_resign(w, cache):
    own = keys.generate(str(w["tmp"] / "gateway-own.pem"))
    release.build(V3, "3.0.0", [own], cache)  # a perfectly formed release, signed by the gateway's key


def tamper_artifact_bits(w, cache):
    _flip(os.path.join(cache, release.artifact_name(V2, "bin")), 4000)


def tamper_swap_image(w, cache):
    # another valid app image under the signed artifact's name (same length)
    with open(os.path.join(cache, release.artifact_name(V2, "bin")), "wb") as f:
        f.write(V3)


def tamper_truncate(w, cache):
    p = os.path.join(cache, release.artifact_name(V2, "bin"))
    with open(p, "rb") as f:
        data = f.read()
    with open(p, "wb") as f:
        f.write(data[:-4096])


def tamper_artifact_url(w, cache):
    # point the manifest at another artifact: the signature no longer verifies
    p = os.path.join(cache, "stable.json")
    with open(p, "rb") as f:
        blob = f.read()
    other = release.artifact_name(V3, "bin").encode()
    with open(os.path.join(cache, other.decode()), "wb") as f:
        f.write(V3)
    with open(p, "wb") as f:
        f.write(blob.replace(release.artifact_name(V2, "bin").encode(), other))


TAMPERING = [tamper_manifest_version, tamper_resign, tamper_artifact_bits, tamper_swap_image, tamper_truncate,
             tamper_artifact_url]


def test_malicious_gateway_is_refused_by_every_device(world):
    publish(world, V2, "2.0.0")
    cache = world["cache"]
    assert check(board(world, "honest")) == "installed"  # the gateway has everything cached
    world["gw"].mirror.refresh = 3600  # from now on it serves its (tampered) cache without asking upstream
    pristine = str(world["tmp"] / "pristine")
    shutil.copytree(cache, pristine)
    outcomes = {}
    for tamper in TAMPERING:
        shutil.rmtree(cache)
        shutil.copytree(pristine, cache)
        tamper(world, cache)
        dev = board(world, tamper.__name__)
        outcomes[tamper.__name__] = check(dev)
        assert dev.run(lambda: ota.status()["release"]).value is None  # nothing was installed
        assert "installed" not in [r["event"] for r in dev.run(lambda: audit.read("ota.log")).value]
        boot = sim.Device(dev.path).boot_only()[0]
        assert boot == "ota_0"  # still boots the image it had
    assert all(v in ("refused", "failed") for v in outcomes.values()), outcomes
    assert outcomes["tamper_manifest_version"] == "refused" and outcomes["tamper_resign"] == "refused"
    # under MicroPython too
    shutil.rmtree(cache)
    shutil.copytree(pristine, cache)
    tamper_manifest_version(world, cache)
    out = board(world, "mp").run_micropython(MP_MAIN, heap="208k")
    assert "check refused" in out.stdout, out.stdout + out.stderr
    # the refusals were reported, through the (here still forwarding) gateway, to the cloud
    assert wait_for(lambda: world["gw"].mirror.outbox.count() == 0)
    reasons = {name: [r for e, _, r in cloud_events(world, name) if e in ("refused", "failed")]
               for name in outcomes}
    expected = {"tamper_manifest_version": {"bad_signature"}, "tamper_resign": {"unknown_key"},
                "tamper_artifact_bits": {"bad_image", "artifact_hash_mismatch", "hash_mismatch"},
                "tamper_swap_image": {"bad_image", "artifact_hash_mismatch", "hash_mismatch"},
                "tamper_truncate": {"truncated"}, "tamper_artifact_url": {"bad_signature"}}
    for name, want in expected.items():
        assert reasons[name] and set(reasons[name]) <= want, (name, reasons[name])


def test_replayed_old_manifest_is_refused(world):
    """A gateway that keeps serving an older, validly signed manifest cannot downgrade a device."""
    publish(world, V15, "1.5.0")
    old = open(os.path.join(world["repo"], "stable.json"), "rb").read()
    dev = board(world, "replay")
    publish(world, V2, "2.0.0")
    dev.run(lambda: ota_agent.Agent().check_now())  # installs 2.0.0, resets
    dev.run(lambda: ota_agent.Agent().boot())  # confirms it
    assert dev.run(lambda: ota.status()["version"]).value == "2.0.0"
    world["gw"].mirror.refresh = 3600
    with open(os.path.join(world["cache"], "stable.json"), "wb") as f:
        f.write(old)  # the artifact of 1.5.0 is still in the cache
    assert check(dev) == "refused"
    assert dev.run(lambda: ota.status()["version"]).value == "2.0.0"


# --- reports


class FakeCloud:
    """An upstream whose /report answers scripted statuses and records what it accepted."""

    def __init__(self, tmp_path, statuses):
        self.statuses = list(statuses)
        self.accepted = []
        root = tmp_path / "fake-cloud"
        root.mkdir(exist_ok=True)
        self.srv = server.start_server(str(root), tls_dir=str(tmp_path / "fake-tls"), reports=False)
        self.srv.add_route("POST", "/report", self.report)

    def report(self, req):
        status = self.statuses.pop(0) if self.statuses else 204
        if status == 204:
            self.accepted.append(json.loads(req.body)["device_id"])
        return status, "application/json", b""


def post_report(gw, doc, ctype="application/json"):
    f = HttpFetcher(ca=gw.ca_der)
    if ctype != "application/json":
        import http.client
        import ssl

        conn = http.client.HTTPSConnection("127.0.0.1", gw.port, context=ssl.create_default_context(cadata=gw.ca_der))
        conn.request("POST", "/report", body=doc, headers={"Content-Type": ctype})
        r = conn.getresponse()
        r.read()
        conn.close()
        return r.status
    f.post_json(gw.url + "report", json.dumps(doc).encode() if isinstance(doc, dict) else doc)
    return 204


def test_reports_are_forwarded_in_order_and_never_lost(tmp_path):
    # 503 twice (kept, retried), then a 400 (moved to the dead letters, not lost), then fine
    cloud = FakeCloud(tmp_path, [503, 503, 400])
    outbox = str(tmp_path / "outbox.sqlite")
    gw = mirror.start_gateway(str(tmp_path / "cache"), cloud.srv.url, ca=cloud.srv.ca_der,
                              tls_dir=str(tmp_path / "gw-tls"), outbox=outbox, forward_interval=None)
    try:
        with pytest.raises(ota.OTAError) as e:
            post_report(gw, b"not json")
        assert e.value.reason == "http_400"  # refused at the gateway, never queued
        assert post_report(gw, "{}", ctype="text/plain") == 415
        for i in range(4):
            post_report(gw, {"device_id": "d%d" % i, "event": "checking"})
        m = gw.mirror
        assert m.outbox.count() == 4
        m.max_queued = 4  # a flood while upstream is away: refused, not written to a full disk
        with pytest.raises(ota.OTAError) as e:
            post_report(gw, {"device_id": "flood", "event": "checking"})
        assert e.value.reason == "http_503" and m.outbox.count() == 4
        m.max_queued = mirror.MAX_QUEUED
        assert m.forward_reports() == 0 and m.forward_reports() == 0  # 503, 503: all kept
        assert m.outbox.count() == 4
        assert m.forward_reports() == 3  # d0 refused for good (dead letter), d1..d3 delivered
        assert cloud.accepted == ["d1", "d2", "d3"] and m.outbox.count() == 0 and m.outbox.count(dead=True) == 1
        # upstream unreachable: reports survive a gateway restart and go once it is back
        cloud.srv.stop()
        post_report(gw, {"device_id": "late", "event": "confirmed"})
        assert m.forward_reports() == 0 and m.outbox.count() == 1
    finally:
        gw.stop()
    port = cloud.srv.port
    cloud.srv = server.start_server(str(tmp_path / "fake-cloud"), port=port, tls_dir=str(tmp_path / "fake-tls"),
                                    reports=False)
    cloud.srv.add_route("POST", "/report", cloud.report)
    gw = mirror.start_gateway(str(tmp_path / "cache"), cloud.srv.url, ca=cloud.srv.ca_der,
                              tls_dir=str(tmp_path / "gw-tls"), outbox=outbox, forward_interval=0.05)
    try:
        assert wait_for(lambda: gw.mirror.outbox.count() == 0)
        assert cloud.accepted[-1] == "late"
        status, _, body = _raw_get(gw, "/mirror-status.json")
        assert status == 200 and json.loads(body)["dead_reports"] == 1
    finally:
        gw.stop()
        cloud.srv.stop()


def test_cli_serve_mirror(world):
    publish(world, V2, "2.0.0")
    ca = world["tmp"] / "cloud-ca.der"
    ca.write_bytes(world["up"].ca_der)
    cache = world["tmp"] / "cli-cache"
    proc = subprocess.Popen(
        [sys.executable, "-m", "ota_tool.cli", "serve", str(cache), "--mirror", world["up"].url, "--upstream-ca", str(ca),
         "--port", "0", "--bind", "127.0.0.1", "--quiet", "--tls-dir", str(world["tmp"] / "cli-tls"),
         "--outbox", str(world["tmp"] / "cli-outbox.sqlite")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.startswith("gateway for %s" % world["up"].url), line + proc.stderr.read()
        url = line.split(" at ")[1].split(" ")[0]
        ca_der = open(world["tmp"] / "cli-tls" / "ca.der", "rb").read()
        body = HttpFetcher(ca=ca_der).open(url + "stable.json", 0, 16384)
        buf = bytearray(16384)
        n = 0
        while True:
            k = body.readinto(memoryview(buf)[n:])
            if not k:
                break
            n += k
        assert bytes(buf[:n]) == open(os.path.join(world["repo"], "stable.json"), "rb").read()
        assert os.path.exists(cache / release.artifact_name(V2, "bin"))  # prefetched with the manifest
    finally:
        proc.terminate()
        proc.wait(10)

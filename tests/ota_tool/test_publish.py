"""`ota-tool publish` against a real S3-compatible server (moto in server mode, started here), then
simulated devices that update from the bucket over TLS (a TLS-terminating TCP proxy in front of
moto, CA checked) under CPython and the MicroPython unix port."""
import hashlib
import json
import os
import shutil

import boto3
import moto.server as moto_server
import pytest

from ota.http import HttpFetcher
from ota_tool import cli, devfs, images, keys, publish, release, server, sim
from ota_tool.errors import ToolError
from tests.simhelpers import SMALL
from tests.tlsproxy import TlsProxy

BUCKET = "ota-fleet"
PREFIX = "fw/esp32"
V1 = images.app_image("1.0.0", size=SMALL, seed=1)
V2 = images.app_image("2.0.0", size=SMALL, seed=2)
V3 = images.app_image("3.0.0", size=SMALL, seed=3)


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free port, a bucket readable anonymously under PREFIX (as a public
    bucket policy or a CDN's origin access would allow), and a TLS proxy in front of it."""
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    srv = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    host, port = srv.get_host_and_port()
    endpoint = "http://%s:%d" % (host, port)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject",
                       "Resource": "arn:aws:s3:::%s/%s/*" % (BUCKET, PREFIX)}]}))
    import tempfile

    tls_dir = tempfile.mkdtemp(prefix="ota-s3-tls-")
    tls = server.ensure_tls(tls_dir)
    proxy = TlsProxy((host, port), tls)
    yield {"endpoint": endpoint, "client": client, "proxy": proxy, "ca_der": tls.ca_der,
           "base": proxy.url + "%s/%s/" % (BUCKET, PREFIX)}
    proxy.close()
    srv.stop()
    shutil.rmtree(tls_dir, ignore_errors=True)
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def clean_bucket(s3):
    c = s3["client"]
    for o in c.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        c.delete_object(Bucket=BUCKET, Key=o["Key"])
    return s3


@pytest.fixture
def rel(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = tmp_path / "repo"
    info = release.build(V2, "2.0.0", [key], str(repo), compress=True, bases=[V1], min_saving=-10,
                         rdelta=False)  # (its extra artifact: tests/ota/test_delta_reloc.py)
    return {"key": key, "repo": str(repo), "info": info, "tmp": tmp_path}


def put_order(client):
    """Record the keys of PutObject/CreateMultipartUpload calls in order."""
    order = []

    def note(params, **kw):
        order.append(params["Key"])

    client.meta.events.register("before-parameter-build.s3.PutObject", note)
    client.meta.events.register("before-parameter-build.s3.CreateMultipartUpload", note)
    return order


def test_publish_headers_order_and_idempotence(clean_bucket, rel):
    s3 = clean_bucket
    client = boto3.client("s3", endpoint_url=s3["endpoint"], region_name="us-east-1")
    order = put_order(client)
    (rel["tmp"] / "repo" / "keys.json").write_bytes(
        keys.key_list([("r", keys.public_bytes(rel["key"]))], 1, [rel["key"]]))
    out = publish.publish(rel["repo"], "s3://%s/%s" % (BUCKET, PREFIX), client=client, progress=False)
    names = sorted(os.listdir(rel["repo"]))
    assert out["uploaded"] == len(names) == 5  # .bin, .zlib, .patch, keys.json, stable.json
    arts = [n for n in names if n.startswith("sha256-")]
    assert len(arts) == 3
    # artifacts, then the key list, then the manifest: never a manifest before what it names
    assert [k.rsplit("/", 1)[1] for k in order] == arts + ["keys.json", "stable.json"]
    for n in names:
        h = client.head_object(Bucket=BUCKET, Key="%s/%s" % (PREFIX, n))
        with open(os.path.join(rel["repo"], n), "rb") as f:
            data = f.read()
        assert h["Metadata"]["sha256"] == hashlib.sha256(data).hexdigest()
        assert "ContentEncoding" not in h
        if n.startswith("sha256-"):
            assert h["CacheControl"] == "public, max-age=31536000, immutable"
            assert h["ContentType"] == "application/octet-stream"
        else:
            assert h["CacheControl"] == "public, max-age=60"
            assert h["ContentType"] == "application/json"
    # a re-run uploads nothing
    order.clear()
    again = publish.publish(rel["repo"], "s3://%s/%s" % (BUCKET, PREFIX), client=client, progress=False)
    assert again["uploaded"] == 0 and again["skipped"] == 5 and order == []
    # a new release: only its new artifacts, then its manifest (old artifacts stay for devices mid-download)
    release.build(V3, "3.0.0", [rel["key"]], rel["repo"])
    third = publish.publish(rel["repo"], "s3://%s/%s" % (BUCKET, PREFIX), client=client, progress=False,
                            manifest_max_age=30)
    new_bin = release.artifact_name(V3, "bin")
    assert [k.rsplit("/", 1)[1] for k in order] == [new_bin, "keys.json", "stable.json"]  # headers changed: 30 s
    assert third["uploaded"] == 3
    assert client.head_object(Bucket=BUCKET, Key=PREFIX + "/stable.json")["CacheControl"] == "public, max-age=30"
    listed = {o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert all("%s/%s" % (PREFIX, a) in listed for a in arts)


def test_publish_refuses_unsafe_states(clean_bucket, rel, tmp_path):
    s3 = clean_bucket
    client = s3["client"]
    dest = "s3://%s/%s" % (BUCKET, PREFIX)
    # a manifest naming an artifact that is nowhere: nothing goes up
    broken = tmp_path / "broken"
    shutil.copytree(rel["repo"], broken)
    os.remove(broken / release.artifact_name(V2, "bin"))
    with pytest.raises(ToolError, match="neither in the release folder nor"):
        publish.publish(str(broken), dest, client=client, progress=False)
    assert client.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    # a damaged artifact (content no longer matches its name) is never uploaded
    damaged = tmp_path / "damaged"
    shutil.copytree(rel["repo"], damaged)
    p = damaged / release.artifact_name(V2, "bin")
    p.write_bytes(p.read_bytes()[:-1] + b"\x00")
    with pytest.raises(ToolError, match="content-addressed name"):
        publish.publish(str(damaged), dest, client=client, progress=False)
    # the real folder, published; then the bucket holds other bytes under an immutable name
    publish.publish(rel["repo"], dest, client=client, progress=False)
    key = "%s/%s" % (PREFIX, release.artifact_name(V2, "bin"))
    client.put_object(Bucket=BUCKET, Key=key, Body=b"something else")
    with pytest.raises(ToolError, match="OTHER bytes"):
        publish.publish(rel["repo"], dest, client=client, progress=False)
    out = publish.publish(rel["repo"], dest, client=client, progress=False, force=True)
    assert out["uploaded"] == 1
    # a manifest signed by a key the operator does not expect is refused with --pubkey
    other = keys.generate(str(tmp_path / "other.pem"))
    with pytest.raises(ToolError, match="does not verify"):
        publish.publish(rel["repo"], dest, client=client, progress=False, public_keys=[keys.public_bytes(other)])
    with pytest.raises(ToolError, match="bucket"):
        publish.parse_s3_url("s3://A_B/x")


def test_cli_publish_dry_run_and_json(clean_bucket, rel, capsys):
    s3 = clean_bucket
    dest = "s3://%s/%s/" % (BUCKET, PREFIX)
    assert cli.main(["publish", rel["repo"], dest, "--endpoint-url", s3["endpoint"], "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["ok"] and plan["dry_run"] and plan["uploaded"] == 0
    assert [f["action"] for f in plan["files"]] == ["upload"] * 4
    assert s3["client"].list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert cli.main(["publish", rel["repo"], dest, "--endpoint-url", s3["endpoint"], "--no-progress"]) == 0
    text = capsys.readouterr()
    assert "uploaded 4 file(s)" in text.out and "stable.json" in text.err
    assert cli.main(["publish", rel["repo"], dest, "--endpoint-url", s3["endpoint"], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["skipped"] == 4


def test_range_requests_pass_through(clean_bucket, rel):
    s3 = clean_bucket
    publish.publish(rel["repo"], "s3://%s/%s" % (BUCKET, PREFIX), client=s3["client"], progress=False)
    url = s3["base"] + release.artifact_name(V2, "bin")
    f = HttpFetcher(ca=s3["ca_der"])
    whole = f.open(url, 0, len(V2))
    assert whole.offset == 0 and whole.total == len(V2) and whole.etag
    whole.close()
    body = f.open(url, 10000, len(V2), whole.etag)  # a resume: Range + If-Range through the proxy
    buf = bytearray(4096)
    got = bytearray()
    while True:
        n = body.readinto(buf)
        if not n:
            break
        got += buf[:n]
    body.close()
    assert body.offset == 10000 and body.total == len(V2) and bytes(got) == V2[10000:]


MP_MAIN = """
from ota import agent
a = agent.Agent()
e = a.check_now(reboot=False)
print("check", e)
from ota import audit
print(audit.read("ota.log")[-2:])
"""


def test_devices_update_from_the_bucket(clean_bucket, rel):
    s3 = clean_bucket
    shutil.rmtree(rel["repo"])
    # raw only: the agent with a zlib artifact needs more than the 160k the agent tests give it
    release.build(V2, "2.0.0", [rel["key"]], rel["repo"])
    assert cli.main(["publish", rel["repo"], "s3://%s/%s" % (BUCKET, PREFIX), "--endpoint-url", s3["endpoint"],
                     "--no-progress", "--pubkey", keys.public_text(rel["key"])]) == 0
    template = sim.create(str(rel["tmp"] / "template.bin"), V1)
    settings = {"source": s3["base"] + "stable.json", "keys": {"r": keys.public_text(rel["key"])},
                "device_id": "s3-dev"}
    devfs.put(template.path, "ota.json", json.dumps(settings).encode())
    devfs.put(template.path, "ota_ca.der", s3["ca_der"])
    from ota import agent as ota_agent

    dev = sim.Device(str(rel["tmp"] / "cpython.bin"))
    shutil.copyfile(template.path, dev.path)
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "installed"
    mp = sim.Device(str(rel["tmp"] / "micropython.bin"))
    shutil.copyfile(template.path, mp.path)
    out = mp.run_micropython(MP_MAIN, heap="208k")  # as test_mirror: a margin over test_agent's AGENT_HEAP
    assert "check installed" in out.stdout, out.stdout + out.stderr
    for d in (dev, mp):
        assert d.slot_image("ota_1", len(V2)) == V2
    assert s3["proxy"].connections >= 4  # both devices went through TLS to the bucket


def test_a_compressed_app_bundle_publishes_too(clean_bucket, rel):
    """Every artifact, firmware or app, .file or .zlib, is named by its own bytes: one rule, checked here."""
    from ota_tool import app_release

    src = rel["tmp"] / "app"
    src.mkdir()
    (src / "main.py").write_text("print('hello')\n" * 200)
    info = app_release.build_app(str(src), "1.0.0", [rel["key"]], rel["repo"], compress=True)
    zname = "sha256-%s.zlib" % info["files"][0]["zsha256"][:16]
    dest = "s3://%s/%s/" % (BUCKET, PREFIX)
    s = publish.publish(rel["repo"], dest, endpoint_url=clean_bucket["endpoint"], dry_run=True, progress=False)
    assert zname in [f["file"] for f in s["files"] if f["kind"] == publish.IMMUTABLE]
    (rel["tmp"] / "repo" / zname).write_bytes(b"x\x9c" + bytes(20))  # a damaged artifact under its name
    with pytest.raises(ToolError, match="content does not match the content-addressed name: " + zname):
        publish.publish(rel["repo"], dest, endpoint_url=clean_bucket["endpoint"], dry_run=True, progress=False)


def test_a_missing_bucket_is_named(s3, rel, capsys):
    rc = cli.main(["publish", rel["repo"], "s3://no-such-bucket/p", "--endpoint-url", s3["endpoint"]])
    err = capsys.readouterr().err
    assert rc == 1 and "there is no bucket no-such-bucket" in err and "hint: create it first" in err, err

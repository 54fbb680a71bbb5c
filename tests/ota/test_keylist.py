"""Issue 14 item 3: a key list (and any key set: the settings, a key added locally) is validated
whole before it replaces the trust in force. Judged by the device code under CPython and
MicroPython; end to end on a simulated board; and `ota-tool keylist` signs no list a device would
refuse."""
import base64
import json
import os

import pytest

from ota import config, manifest, trust
from ota.errors import OTAError
from ota_tool import keys
from ota_tool.errors import ToolError
from tests.ota import manifest_cases as mc

A, B, C = mc.KEY, mc.KEY2, mc.OTHER
ID = {k: keys.key_id(k) for k in (A, B, C)}


def b64(k):
    return keys.public_text(k)


def raw_b64(data):
    return base64.b64encode(data).decode()


def extra_keys(n):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return [Ed25519PrivateKey.from_private_bytes(bytes([40 + i]) * 32) for i in range(n)]


def list_doc(entries, threshold=None, revoked=None, version=2):
    d = {"type": "keys", "version": version, "keys": [{"key": k, "name": n} for n, k in entries]}
    if threshold is not None:
        d["threshold"] = threshold
    if revoked is not None:
        d["revoked"] = revoked
    return d


# (name, document, reason or "A <keys> <threshold> <revoked>"): the device trusts A (threshold 1,
# key list version 1); every list is signed by A.
CASES = [
    ("good rotation", list_doc([("a", b64(A)), ("b", b64(B))], 2), "A 2 2 0"),
    ("threshold unreachable: revoked", list_doc([("a", b64(A)), ("b", b64(B))], 2, [ID[B]]), "bad_key"),
    ("threshold unreachable: all revoked", list_doc([("a", b64(A))], 1, [ID[A]]), "bad_key"),
    ("threshold above the keys", list_doc([("a", b64(A))], 2), "bad_manifest"),
    ("one key under two names", list_doc([("a", b64(A)), ("b", b64(A))], 1), "bad_key"),
    ("one key under two names, hex and base64", list_doc([("a", b64(A)), ("b", keys.public_bytes(A).hex())], 1),
     "bad_key"),
    ("key that does not decode: not a point", list_doc([("a", b64(A)), ("b", raw_b64(bytes(range(1, 33))))]),
     "bad_key"),
    ("key that does not decode: small order", list_doc([("a", b64(A)), ("b", raw_b64(bytes(32)))]), "bad_key"),
    ("key that does not decode: identity", list_doc([("a", b64(A)), ("b", raw_b64(b"\x01" + bytes(31)))]), "bad_key"),
    ("key that does not decode: non-canonical y",
     list_doc([("a", b64(A)), ("b", raw_b64(b"\xee" + b"\xff" * 30 + b"\x7f"))]), "bad_key"),
    ("key that does not decode: 31 bytes", list_doc([("a", b64(A)), ("b", raw_b64(bytes(31)))]), "bad_key"),
    ("key that does not decode: text", list_doc([("a", b64(A)), ("b", "not a key")]), "bad_key"),
    ("upper-case revocation revokes", list_doc([("a", b64(A)), ("b", b64(B))], 1, [ID[B].upper()]), "A 2 1 1"),
    ("revocation malformed: 15 hex", list_doc([("a", b64(A))], 1, [ID[B][:15]]), "bad_manifest"),
    ("revocation malformed: 0x prefix", list_doc([("a", b64(A))], 1, ["0x" + ID[B][:14]]), "bad_manifest"),
    ("revocation malformed: not hex", list_doc([("a", b64(A))], 1, ["g" * 16]), "bad_manifest"),
    ("revocation malformed: not a string", list_doc([("a", b64(A))], 1, [12345]), "bad_manifest"),
    ("more keys than MAX_KEYS", list_doc([("k%d" % i, b64(k)) for i, k in enumerate(extra_keys(trust.MAX_KEYS + 1))]),
     "bad_manifest"),
    ("MAX_KEYS keys", list_doc([("k%d" % i, b64(k)) for i, k in enumerate(extra_keys(trust.MAX_KEYS))]),
     "A %d 1 0" % trust.MAX_KEYS),
    ("two names for one key, one revoked", list_doc([("a", b64(A)), ("b", b64(B)), ("c", b64(B))], 1, [ID[B]]),
     "bad_key"),
    ("replay of the version in force", list_doc([("a", b64(A)), ("b", b64(B))], 1, version=1), "replayed"),
]

JUDGE = """
def judge(blob):
    from ota import manifest, trust
    from ota.errors import OTAError

    now = trust.Trust.from_list([PUB_A], 1, (), 1)
    try:
        new = now.updated(manifest.load_keys(blob, now))
    except OTAError as e:
        return e.reason
    return "A %d %d %d" % (len(new.keys), new.threshold, len(new.revoked))
"""


def _judge(blob):
    ns = {"PUB_A": b64(A)}
    exec(JUDGE, ns)
    return ns["judge"](blob)


@pytest.mark.parametrize("name,doc,expected", CASES, ids=[c[0] for c in CASES])
def test_keylist_cases_cpython(name, doc, expected):
    assert _judge(keys.sign(doc, [A])) == expected


def test_keylist_threshold_unreachable_is_refused():
    assert _judge(keys.sign(CASES[1][1], [A])) == "bad_key"
    with pytest.raises(OTAError) as e:
        trust.Trust.from_list([b64(A), b64(B)], 2, [ID[B]])
    assert e.value.reason == "bad_key" and "cannot be met" in e.value.message


def test_keylist_same_key_under_two_names_is_refused():
    with pytest.raises(OTAError) as e:
        trust.Trust.from_list([b64(A), keys.public_bytes(A).hex()], 1)
    assert "twice" in e.value.message


def test_keylist_key_that_does_not_decode_is_refused():
    for bad in (bytes(range(1, 33)), bytes(32), b"\x01" + bytes(31), bytes(31)):
        with pytest.raises(OTAError):
            trust.Trust.from_list([b64(A), bad])


def test_keylist_uppercase_revocation_revokes():
    t = trust.Trust.from_list([b64(A), b64(B)], 1, [ID[B].upper()])
    with pytest.raises(OTAError) as e:
        manifest.load(mc.signed(mc.DOC, [B]), t)
    assert e.value.reason == "revoked_key"
    assert manifest.load(mc.signed(mc.DOC, [A]), t).version == "2.0.0"


@pytest.mark.micropython
def test_keylist_cases_micropython(mp, tmp_path):
    path = tmp_path / "lists.json"
    path.write_text(json.dumps([[n, base64.b64encode(keys.sign(d, [A])).decode()] for n, d, _ in CASES]))
    out = mp("PUB_A = %r\n" % b64(A) + JUDGE + """
import binascii, gc, json
with open(%r) as f:
    cases = json.loads(f.read())
for name, blob in cases:
    print(name + "\\t" + judge(binascii.a2b_base64(blob)))
    gc.collect()
""" % str(path), heap="128k")
    got = dict(line.split("\t") for line in out.strip().splitlines())
    assert got == {n: e for n, _, e in CASES}


@pytest.mark.micropython
def test_keylist_uppercase_revocation_revokes_under_micropython(mp, tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps([base64.b64encode(mc.signed(mc.DOC, [k])).decode() for k in (A, B)]))
    out = mp("""
import binascii, json
from ota import manifest, trust
from ota.errors import OTAError
t = trust.Trust.from_list([%r, %r], 1, [%r])
with open(%r) as f:
    blobs = [binascii.a2b_base64(b) for b in json.loads(f.read())]
for blob in blobs:
    try:
        print(manifest.load(blob, t).version)
    except OTAError as e:
        print(e.reason)
""" % (b64(A), b64(B), ID[B].upper(), str(path)), heap="96k")
    assert out.split() == ["2.0.0", "revoked_key"]


# --- keys added locally and the trust built from the settings -----------------------------------

def test_local_keys_and_settings_are_validated(tmp_path):
    path = str(tmp_path / "ota.json")
    config.key("add", "a", b64(A), path=path)
    with pytest.raises(OTAError):
        config.key("add", "again", keys.public_bytes(A).hex(), path=path)  # one key under two names
    with pytest.raises(OTAError):
        config.key("add", "zero", raw_b64(bytes(32)), path=path)  # small order: anyone could sign
    config.key("add", "b", b64(B), path=path)
    config.set("key_threshold", 2, path=path)
    with pytest.raises(OTAError):
        config.set("revoked", [ID[B]], path=path)  # the threshold could no longer be met
    with pytest.raises(OTAError):
        config.key("delete", "b", path=path)  # the same
    with pytest.raises(OTAError):
        config.set("revoked", ["not-a-key-id!!!!"], path=path)
    config.set("key_threshold", 1, path=path)
    config.set("revoked", [ID[B].upper()], path=path)
    cfg = config.load(path)
    t = trust.from_settings(cfg)
    assert t.revoked == {ID[B]} and t.threshold == 1
    with pytest.raises(OTAError) as e:
        manifest.load(mc.signed(mc.DOC, [B]), t)
    assert e.value.reason == "revoked_key"
    for n in range(trust.MAX_KEYS - 2):
        config.key("add", "x%d" % n, b64(extra_keys(n + 1)[-1]), path=path)
    with pytest.raises(OTAError):
        config.key("add", "one-too-many", b64(C), path=path)
    # settings written by hand (ota-tool deploy --config, an editor): the same rules at check time
    with open(path, "w") as f:
        json.dump({"keys": {"a": b64(A), "b": b64(A)}}, f)
    with pytest.raises(OTAError):
        trust.from_settings(config.load(path))


# --- end to end: the agent on a simulated board ---------------------------------------------------

def test_keylist_refused_keeps_the_trust_and_a_repair_list_applies(tmp_path):
    from ota_tool import devfs
    from tests.campaign import world as W

    w = W.World(str(tmp_path))
    try:
        repo = w.repo("r")
        other = keys.generate(str(tmp_path / "other.pem"), force=True)
        repo.publish(W.V1, "1.0.0")  # what the board runs: "up_to_date" proves the manifest verified
        dev = W.provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der)
        kl = os.path.join(repo.path, "keys.json")

        def check():
            W.EVENTS.clear()
            a = W.CampaignAgent()
            event = a.check_now(reboot=False)
            return event, a.reason, list(W.EVENTS)

        def settings():
            return json.loads(devfs.get(dev.path, "ota.json"))

        pub, pub2 = b64(w.key), b64(other)
        bad = [list_doc([("release", pub), ("other", pub2)], 2, [keys.key_id(other)]),  # (a) unreachable
               list_doc([("release", pub), ("again", pub)], 1),  # (b) one key twice
               list_doc([("release", pub), ("junk", raw_b64(bytes(range(1, 33))))], 1),  # (c) does not decode
               list_doc([("release", pub)], 1, ["0x" + keys.key_id(other)[:14]])]  # malformed revocation
        for doc in bad:
            with open(kl, "wb") as f:
                f.write(keys.sign(doc, [w.key]))
            r = dev.run(check)
            assert r.value[:2] == ("up_to_date", "up_to_date") and "refused" in r.value[2], (doc, r)
            assert settings().get("keys_version", 0) == 0 and list(settings()["keys"]) == ["release"]
        # a repair list signed by the trusted key still applies
        with open(kl, "wb") as f:
            f.write(keys.sign(list_doc([("release", pub), ("other", pub2)], 1), [w.key]))
        assert dev.run(check).value[:2] == ("up_to_date", "up_to_date")
        assert settings()["keys_version"] == 2 and sorted(settings()["keys"]) == ["other", "release"]
        # (d) an upper-case revocation revokes: the old key no longer signs a release that installs
        with open(kl, "wb") as f:
            f.write(keys.sign(list_doc([("release", pub), ("other", pub2)], 1, [keys.key_id(w.key).upper()],
                                       version=3), [w.key]))
        event, reason, _ = dev.run(check).value
        assert settings()["revoked"] == [keys.key_id(w.key)] and settings()["keys_version"] == 3
        assert (event, reason) == ("refused", "revoked_key")
        from ota_tool import release

        release.build(W.V1, "1.0.0", [other], repo.path)
        assert dev.run(check).value[:2] == ("up_to_date", "up_to_date")
    finally:
        w.close()


# --- ota-tool keylist -------------------------------------------------------------------------------

def _cli(*argv):
    from ota_tool import cli

    return cli.main(list(argv))


def test_ota_tool_keylist_refuses_lists_devices_refuse(tmp_path, capsys):
    pem = str(tmp_path / "a.pem")
    keys.generate(pem, force=True)
    b = keys.generate(str(tmp_path / "b.pem"), force=True)
    out = str(tmp_path / "keys.json")
    kid_b = keys.key_id(b)
    for args, why in (
        (["--key", pem + ".pub", "--key", str(tmp_path / "b.pem.pub"), "--threshold", "2", "--revoke", kid_b],
         "cannot be met"),
        (["--key", pem + ".pub=x", "--key", pem + ".pub=y"], "twice"),
        (["--key", pem + ".pub", "--revoke", "0x" + kid_b[:14]], "not a key id"),
        (["--key", pem + ".pub", "--threshold", "0"], "threshold"),
    ):
        assert _cli("keylist", out, "--sign-with", pem, "--version", "2", *args) == 1, args
        err = capsys.readouterr().err
        assert why in err and "hint:" in err and not os.path.exists(out), (args, err)
    # upper-case revocations are written in the device's one form
    assert _cli("keylist", out, "--sign-with", pem, "--key", pem + ".pub", "--key", str(tmp_path / "b.pem.pub"),
                "--revoke", kid_b.upper(), "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["revoked"] == [kid_b] and info["version"] == 1
    doc = json.loads(manifest.split(open(out, "rb").read())[1])
    assert doc["revoked"] == [kid_b]


def test_ota_tool_keylist_never_lowers_the_version(tmp_path, capsys):
    pem = str(tmp_path / "a.pem")
    keys.generate(pem, force=True)
    out = str(tmp_path / "keys.json")
    assert _cli("keylist", out, "--sign-with", pem, "--key", pem + ".pub", "--version", "5") == 0
    for v in ("5", "3"):
        assert _cli("keylist", out, "--sign-with", pem, "--key", pem + ".pub", "--version", v) == 1
        assert "not newer" in capsys.readouterr().err
    assert keys.key_list_version(out) == 5
    assert _cli("keylist", out, "--sign-with", pem, "--key", pem + ".pub", "--json") == 0  # next one by default
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["version"] == 6
    assert _cli("keylist", out, "--sign-with", pem, "--key", pem + ".pub", "--version", "2",
                "--allow-lower-version") == 0
    assert keys.key_list_version(out) == 2
    with pytest.raises(ToolError):
        keys.key_list([("a", keys.public_bytes(A)), ("b", keys.public_bytes(A))], 2, [A])

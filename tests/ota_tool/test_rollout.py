"""`ota-tool rollout`: staged rollout in the signed manifest, gated by the device reports; the result
is checked with the device's own code (ota.manifest.load, ota.policy.check)."""
import json
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from ota import manifest as device_manifest
from ota import policy
from ota.errors import OTAError
from ota.trust import Trust
from ota_tool import cli, images, keys, release, reports, rollout
from ota_tool.errors import ToolError
from ota_tool.reports import ReportStore

KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY2 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
VERSION = "1.1.0"
IMAGE = images.app_image(VERSION, size=16 * 1024, seed=3)


def write_key(tmp_path, key, name):
    from cryptography.hazmat.primitives import serialization

    p = tmp_path / name
    p.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    return str(p)


@pytest.fixture
def repo(tmp_path):
    """A published release signed by KEY: (manifest path, reports path)."""
    out = tmp_path / "repo"
    info = release.build(IMAGE, VERSION, [KEY], str(out), created=1700000000)
    return info["manifest"], reports.default_path(str(out))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def load(path, signers=(KEY,)):
    with open(path, "rb") as f:
        blob = f.read()
    return device_manifest.load(blob, Trust.from_list([keys.public_bytes(k) for k in signers], len(signers)))


def add_outcomes(path, confirmed=0, failed=0, rolled_back=0, start=0):
    """Devices that attempted VERSION with these outcomes."""
    with ReportStore(path) as store:
        n = start
        for outcome, count in (("confirmed", confirmed), ("failed", failed), ("rolled_back", rolled_back)):
            for _ in range(count):
                dev = "dev-%04d" % n
                n += 1
                store.add_report({"device_id": dev, "event": "downloading", "running_version": "1.0.0",
                                  "target_version": VERSION})
                run = VERSION if outcome == "confirmed" else "1.0.0"
                store.add_report({"device_id": dev, "event": outcome, "running_version": run,
                                  "target_version": VERSION, "reason": None if outcome == "confirmed" else "boom"})
    return n


def facts(device_id):
    return {"chip": "esp32", "slot_size": 0x180000, "running_version": "1.0.0", "channel": "stable",
            "device_id": device_id}


def selected(m, ids):
    out = set()
    for d in ids:
        try:
            policy.check(m, facts(d))
        except OTAError as e:
            assert e.reason in ("not_in_rollout", "halted"), e
            continue
        out.add(d)
    return out


IDS = ["esp32-%012x" % (0x24A16E000000 + i * 7919) for i in range(1000)]


def test_first_stage_then_widen_resigns_only_the_stage(repo):
    path, rpath = repo
    before = load(path)
    assert before.rollout_percent == 100 and not before.halted and "rollout" not in before.doc
    res = rollout.change(path, [KEY], percent=1, reports_path=rpath)
    assert res["written"] and res["changed"] == ["percent", "salt"]
    m = load(path)  # verifies with the device's code
    assert m.rollout_percent == 1 and len(m.rollout_salt) == 16 and not m.halted
    assert m.version == VERSION and m.key_ids == [keys.key_id(KEY)]
    # nothing else changed but `created`, bumped so that devices refuse the old stage (a replay)
    rest = {k: v for k, v in m.doc.items() if k not in ("rollout", "created")}
    assert rest == {k: v for k, v in before.doc.items() if k != "created"}
    assert m.doc["created"] > before.doc["created"] == 1700000000 and res["created"] == m.doc["created"]
    salt = m.rollout_salt
    add_outcomes(rpath, confirmed=10)
    res = rollout.change(path, [KEY], percent=5, reports_path=rpath)
    assert res["widening"] and res["gate"]["ok"] and res["gate"]["attempted"] == 10
    m = load(path)
    assert (m.rollout_percent, m.rollout_salt) == (5, salt)  # the salt is kept: the 1% stay in
    # same request again: nothing to write
    mtime = os.stat(path).st_mtime_ns
    res = rollout.change(path, [KEY], percent=5, reports_path=rpath)
    assert not res["written"] and res["changed"] == [] and os.stat(path).st_mtime_ns == mtime
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")]


@pytest.mark.parametrize("pct", [5, 25])
def test_policy_selects_about_the_percentage(repo, pct):
    path, rpath = repo
    rollout.change(path, [KEY], percent=pct, salt="fixed-salt", reports_path=rpath)
    m = load(path)
    chosen = selected(m, IDS)
    assert chosen == {d for d in IDS if policy.rollout_bucket(d, "fixed-salt") < pct * 100}
    assert abs(len(chosen) - 10 * pct) <= 4 * (1000 * pct / 100 * (1 - pct / 100)) ** 0.5 + 1  # 4 sigma


def test_stages_nest_and_known_share(repo):
    path, rpath = repo
    with ReportStore(rpath) as store:
        for d in IDS[:400]:
            store.add_report({"device_id": d, "event": "checking", "running_version": "1.0.0", "channel": "stable"})
        for d in IDS[400:450]:
            store.add_report({"device_id": d, "event": "checking", "channel": "beta"})  # other channel
    res1 = rollout.change(path, [KEY], percent=1, reports_path=rpath)
    at1 = selected(load(path), IDS)
    res5 = rollout.change(path, [KEY], percent=5, reports_path=rpath)
    at5 = selected(load(path), IDS)
    res25 = rollout.change(path, [KEY], percent=25, reports_path=rpath)
    at25 = selected(load(path), IDS)
    res100 = rollout.change(path, [KEY], percent=100, reports_path=rpath)
    assert at1 <= at5 <= at25  # a device once in stays in as the stage widens
    assert selected(load(path), IDS) == set(IDS)
    for res, at in ((res1, at1), (res5, at5), (res25, at25)):
        assert res["known_devices"] == 400
        assert res["selected_devices"] == len(at & set(IDS[:400]))
    assert (res100["known_devices"], res100["selected_devices"]) == (400, 400)


def test_widen_refused_above_threshold_then_forced(repo, tmp_path, capsys):
    path, rpath = repo
    rollout.change(path, [KEY], percent=5, reports_path=rpath)
    add_outcomes(rpath, confirmed=18, failed=1, rolled_back=1)  # 2 of 20: 10%
    blob = read(path)
    with pytest.raises(ToolError) as e:
        rollout.change(path, [KEY], percent=25, reports_path=rpath)
    msg = e.value.message
    assert "refusing to widen 1.1.0 from 5% to 25%" in msg
    assert "1 failed and 1 rolled back of 20 devices" in msg and "10.0%" in msg and "5.0%" in msg
    assert read(path) == blob  # untouched
    # the same through the command line
    keyfile = write_key(tmp_path, KEY, "k.pem")
    rc = cli.main(["rollout", path, "--key", keyfile, "--percent", "25"])
    err = capsys.readouterr().err
    assert rc == 1 and "10.0%" in err and "--force" in err
    # a higher threshold lets it through; so does --force
    res = rollout.change(path, [KEY], percent=10, reports_path=rpath, max_failure_rate=0.10)
    assert res["written"] and not res["gate"]["forced"]
    rc = cli.main(["rollout", path, "--key", keyfile, "--percent", "25", "--force", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["ok"] and out["gate"]["forced"] and out["after"]["percent"] == 25
    assert out["gate"]["failure_rate"] == pytest.approx(0.1)
    assert load(path).rollout_percent == 25


def test_narrow_and_halt_always_allowed_resume_is_gated(repo, tmp_path, capsys):
    path, rpath = repo
    rollout.change(path, [KEY], percent=25, reports_path=rpath)
    add_outcomes(rpath, confirmed=5, rolled_back=5)  # 50%
    res = rollout.change(path, [KEY], percent=5, reports_path=rpath)  # narrowing
    assert res["written"] and not res["widening"]
    keyfile = write_key(tmp_path, KEY, "k.pem")
    assert cli.main(["rollout", path, "--key", keyfile, "--halt"]) == 0
    out = capsys.readouterr().out
    assert "5% -> halted (5% when resumed)" in out
    m = load(path)
    assert m.halted and m.rollout_percent == 5
    with pytest.raises(OTAError) as e:  # the device never starts a halted release, whatever its bucket
        policy.check(m, facts(IDS[0]))
    assert e.value.reason == "halted"
    assert selected(m, IDS) == set()
    # resume is a widening (0 -> 5%): refused with these reports
    with pytest.raises(ToolError) as e:
        rollout.change(path, [KEY], halt=False, reports_path=rpath)
    assert "from 0% to 5%" in e.value.message and "50.0%" in e.value.message
    res = rollout.change(path, [KEY], halt=False, reports_path=rpath, force=True)
    m = load(path)
    assert res["changed"] == ["halted"] and not m.halted and "halted" not in m.doc and m.rollout_percent == 5
    # a new salt on a partial stage brings other devices in: also a widening (not while halted)
    with pytest.raises(ToolError) as e:
        rollout.change(path, [KEY], salt="other", reports_path=rpath)
    assert "from 5% to 5% with a new salt" in e.value.message
    assert rollout.change(path, [KEY], percent=2, halt=True, salt="other", reports_path=rpath)["written"]


def test_min_reports(repo):
    path, rpath = repo
    rollout.change(path, [KEY], percent=1, reports_path=rpath)
    with pytest.raises(ToolError) as e:  # no reports file at all
        rollout.change(path, [KEY], percent=5, reports_path=rpath, min_reports=3)
    assert "only 0 device(s)" in e.value.message
    add_outcomes(rpath, confirmed=3)
    assert rollout.change(path, [KEY], percent=5, reports_path=rpath, min_reports=3)["written"]


def test_other_key_refused(repo, tmp_path, capsys):
    path, rpath = repo
    blob = read(path)
    with pytest.raises(ToolError) as e:
        rollout.change(path, [OTHER], percent=5, reports_path=rpath)
    assert "refused" in e.value.message and "unknown_key" in e.value.message
    rc = cli.main(["rollout", path, "--key", write_key(tmp_path, OTHER, "other.pem"), "--halt", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 1 and out["ok"] is False and "refused" in out["error"]
    assert read(path) == blob
    # a tampered manifest is refused too (the device's own check)
    tampered = blob.replace(b'"version":"1.1.0"', b'"version":"9.1.0"')
    with open(path, "wb") as f:
        f.write(tampered)
    with pytest.raises(ToolError) as e:
        rollout.change(path, [KEY], halt=True, reports_path=rpath)
    assert "bad_signature" in e.value.message


def test_multi_signature(tmp_path):
    out = tmp_path / "repo"
    path = release.build(IMAGE, VERSION, [KEY, KEY2], str(out))["manifest"]
    with pytest.raises(ToolError) as e:  # would drop KEY2's signature
        rollout.change(path, [KEY], percent=5)
    assert keys.key_id(KEY2) in e.value.message
    with pytest.raises(ToolError):  # KEY2 + a key that did not sign
        rollout.change(path, [KEY2, OTHER], percent=5)
    k1, k2 = write_key(tmp_path, KEY, "a.pem"), write_key(tmp_path, KEY2, "b.pem")
    assert cli.main(["rollout", path, "--key", k1, "--key", k2, "--percent", "5", "--salt", "s1"]) == 0
    m = load(path, (KEY, KEY2))  # both signatures, threshold 2
    assert sorted(m.key_ids) == sorted([keys.key_id(KEY), keys.key_id(KEY2)])
    assert (m.rollout_percent, m.rollout_salt) == (5, "s1")


def test_cli_show_and_bad_arguments(repo, tmp_path, capsys):
    path, rpath = repo
    keyfile = write_key(tmp_path, KEY, "k.pem")
    add_outcomes(rpath, confirmed=4)
    assert cli.main(["rollout", path, "--key", keyfile]) == 0  # no change: shows the stage
    out = capsys.readouterr().out
    assert "100% (nothing changed)" in out and "4 attempted, 4 confirmed" in out
    assert cli.main(["rollout", path, "--key", keyfile, "--percent", "20", "--salt", "abc"]) == 0
    out = capsys.readouterr().out
    assert "100% -> 20%" in out and "salt: abc" in out and "expected share: 20%" in out
    assert "of the 4 devices known from the reports" in out
    for bad in (["--salt", "has space"], ["--salt", "x" * 33], ["--reports", str(tmp_path / "nope.sqlite"), "--halt"]):
        assert cli.main(["rollout", path, "--key", keyfile] + bad) == 1, bad
    assert cli.main(["rollout", path, "--key", keyfile, "--max-failure-rate", "5"]) == 2  # a bad command line
    with pytest.raises(SystemExit) as e:  # argparse's own refusal of a value that is not a percentage
        cli.main(["rollout", path, "--key", keyfile, "--percent", "101"])
    assert e.value.code == 2
    assert load(path).rollout_percent == 20

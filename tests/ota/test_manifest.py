"""Signed manifests: the hostile catalogue, judged by the device code under CPython and MicroPython."""
import pytest

from ota import manifest, policy
from ota.errors import OTAError
from ota.trust import Trust
from tests.ota import manifest_cases

CASES = manifest_cases.cases()

DEVICE_JUDGE = """
import json, binascii
from ota import manifest, policy
from ota.errors import OTAError
from ota.trust import Trust

def judge(c):
    t = c["trust"]
    try:
        tr = Trust.from_list(t["keys"], t["threshold"], t["revoked"])
        m = manifest.load(binascii.a2b_base64(c["blob"]), tr)
        policy.check(m, c["facts"])
        return "ACCEPTED"
    except OTAError as e:
        return e.reason
"""


def judge(c):
    t = c["trust"]
    try:
        m = manifest.load(c["blob"], Trust.from_list(t["keys"], t["threshold"], t["revoked"]))
        policy.check(m, c["facts"])
        return None
    except OTAError as e:
        assert e.message, "every refusal says why"
        return e.reason


def test_catalogue_is_big_enough():
    assert sum(1 for c in CASES if c["reason"]) >= 40
    assert len({c["name"] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_cpython(case):
    assert judge(case) == case["reason"]


@pytest.mark.micropython
def test_micropython_agrees(mp, tmp_path):
    path = tmp_path / "cases.jsonl"
    path.write_text(manifest_cases.as_jsonl(CASES))
    code = DEVICE_JUDGE + """
import gc, micropython
worst = 0
with open(%r) as f:
    while True:
        line = f.readline()
        if not line:
            break
        c = json.loads(line)
        name = c["name"]
        r = judge(c)
        c = line = None
        gc.collect()
        print(name + "\\t" + r)
""" % str(path)
    out = mp(code, heap="96k")
    got = dict(line.split("\t") for line in out.strip().splitlines())
    expected = {c["name"]: c["reason"] or "ACCEPTED" for c in CASES}
    assert got == expected


def test_version_order():
    pv = manifest.parse_version
    assert pv("1.2.3") < pv("1.2.4") < pv("1.10.0") < pv("2.0.0-rc.1") < pv("2.0.0")
    for bad in ("1.2", "1.2.3.4", "01.2.3", "1.-2.3", "a.b.c", "1.2.3 "):
        with pytest.raises(OTAError):
            pv(bad)


def test_rollout_buckets_are_stable_and_spread():
    buckets = [policy.rollout_bucket("dev-%d" % i, "salt") for i in range(2000)]
    assert buckets == [policy.rollout_bucket("dev-%d" % i, "salt") for i in range(2000)]
    share = sum(1 for b in buckets if b < 1000) / len(buckets)  # 10 %
    assert 0.08 < share < 0.12

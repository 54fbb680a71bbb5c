"""Regression tests for what the campaign found (each names the figure that showed it)."""
import os

import pytest

from tests.campaign import world as W
from tests.campaign.powercut import settle
from tests.campaign.world import V3_BAD, images, sim


# --- 1. Power-loss campaign, "failed self-test, rollback": the device never settled. A release
# whose self-test fails was installed, rolled back, and installed again at every check (flash wear,
# bandwidth, a reboot each time). Now a release whose image failed its self-test twice on this
# device is refused ("known_bad"); once is retried (it may have been the network at first boot).


def test_failed_release_is_not_installed_forever(tmp_path, monkeypatch):
    with W.board_offered_v2(tmp_path) as (w, repo, dev):
        assert settle(dev)[1] and W.running(dev)[:2] == ("2.0.0", "valid")
        repo.publish(V3_BAD, "3.0.0")
        installs = []
        cut, reached, outs = settle(dev, max_cycles=12)
        for o in outs:
            if o.kind == sim.RESET and o.booted == "ota_1":
                installs.append(o)  # 2.0.0 (ota_1) installed 3.0.0 and reset into it
        assert reached and not cut
        assert outs[-1].kind == sim.RETURNED and outs[-1].value[1:] == ("refused", "known_bad"), outs
        assert len(installs) == 2  # retried once, then refused
        assert W.running(dev)[:2] == ("2.0.0", "valid")
        # a fixed release (another image) is installed as usual
        fixed = images.app_image("3.0.1", size=W.SIZE, seed=5)
        monkeypatch.setitem(W.IMAGES, "3.0.1", fixed)
        repo.publish(fixed, "3.0.1")
        assert settle(dev)[1]
        assert W.running(dev)[:3] == ("3.0.1", "valid", "ota_0")


# ... and the network campaign then found the other side of it (run 157 of 200: a good release
# refused for good): the first boot of a new image rolls back when it cannot reach the update
# server, and two such boots during a network fault counted as two failures of the release. A
# network attacker could so make a device refuse a security fix for ever. Only the firmware's own
# verdict (its self-test, repeated crashes) counts now.

_net = {"down": 0}


def _flaky_connect():
    import simhw

    if simhw.firmware_flags().get("build") == "2f" and _net["down"]:
        _net["down"] -= 1
        return False  # the Wi-Fi is down right at the new image's first boot
    return W.connect()


def _main_flaky():
    a = W.CampaignAgent(connect=_flaky_connect)
    first = a.boot()
    return first, a.check_now(), a.reason


def test_network_failures_at_first_boot_do_not_block_a_good_release(tmp_path):
    w = W.World(str(tmp_path))
    v2 = images.app_image("2.0.0", size=W.SIZE, seed=2, flags={"build": "2f"})
    W.IMAGES["2.0.0"] = v2
    try:
        repo = w.repo("r")
        repo.publish(v2, "2.0.0")
        dev = W.provision(w, str(tmp_path / "dev.bin"), repo.url, repo.ca_der)
        _net["down"] = 3  # three first boots in a row meet a dead network
        cut, reached, outs = settle(dev, _main_flaky, max_cycles=12)
        assert reached and outs[-1].value[1] == "up_to_date", [(o.kind, o.value) for o in outs]
        assert sum(1 for o in outs if o.kind == sim.RESET and o.booted == "ota_0") == 4  # 4 installs
        assert W.running(dev)[:2] == ("2.0.0", "valid")
    finally:
        W.IMAGES["2.0.0"] = W.V2
        w.close()


def test_policy_refuses_a_known_bad_image():
    from ota import manifest, policy
    from ota.errors import OTAError
    from tests.ota import manifest_cases as mc

    m = manifest.load(mc.signed(), _trust())
    facts = dict(mc.FACTS)
    policy.check(m, dict(facts, known_bad="00" * 32))  # another image: fine
    with pytest.raises(OTAError) as e:
        policy.check(m, dict(facts, known_bad=mc.SHA))
    assert e.value.reason == "known_bad" and "fixed release" in e.value.message


def _trust():
    from ota.trust import Trust
    from tests.ota import manifest_cases as mc

    return Trust.from_list([mc.keys.public_text(mc.KEY)])


# --- 4. Hostile input, "key list (signed)", full campaign: TypeError in trust.py. A key list with
# "revoked": null (or "threshold": null) passed the schema (null is "absent" for optional members)
# and then crashed Trust.updated and Agent._rotate_keys: a TypeError out of check_now. Looking
# there: the agent stores the new keys by name, so two keys with the same name (explicit, or an
# explicit "key0" against a nameless first key) lost one of them while the threshold stayed, and
# the board could verify nothing any more, for good. load_keys now gives every key a unique name
# (or refuses the list) and drops null optional members.


def _key_list(doc):
    from tests.campaign.hostile import canonical, signed

    return signed(canonical(doc))


@pytest.mark.parametrize("extra,expected", [
    ({"revoked": None}, "A 2 1 1"),
    ({"threshold": None}, "A 2 1 1"),
    ({"keys": [{"key": "PUB", "name": "x"}, {"key": "ZERO", "name": "x"}]}, "E:bad_manifest"),
    ({"keys": [{"key": "PUB"}, {"key": "ZERO", "name": "key0"}]}, "E:bad_manifest"),
    ({"keys": [{"key": "PUB", "name": [1]}]}, "E:bad_manifest"),
    ({"keys": [{"key": "PUB"}, {"key": "ZERO", "name": "backup"}], "threshold": 2}, "A 2 2 2"),
])
def test_key_list_nulls_and_names(extra, expected):
    import base64

    from tests.campaign import harness
    from tests.campaign.hostile import PUB_B64

    from tests.ota import manifest_cases as mc

    # a second valid key (issue 14 item 3: a key that is not an Ed25519 point is refused now)
    subst = {"PUB": PUB_B64, "ZERO": base64.b64encode(mc.keys.public_bytes(mc.KEY2)).decode()}
    d = {"type": "keys", "version": 2, "keys": [{"key": "PUB"}]}
    d.update(extra)
    for k in d["keys"]:
        k["key"] = subst[k["key"]]
    assert harness.judge("keys", (_key_list(d),)) == expected


def test_key_list_with_colliding_names_leaves_the_board_working(tmp_path):
    import json

    from ota_tool import devfs, keys

    w = W.World(str(tmp_path))
    try:
        repo = w.repo("r")
        other = keys.generate(str(tmp_path / "other.pem"), force=True)
        doc = {"type": "keys", "version": 2, "threshold": 2,
               "keys": [{"key": keys.public_text(w.key), "name": "x"}, {"key": keys.public_text(other), "name": "x"}]}
        with open(os.path.join(repo.path, "keys.json"), "wb") as f:
            f.write(keys.sign(doc, [w.key]))
        repo.publish(W.V2, "2.0.0")
        dev = W.provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der)
        assert dev.run(lambda: W.CampaignAgent().check_now(reboot=False)).value == "installed"
        cfg = json.loads(devfs.get(dev.path, "ota.json"))
        assert list(cfg["keys"]) == ["release"] and cfg.get("keys_version", 0) == 0
    finally:
        w.close()


# --- 2. Hostile input, "zlib / gzip stream" under MicroPython: a MemoryError in a 64 KiB heap.
# The update flow handed the artifact's signed wbits (up to 15) to the decompressor, so a release
# made with a 32 KiB window made the device allocate one during the download, next to TLS, though
# the device's limit is inflate.WBITS (4 KiB). Now such artifacts are not chosen; a release with
# no full artifact the device can decompress is refused before anything is downloaded.


def _manifest(artifacts):
    import copy

    from ota import manifest
    from tests.ota import manifest_cases as mc

    d = copy.deepcopy(mc.DOC)
    d["artifacts"] = artifacts
    return manifest.Manifest(d, [], b"")


def _art(enc, size, wbits=None, base=None):
    from tests.ota import manifest_cases as mc

    a = {"url": "a." + enc, "size": size, "sha256": mc.SHA, "encoding": enc}
    if wbits:
        a["wbits"] = wbits
    if base:
        a["base_sha256"] = base
    return a


def test_artifact_with_a_window_over_the_device_limit_is_not_chosen():
    from ota import update
    from ota.errors import OTAError
    from ota.inflate import WBITS

    m = _manifest([_art("raw", 200000), _art("zlib", 90000, 15), _art("gzip", 95000, WBITS)])
    assert update.choose(m, None, bytearray(4096))[0].encoding == "gzip"
    m = _manifest([_art("raw", 200000), _art("zlib", 90000, 15)])
    assert update.choose(m, None, bytearray(4096))[0].encoding == "raw"
    m = _manifest([_art("zlib", 90000, 15)])
    with pytest.raises(OTAError) as e:
        update.choose(m, None, bytearray(4096))
    assert e.value.reason == "window_too_large"


def test_delta_with_a_window_over_the_device_limit_is_not_chosen(tmp_path):
    # on a board, so that the running image's hash matches the delta's base
    import hashlib

    from ota import slot, update

    dev = W.copy_device(sim.create(str(tmp_path / "b.bin"), W.V1).path, str(tmp_path / "d.bin"))
    base = hashlib.sha256(W.V1).hexdigest()
    m = _manifest([_art("raw", 200000), _art("delta", 5000, 15, base), _art("delta", 6000, 12, base)])

    def app():
        a, length = update.choose(m, slot.running(), bytearray(4096))
        return a.encoding, a.wbits, length

    assert dev.run(app).value == ("delta", 12, len(W.V1))


# --- 3. Hostile input, "partition table (host)": UnicodeDecodeError. A partition label that is not
# UTF-8 crashed the simulator's table reader, and with it the simulated bootloader and
# `ota-tool inspect` on such a flash dump. ESP-IDF compares labels as bytes: any bytes are a label.


def _table_with_label(label):
    import hashlib

    from ota_tool import partitions

    raw = bytearray(partitions.to_binary(partitions.parse_csv(sim.default_partitions_csv())))
    raw[12:28] = label.ljust(16, b"\x00")  # the first entry's label (nvs)
    end = raw.index(b"\xeb\xeb")
    raw[end + 16:end + 32] = hashlib.md5(bytes(raw[:end])).digest()
    return bytes(raw)


def test_partition_label_that_is_not_utf8():
    from espsim import parttable

    from ota_tool import partitions

    table = _table_with_label(b"nv\xa9s\xff")
    parts = parttable.parse(table, 4 * 1024 * 1024)
    assert parts[0].label == "nv\\xa9s\\xff" and parts[1].label == "otadata"
    assert partitions.from_binary(table)[0].name == "nv\\xa9s\\xff"


def test_board_and_inspect_with_a_non_utf8_label(tmp_path):
    from ota_tool import flashinfo

    dev = sim.create(str(tmp_path / "b.bin"), W.V1)
    with open(dev.path, "r+b") as f:
        f.seek(0x8000)
        f.write(_table_with_label(b"\xc3\x28bad"))
    assert dev.boot_only()[0] == "ota_0"
    info = flashinfo.inspect(dev.path)
    assert info["partitions"][0]["label"] == "\\xc3(bad"

"""Issue 14 item 9: the board check fails closed. The device knows its board from its settings
("board", set by provisioning: ota-tool deploy --board), else from the running image (its app
descriptor's project_name when it is not MicroPython's generic "micropython", or MicroPython's
build name sys.implementation._build on an ESP32); a board-specific release is refused with
"board_unknown" when it does not know it. (The catalogue in manifest_cases.py has the policy cases,
judged under CPython and MicroPython.)"""
import json
import sys

import pytest

from ota import update
from tests.campaign import world as W
from tests.campaign.test_security_items import _check  # update.check of a manifest on a board: reason
from tests.campaign.world import images, release, sim


def test_board_unknown_refuses_a_board_specific_release(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, board="LOLIN_D32", manifest_name="lolin.json")
    release.build(W.V2, "2.0.0", [w.key], folder, manifest_name="any.json")
    dev = sim.create(str(tmp_path / "d.bin"), W.V1)  # MicroPython's descriptor: project_name "micropython"
    assert _check(dev, folder, "lolin.json", w.key) == "board_unknown"
    assert _check(dev, folder, "any.json", w.key) == "accepted 2.0.0"


def test_board_unknown_says_how_to_set_it():
    from ota import manifest, policy
    from ota.errors import OTAError
    from ota.trust import Trust
    from tests.ota import manifest_cases as mc

    m = manifest.load(mc.signed(mc.with_(board="LOLIN_D32")), Trust.from_list([mc.keys.public_text(mc.KEY)]))
    with pytest.raises(OTAError) as e:
        policy.check(m, dict(mc.FACTS, board=None))
    assert e.value.reason == "board_unknown"
    assert "ota.config.set('board'" in e.value.message and "deploy --board" in e.value.message


def test_board_from_the_running_image_descriptor(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, board="LOLIN_D32", manifest_name="lolin.json")
    release.build(W.V2, "2.0.0", [w.key], folder, board="OTHER", manifest_name="other.json")
    dev = sim.create(str(tmp_path / "d.bin"), images.app_image("1.0.0", size=W.SIZE, seed=1, project="LOLIN_D32"))
    assert _check(dev, folder, "lolin.json", w.key) == "accepted 2.0.0"
    assert _check(dev, folder, "other.json", w.key) == "wrong_board"


def test_board_from_micropython_build_name_on_an_esp32(monkeypatch):
    assert update.running_board({"project": "micropython"}) is None  # on the host: unknown
    monkeypatch.setattr(sys, "platform", "esp32")
    monkeypatch.setattr(sys.implementation, "_build", "ESP32_GENERIC-OTA", raising=False)
    assert update.running_board({"project": "micropython"}) == "ESP32_GENERIC-OTA"
    assert update.running_board({"project": ""}) == "ESP32_GENERIC-OTA"
    assert update.running_board({"project": "MY_BOARD"}) == "MY_BOARD"
    monkeypatch.setattr(sys.implementation, "_build", "", raising=False)
    assert update.running_board(None) is None


def test_board_from_the_settings_wins_in_the_agent(tmp_path):
    with W.board_offered_v2(tmp_path) as (w, repo, dev):
        repo.publish(W.V2, "2.0.0", board="LOLIN_D32")

        def check(**overrides):
            def app():
                a = W.CampaignAgent()
                return a.check_now(reboot=False, **overrides), a.reason
            return app

        assert dev.run(check()).value == ("refused", "board_unknown")
        assert dev.run(check(board="OTHER")).value == ("refused", "wrong_board")
        assert dev.run(check(board="LOLIN_D32")).value == ("installed", None)


def test_deploy_sets_the_board(tmp_path):
    from ota_tool import deploy

    items, _ = deploy.plan("py", None, None, (), None, False, board_config={"interval": 60}, board="LOLIN_D32")
    cfg = json.loads([i for i in items if i.dest == "ota.json"][0].data)
    assert cfg == {"interval": 60, "board": "LOLIN_D32"}


@pytest.mark.parametrize("keys_doc,ok", [
    ({"a": "QOCDxVcDpRywTLp7eXXaquh8btzDuvB7ONPdHsHF3BU="}, True),
    ({"a": "QOCDxVcDpRywTLp7eXXaquh8btzDuvB7ONPdHsHF3BU=", "b": "QOCDxVcDpRywTLp7eXXaquh8btzDuvB7ONPdHsHF3BU="}, False),
])
def test_deploy_checks_the_trusted_keys_whole(tmp_path, keys_doc, ok):
    from ota_tool import deploy
    from ota_tool.errors import ToolError

    if ok:
        deploy.check_config({"keys": keys_doc})
    else:
        with pytest.raises(ToolError):
            deploy.check_config({"keys": keys_doc})

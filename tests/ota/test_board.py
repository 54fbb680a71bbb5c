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
from tests.campaign.world import images, release, sim


def _check(dev, folder, name, key):
    def app():
        from ota import update
        from ota.errors import OTAError
        from ota.fetch import FileFetcher
        from ota.trust import Trust

        try:
            m = update.check(FileFetcher(folder), name, Trust.from_list([W.keys.public_text(key)]),
                             {"channel": "stable"})
            return "accepted " + m.version
        except OTAError as e:
            return e.reason, e.message

    return dev.run(app).value


def test_board_unknown_refuses_a_board_specific_release(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, board="LOLIN_D32", manifest_name="lolin.json")
    release.build(W.V2, "2.0.0", [w.key], folder, manifest_name="any.json")
    dev = sim.create(str(tmp_path / "d.bin"), W.V1)  # MicroPython's descriptor: project_name "micropython"
    reason, message = _check(dev, folder, "lolin.json", w.key)
    assert reason == "board_unknown" and "ota.config.set('board'" in message and "deploy --board" in message
    assert _check(dev, folder, "any.json", w.key) == "accepted 2.0.0"


def test_board_from_the_running_image_descriptor(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, board="LOLIN_D32", manifest_name="lolin.json")
    release.build(W.V2, "2.0.0", [w.key], folder, board="OTHER", manifest_name="other.json")
    dev = sim.create(str(tmp_path / "d.bin"), images.app_image("1.0.0", size=W.SIZE, seed=1, project="LOLIN_D32"))
    assert _check(dev, folder, "lolin.json", w.key) == "accepted 2.0.0"
    assert _check(dev, folder, "other.json", w.key)[0] == "wrong_board"


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

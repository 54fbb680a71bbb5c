"""Open security items (docs/SECURITY.md, "Open items"): each test states the property the project
does NOT have yet and is a strict xfail, so the day it is fixed the test says so (remove the mark)."""
import os

import pytest

from tests.campaign import world as W
from tests.campaign.powercut import settle
from tests.campaign.world import images, release, sim


def _check(dev, folder, name, key):
    """update.check of the manifest `name` in `folder` on the board: the Manifest or the reason."""
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
            return e.reason

    return dev.run(app).value


@pytest.mark.xfail(strict=True, reason="open item 1: no manifest freshness; an older manifest of the same "
                                       "version replayed after a halt is accepted")
def test_replayed_manifest_cannot_undo_a_halt(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, created=1000, manifest_name="before-halt.json")
    release.build(W.V2, "2.0.0", [w.key], folder, created=2000, manifest_name="halted.json",
                  extra={"halted": True})
    dev = W.provision(w, str(tmp_path / "d.bin"), "https://unused.example/stable.json", b"")
    assert _check(dev, folder, "halted.json", w.key) == "halted"
    # the mirror replays the manifest from before the halt: the device has seen a newer one
    assert _check(dev, folder, "before-halt.json", w.key) != "accepted 2.0.0"


@pytest.mark.xfail(strict=True, reason="open item 2: a board that never installed a signed release has no "
                                       "version to compare: it accepts any older signed release")
def test_factory_board_refuses_an_older_release(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    old = images.app_image("0.9.0", size=W.SIZE, seed=9)
    release.build(old, "0.9.0", [w.key], folder)  # an old release, maybe with a known hole
    dev = sim.create(str(tmp_path / "factory.bin"), W.V1)  # 1.0.0 (app descriptor), flashed by cable
    assert _check(dev, folder, "stable.json", w.key) == "downgrade"


@pytest.mark.xfail(strict=True, raises=MemoryError,
                   reason="open item 3: a MemoryError during a check escapes Agent.check_now (and run())")
def test_memory_error_in_a_check_is_a_failed_check(tmp_path):
    w = W.World(str(tmp_path))
    try:
        repo = w.repo("r")
        repo.publish(W.V2, "2.0.0")
        dev = W.provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der)

        def app():
            from ota import update

            real = update.check

            def exhausted(*args, **kw):
                raise MemoryError("memory allocation failed, allocating 4096 bytes")

            update.check = exhausted
            try:
                return W.CampaignAgent().check_now(reboot=False)
            finally:
                update.check = real

        assert dev.run(app).value == "failed"
    finally:
        w.close()


@pytest.mark.xfail(strict=True, reason="open item 4: a release that resets before it confirms itself is rolled "
                                       "back by the bootloader and installed again at every check")
def test_release_that_never_confirms_is_not_installed_forever(tmp_path):
    w = W.World(str(tmp_path))
    try:
        repo = w.repo("r")
        repo.publish(W.V2, "2.0.0")
        dev = W.provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der)
        assert settle(dev)[1]
        crashing = images.app_image("3.0.0", size=W.SIZE, seed=8, flags={"version": "crashes"})
        W.IMAGES["3.0.0"] = crashing
        repo.publish(crashing, "3.0.0")

        def main():
            import machine

            import simhw

            if simhw.firmware_flags().get("version") == "crashes":
                machine.reset()  # a crash (or watchdog) before main.py confirms the image
            return W.main_py()

        _, _, outs = settle(dev, main, max_cycles=10)
        installs = sum(1 for o in outs if o.kind == sim.RESET and o.booted == "ota_1")
        assert installs <= 2 and outs[-1].kind == sim.RETURNED
    finally:
        W.IMAGES.pop("3.0.0", None)
        w.close()


def test_open_items_are_documented():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "docs", "SECURITY.md")) as f:
        doc = f.read()
    for n in range(1, 5):
        assert "**O%d**" % n in doc

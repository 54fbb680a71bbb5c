"""Security items of docs/SECURITY.md ("Open items", "Closed items"): each test states the property.
An item still open is a strict xfail, so the day it is fixed the test says so (remove the mark)."""
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


def test_replayed_manifest_cannot_undo_a_halt(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, created=1000, manifest_name="before-halt.json")
    release.build(W.V2, "2.0.0", [w.key], folder, created=2000, manifest_name="halted.json",
                  extra={"halted": True})
    dev = W.provision(w, str(tmp_path / "d.bin"), "https://unused.example/stable.json", b"")
    assert _check(dev, folder, "halted.json", w.key) == "halted"
    # the mirror replays the manifest from before the halt: the device has seen a newer one
    assert _check(dev, folder, "before-halt.json", w.key) == "replayed"
    # the publisher resumes the release (a newer stage): accepted
    release.build(W.V2, "2.0.0", [w.key], folder, created=3000, manifest_name="resumed.json")
    # a manifest of the same version for another channel (or board) is not ours: it must not make
    # ours look old
    release.build(W.V2, "2.0.0", [w.key], folder, created=9000, manifest_name="beta.json", channel="beta")
    assert _check(dev, folder, "beta.json", w.key) == "wrong_channel"
    assert _check(dev, folder, "resumed.json", w.key) == "accepted 2.0.0"
    assert _check(dev, folder, "halted.json", w.key) == "replayed"
    assert _check(dev, folder, "resumed.json", w.key) == "accepted 2.0.0"  # seen again: no change
    # the publisher then signs another version (older, here) for the channel: from now on every
    # manifest signed before it is a replay, whatever its version (issue 14, class 2)
    release.build(W.V1, "1.0.0", [w.key], folder, created=5000, manifest_name="old-version.json")
    assert _check(dev, folder, "old-version.json", w.key) == "up_to_date"
    assert _check(dev, folder, "resumed.json", w.key) == "replayed"


def test_replay_across_versions_is_refused(tmp_path):
    # A device that saw a halt of 2.0.0 and then 2.0.1 must not install the pre-halt 2.0.0 manifest
    # when a mirror replays it (issue 14, class 2).
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, created=1000, manifest_name="before-halt.json")
    release.build(W.V2, "2.0.0", [w.key], folder, created=2000, manifest_name="halted.json",
                  extra={"halted": True})
    release.build(W.images.app_image("2.0.1", size=W.SIZE, seed=4), "2.0.1", [w.key], folder, created=3000,
                  manifest_name="fixed.json")
    dev = W.provision(w, str(tmp_path / "d.bin"), "https://unused.example/stable.json", b"")
    assert _check(dev, folder, "halted.json", w.key) == "halted"
    assert _check(dev, folder, "fixed.json", w.key) == "accepted 2.0.1"
    assert _check(dev, folder, "before-halt.json", w.key) == "replayed"
    assert _check(dev, folder, "halted.json", w.key) == "replayed"


def test_rollout_stage_change_is_not_replayable(tmp_path):
    from ota_tool import rollout

    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, created=1000)
    dev = W.provision(w, str(tmp_path / "d.bin"), "https://unused.example/stable.json", b"")
    assert _check(dev, folder, "stable.json", w.key) == "accepted 2.0.0"
    with open(os.path.join(folder, "stable.json"), "rb") as f:
        wide = f.read()
    rollout.change(os.path.join(folder, "stable.json"), [w.key], halt=True)
    assert _check(dev, folder, "stable.json", w.key) == "halted"
    with open(os.path.join(folder, "replay.json"), "wb") as f:
        f.write(wide)
    assert _check(dev, folder, "replay.json", w.key) == "replayed"


def test_factory_board_refuses_an_older_release(tmp_path):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    old = images.app_image("0.9.0", size=W.SIZE, seed=9)
    release.build(old, "0.9.0", [w.key], folder)  # an old release, maybe with a known hole
    dev = sim.create(str(tmp_path / "factory.bin"), W.V1)  # 1.0.0 (app descriptor), flashed by cable
    assert _check(dev, folder, "stable.json", w.key) == "downgrade"
    release.build(W.V1, "1.0.0", [w.key], folder, manifest_name="same.json")
    assert _check(dev, folder, "same.json", w.key) == "up_to_date"


def test_micropython_tag_in_the_descriptor_is_no_release_version(tmp_path):
    # MicroPython's own builds write a git tag (or nothing): it must not block our releases
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder)
    for i, tag in enumerate(["v1.24.1", "", "1.24.1-dirty+x"]):
        dev = sim.create(str(tmp_path / ("f%d.bin" % i)), images.app_image(tag, size=W.SIZE, seed=9))
        assert _check(dev, folder, "stable.json", w.key) == "accepted 2.0.0", tag


@pytest.mark.parametrize("idf_ver,needs,expected", [
    ("v5.2.2", "5.2.0", "accepted 2.0.0"),
    ("v5.2.2-dirty", "5.2.2", "accepted 2.0.0"),
    ("v5.0.4", "5.2.0", "requires_idf"),
    ("v5.1", "v5.2", "requires_idf"),
    ("", "5.2.0", "accepted 2.0.0"),   # unknown: not judged (as "micropython" on CPython)
    ("master", "5.2.0", "accepted 2.0.0"),
])
def test_requires_idf_is_checked_against_the_running_image(tmp_path, idf_ver, needs, expected):
    w = W.World(str(tmp_path))
    folder = str(tmp_path / "repo")
    release.build(W.V2, "2.0.0", [w.key], folder, requires={"idf": needs})
    dev = sim.create(str(tmp_path / "d.bin"), images.app_image("1.0.0", size=W.SIZE, seed=9, idf_ver=idf_ver))
    assert _check(dev, folder, "stable.json", w.key) == expected


def test_memory_error_in_a_check_is_a_failed_check(tmp_path):
    with W.board_offered_v2(tmp_path) as (w, repo, dev):
        def app():
            from ota import update

            real = update.check

            def broken(kind):
                def check(*args, **kw):
                    raise kind("memory allocation failed, allocating 4096 bytes" if kind is MemoryError else "a bug")
                return check

            a = W.CampaignAgent()
            out = []
            try:
                for kind in (MemoryError, TypeError):
                    update.check = broken(kind)
                    out.append((a.check_now(reboot=False), a.reason, a.failures))
                update.check = real
                out.append((a.check_now(reboot=False), a.reason, a.failures))  # the next check works
            finally:
                update.check = real
            return out

        assert dev.run(app).value == [("failed", "out_of_memory", 1), ("failed", "internal_error", 2),
                                      ("installed", None, 0)]


def test_release_that_never_confirms_is_not_installed_forever(tmp_path, monkeypatch):
    with W.board_offered_v2(tmp_path) as (w, repo, dev):
        assert settle(dev)[1]
        crashing = images.app_image("3.0.0", size=W.SIZE, seed=8, flags={"version": "crashes"})
        monkeypatch.setitem(W.IMAGES, "3.0.0", crashing)  # the images the campaign's checks know
        repo.publish(crashing, "3.0.0")

        def main():
            import machine

            import simhw

            if simhw.firmware_flags().get("version") == "crashes":
                machine.reset()  # a crash (or watchdog) before main.py confirms the image
            return W.main_py()

        _, _, outs = settle(dev, main, max_cycles=10)
        installs = sum(1 for o in outs if o.kind == sim.RESET and o.booted == "ota_1")
        assert installs == 2  # once may be a power cut in its first boot; twice is the release
        assert outs[-1].kind == sim.RETURNED and outs[-1].value[1:] == ("refused", "known_bad"), outs
        assert W.running(dev)[:2] == ("2.0.0", "valid")


def test_security_items_are_documented():
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "..", "..", "docs", "SECURITY.md")) as f:
        doc = f.read()
    for n in range(1, 5):
        assert "**O%d**" % n in doc

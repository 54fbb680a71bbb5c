"""ota-tool and the device's replay rule together (SECURITY.md O1: "`ota-tool rollout` raises
`created` whenever it signs a stage again"; the device refuses a manifest signed before the newest
it saw). A staged rollout signs each stage at max(now, previous created + 1), so created runs ahead
of the clock; `ota-tool release` signs the next release at the clock. Property: a release that
`ota-tool release` publishes is installable by a device that followed the rollout, or the tool
says it is not."""
import pytest

from ota_tool import release, rollout

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def test_release_right_after_a_rollout_is_not_a_replay(world):
    img2 = world.image("2.0.0")
    release.build(img2, "2.0.0", [world.key], world.repo)  # created = the clock
    for pct in (10, 25, 50, 100):  # the usual staged rollout, scripted (CI), one stage after another
        r = rollout.change(world.repo + "/stable.json", [world.key], percent=pct)
    ahead = r["created"]
    r = world.check()
    assert r["event"] == "installed", r["last"]
    r = world.check()  # first boot of 2.0.0: confirmed
    assert r["boot"] == "confirmed"
    info = release.build(world.image("2.0.1"), "2.0.1", [world.key], world.repo)  # the fix, right away
    r = world.check()
    import json

    created = json.loads(release.device_manifest.split(open(info["manifest"], "rb").read())[1])["created"]
    assert r["event"] == "installed" or info["warnings"], (
        "ota-tool signed 2.0.1 at created %s, below the last stage's %s, without a warning; the device says %s %s"
        % (created, ahead, r["event"], rt.reason(r)))

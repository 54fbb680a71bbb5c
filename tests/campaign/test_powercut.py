"""Power loss at the flash operations of every update scenario (quick mode: every otadata write
and a fixed spread of the others, both cut modes). The full sweep, every operation, is
`python bench/campaign.py --only power`. See tests/campaign/powercut.py."""
import pytest

from tests.campaign import powercut


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return {r.name: r for r in powercut.run(str(tmp_path_factory.mktemp("power")), quick=True)}


@pytest.mark.parametrize("name", list(powercut.SCENARIOS))
def test_power_cut_sweep(results, name, capsys):
    r = results[name]
    if r.skipped:
        pytest.skip(r.skipped)  # TODO(lead): the app-bundle scenario (powercut.app_bundle)
    with capsys.disabled():
        print("\n%s: %d flash ops %s, %d cuts, failures %d" % (name, r.ops, r.regions, r.tried, len(r.failures)))
    assert r.missed == 0, "a cut point was never reached: the scenario is not deterministic"
    assert r.tried >= 12 and r.regions.get("otadata", 0) >= 2
    assert not r.bricks, r.bricks[:3]
    assert not r.unreachable, r.unreachable[:3]
    assert not r.wrong, r.wrong[:3]
    assert not r.not_converged, r.not_converged[:3]


def test_every_flash_region_is_cut(results):
    regions = set()
    for r in results.values():
        regions |= set(r.regions)
    assert {"slot", "otadata", "nvs", "fs"} <= regions

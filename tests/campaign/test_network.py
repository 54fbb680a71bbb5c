"""Randomized network fault schedules between the agent and a faulty mirror (quick mode: 16 runs,
fixed seed); `python bench/campaign.py --only network` runs 200. See tests/campaign/network.py."""
from tests.campaign import network


def test_fault_schedules(tmp_path, capsys):
    res = network.run(str(tmp_path), runs=16, seed=1)
    with capsys.disabled():
        print("\n%s" % res.row())
    assert len(res.runs) == 16
    assert not res.wrong, [r.describe() + str(r.wrong) for r in res.wrong]
    assert len(res.succeeded) == 16, [r.describe() for r in res.runs if not r.succeeded]
    assert sum(res.applied.values()) >= 30 and len(res.applied) >= 12  # the schedules met many kinds of fault

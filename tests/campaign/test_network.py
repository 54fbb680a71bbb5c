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
    # keep-alive: requests went over kept connections, and the server closed some in the ways a
    # client must survive (after a response; between requests, the next one unanswered)
    between = res.applied.get("tcp_close_between", 0) + res.applied.get("tcp_reset_between", 0)
    assert res.reused >= 20 and res.applied.get("close_after", 0) >= 1 and between >= 1, res.applied

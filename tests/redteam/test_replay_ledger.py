"""Replays against the `seen` record (ota.ledger s0/s1, SECURITY.md Issue 14 class 2 and O1).

Claim: "The device keeps the signed `created` of the newest manifest meant for it (chip, board,
channel match) in two NVS copies (s0/s1, the older one rewritten); the policy refuses any manifest
signed before it" and (ledger header) "a blob that matters is never rewritten in place: written
once after its key was erased, or kept in two keys"; "A manifest for another channel or board does
not move it"."""
import time

import pytest

from espsim import flash as sim_flash
from ota_tool import rollout, sim

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def _halted_then_newer(world):
    """2.0.0 published (T1) and halted (T2) before the device got it; the device sees the halt.
    Returns the pre-halt manifest (what a mirror replays) and the signed newer manifest T3 (a
    staged 2.0.1 at 0 %, so the device records it without installing it)."""
    t1 = rt.NOW - 600
    pre_halt = world.publish("2.0.0", created=t1)
    rollout.change(pre_halt["manifest"], [world.key], halt=True)
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "halted")
    t3 = int(time.time()) + 100
    staged = world.publish("2.0.1", created=t3, extra={"rollout": {"percent": 0, "salt": "s"}})
    return pre_halt, staged


def test_seen_record_has_two_copies(world):
    """After two newer manifests, both s0 and s1 hold a record (the ledger's two-copy rule)."""
    _halted_then_newer(world)
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "not_in_rollout")
    st = world.status()
    assert st["seen"]["v"] == "2.0.1"
    # the doc: "kept in two NVS copies (s0/s1, the older one rewritten)"
    assert st["s0"] is not None and st["s1"] is not None, (st["s0"], st["s1"])


def test_power_cut_while_recording_a_newer_manifest_keeps_the_halt(world):
    """Hostile sequence: 2.0.0 is halted (the device saw the halt), a newer staged manifest comes;
    the power fails while the device records it; then a mirror replays the pre-halt 2.0.0.
    Property: the replay is refused (`replayed`) after a cut at ANY flash operation."""
    pre_halt, staged = _halted_then_newer(world)
    snap = world.snapshot("before-t3.bin")
    _, nvs_ops, total = world.nvs_ops(rt.check_app())
    assert nvs_ops, "the T3 check writes NVS"
    installed = []
    for mode in (sim_flash.CUT_BEFORE, sim_flash.CUT_TORN):
        for n in nvs_ops:
            world.restore(snap)
            world.serve_manifest(staged["blob"])
            world.dev.arm_power_cut(n, mode)
            out = world.dev.run(rt.check_app())
            assert out.kind == sim.POWER_CUT, (n, out)
            world.serve_manifest(pre_halt["blob"])  # the mirror replays the pre-halt manifest
            r = world.check()
            if r["event"] == "installed":
                installed.append((mode, n, world.status()["s0"]))
    assert not installed, "halted 2.0.0 installed from a replay after a power cut at %s" % (installed,)


def test_other_channel_does_not_evict_the_halt(world):
    """Sequence of events: the device saw stable's halt of 2.0.0; the operator moves it to the beta
    channel for a while (two staged beta manifests come by), then back to stable. A mirror replays
    stable's pre-halt 2.0.0. Property: refused as `replayed` (the doc: "A manifest for another
    channel or board does not move it")."""
    t1 = rt.NOW - 600
    pre_halt = world.publish("2.0.0", created=t1)
    rollout.change(pre_halt["manifest"], [world.key], halt=True)
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "halted")
    beta = dict(world.cfg, source=world.srv.url + "beta.json", channel="beta")
    world.put_settings(beta)
    for i, t in enumerate((int(time.time()) + 10, int(time.time()) + 20)):
        world.publish("2.1.0-beta.%d" % (i + 1), created=t, channel="beta",
                      extra={"rollout": {"percent": 0, "salt": "s"}})
        r = world.check()
        assert (r["event"], rt.reason(r)) == ("refused", "not_in_rollout"), r
    world.put_settings(dict(beta, source=world.url, channel="stable"))
    world.serve_manifest(pre_halt["blob"])
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "replayed"), (r["event"], r["last"])


def test_setting_the_board_does_not_forget_the_halt(world):
    """The device saw the halt of a release for every board ("*"); later the operator sets the
    board name, as the `board_unknown` refusal tells them to (ota.config.set('board', ...)). A mirror
    replays the pre-halt manifest. Property: refused as `replayed`."""
    t1 = rt.NOW - 600
    pre_halt = world.publish("2.0.0", created=t1)
    rollout.change(pre_halt["manifest"], [world.key], halt=True)
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "halted")
    world.put_settings(dict(world.cfg, board="sensor-v2"))
    world.serve_manifest(pre_halt["blob"])
    r = world.check()
    assert (r["event"], rt.reason(r)) == ("refused", "replayed"), (r["event"], r["last"])


@pytest.mark.micropython
def test_seen_record_has_two_copies_micropython(world):
    """The same two-copy property, through ota.ledger.saw() under the MicroPython unix port."""
    code = '''
from ota import ledger, state
class M:
    pass
for t in (100, 200, 300):
    m = M()
    m.created = t
    m.version = "2.0.0"
    ledger.saw(m, "stable")
print("S0", state.get_json("s0"))
print("S1", state.get_json("s1"))
'''
    out = world.dev.run_micropython(code, heap="128k")
    lines = dict(ln.split(" ", 1) for ln in out.stdout.splitlines() if ln[:2] in ("S0", "S1"))
    assert lines.get("S1") not in (None, "None"), out.stdout

"""Releases the agent never judges. Agent.boot(): when the clock cannot be set (no NTP), the
first-boot server check "cannot run, which says nothing about the release": the agent marks the
image valid in otadata (cancelling ESP-IDF's rollback), keeps a boot counter that this boot does
not advance, and returns "unconfirmed" ("judged next boot"). TLS needs the clock, so until NTP
answers the board cannot check for updates either.

Properties: (1) a release whose boots never reach NTP is rolled back (or judged) within a bounded
number of boots, so that a firmware that breaks time sync cannot keep the board from ever
updating again; (2) a network attacker cannot make the board keep a release that never passed its
server check, nor lose the record of which release runs."""
import os

import pytest

from ota_tool import sim

from . import rt


def boot_where(no_ntp=(), check=False):
    """agent.boot() (then one update check) with NTP unreachable while a slot in `no_ntp` runs:
    a firmware in that slot that breaks time sync (UDP/DNS), or a network that blocks it."""
    def app():
        import simhw
        from ota import agent, slot

        if slot.label(slot.running()) in no_ntp:
            os.environ["ESPSIM_NTP"] = "off"
        else:
            os.environ.pop("ESPSIM_NTP", None)
        try:
            a = agent.Agent(self_test=simhw.healthy)
            b = a.boot()
            return (slot.label(slot.running()), b, a.check_now(reboot=False) if check else None)
        finally:
            os.environ.pop("ESPSIM_NTP", None)
    return app


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def test_release_that_never_reaches_ntp_is_kept_for_ever(world):
    world.publish("2.0.0")
    r = world.check()
    assert r["event"] == "installed", r["last"]
    seen = []
    for _ in range(40):  # power cycles of a board whose new firmware cannot set its clock
        out = world.dev.run(boot_where(no_ntp=("ota_1",), check=True))
        seen.append(out.value if out.kind == sim.RETURNED else out.kind)
    # each stay on it is bounded (agent.UNDECIDED_BOOTS), and the release is not installed and rolled
    # back for ever (ledger.EXCUSED_AFTER rollbacks the network may have caused make it known_bad)
    runs = [v[0] if isinstance(v, tuple) else v for v in seen]
    longest = max(len(r) for r in "".join("1" if x == "ota_1" else "." for x in runs).split("."))
    assert longest <= 3, seen
    st = rt.ledger_state(world.dev)
    assert st["running"] == "ota_0" and st["known_bad"], (st, seen[-5:])
    assert seen[-1][2] == "refused", seen[-5:]


def test_network_attacker_makes_the_board_keep_an_unchecked_release(world):
    """NTP blocked during 2.0.0's first boot (unconfirmed), then the mirror serves a manifest that
    does not verify: 2.0.0's server check fails and the agent rolls back with set_boot, which makes
    1.0.0 a NEW image on probation; its own server check fails the same way and it "rolls back" to
    2.0.0 (whose record reconcile() dropped). The attacker then stops."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    good = world.publish("2.0.0", security_version=1)
    assert world.check()["event"] == "installed"
    out = world.dev.run(boot_where(no_ntp=("ota_0", "ota_1")))
    assert out.value[1] == "unconfirmed", out
    forged = world.publish("2.0.0", image=good["image"], security_version=1, signers=[Ed25519PrivateKey.generate()])
    outs = [world.dev.run(boot_where()) for _ in range(3)]
    world.serve_manifest(good["blob"])  # the attacker goes away
    rt.settle(world.dev)
    st = rt.ledger_state(world.dev)
    assert forged
    rec = st["records"]["ota_1"]
    assert not (st["running"] == "ota_1" and not (rec or {}).get("ok")), (
        "the board keeps 2.0.0, which never passed a server check, with no record (%r) and counter %d; runs: %s"
        % (rec, st["counter"], [(o.kind, o.booted) for o in outs]))


def test_network_fault_during_probation_loses_the_anti_rollback_counter(tmp_path):
    """boot_retry_limit 3 (README's own example). 2.0.0 (security_version 1) is installed; during
    its first boot the server check fails (a mirror serving a manifest that does not verify), the
    agent rolls back with set_boot, which puts 1.0.0 on probation; its server check fails too and it
    goes back to 2.0.0 (reconcile() dropped 2.0.0's record on the way). The fault ends and 2.0.0
    passes its checks and is confirmed. Property: the anti-rollback counter is 1 and nothing below
    security_version 1 may run (ota.rollback() refuses 1.0.0)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    w = rt.World(tmp_path, settings={"boot_retry_limit": 3})
    try:
        good = w.publish("2.0.0", security_version=1)
        assert w.check()["event"] == "installed"
        w.publish("2.0.0", image=good["image"], security_version=1, signers=[Ed25519PrivateKey.generate()])
        outs = [w.dev.run(rt.boot_app()) for _ in range(2)]
        # 2.0.0's server check fails: back to 1.0.0, on probation in its turn (set_boot); its check
        # fails too, and with 2.0.0 unconfirmed there is nothing it may go back to: it is kept
        assert [(o.kind, o.booted) for o in outs] == [(sim.RESET, "ota_1"), (sim.RETURNED, "ota_0")], outs
        w.serve_manifest(good["blob"])  # the fault ends
        rt.settle(w.dev)  # 1.0.0 passes its checks now and is confirmed
        assert w.check()["event"] == "installed"  # 2.0.0 is offered again
        outs = rt.settle(w.dev)
        st = rt.ledger_state(w.dev)
        assert st["running"] == "ota_1" and st["version"] == "2.0.0", st

        def rollback():
            import ota
            try:
                ota.rollback("operator")
            except ota.OTAError as e:
                return e.reason
        out = w.dev.run(rollback)
        assert st["counter"] == 1 and out.kind == sim.RETURNED, (
            "2.0.0 (security_version 1) runs confirmed with counter %d, record %r; ota.rollback() -> %s (booted %s next)"
            % (st["counter"], st["records"]["ota_1"], out.kind, w.dev.boot_only()[0]))
    finally:
        w.close()

"""Power cuts while the agent rolls back a release that failed its self-test.

SECURITY.md: "the anti-rollback counter rises only when the new image confirms itself"; "A release
that fails its self-test ... is refused (`known_bad`)"; the power-loss campaign covers "a failed
self-test and its rollback". With boot_retry_limit > 1 (or after a first boot that could not set
the clock), the agent takes over from ESP-IDF's rollback: it marks the image valid in otadata at
its first boot and counts boots in the NVS `probe` record. Agent._rollback erases `probe` BEFORE
bootstate.rollback() points the boot at the previous slot. Property: a cut at any flash operation
of that rollback never leaves the failed release confirmed, nor the counter raised to its
security_version."""
import pytest

from espsim import flash as sim_flash
from ota_tool import sim

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path, settings={"boot_retry_limit": 2})
    yield w
    w.close()


def test_power_cut_during_rollback_of_a_failed_release(world):
    world.publish("2.0.0", image=world.image("2.0.0", flags={"selftest_fails": True}), security_version=1)
    r = world.check()
    assert r["event"] == "installed", r["last"]
    snap = world.snapshot("installed.bin")
    # the clean run: 2.0.0's first boot fails its self-test and rolls back (resets)
    world.dev.oplog = []
    out = world.dev.run(rt.boot_app())
    n_ops = len(world.dev.oplog)
    world.dev.oplog = None
    assert out.kind == sim.RESET and out.booted == "ota_1", out
    bad = []
    for mode in (sim_flash.CUT_BEFORE, sim_flash.CUT_TORN):
        for n in range(n_ops):
            world.restore(snap)
            world.dev.arm_power_cut(n, mode)
            out = world.dev.run(rt.boot_app())
            if out.kind != sim.POWER_CUT:
                continue
            rt.settle(world.dev)
            st = rt.ledger_state(world.dev)
            rec = st["records"]["ota_1"]
            if st["counter"] or (st["running"] == "ota_1" and rec and rec.get("ok")):
                bad.append((mode, n, st["running"], st["version"], st["counter"], rec and rec.get("ok")))
    assert not bad, "failed 2.0.0 (security_version 1) confirmed after a cut: (mode, op, running, version, " \
                    "counter, ok) %s" % (bad,)


def test_power_cut_during_rollback_after_an_unjudged_first_boot(tmp_path, monkeypatch):
    """The same with the default boot_retry_limit (1): a network attacker blocks NTP during the
    release's first boot ("unconfirmed": the agent marks it valid in otadata and starts its boot
    counter), then lets NTP through but serves a manifest that does not verify, so the next boot's
    server check fails and the agent rolls back (own=False). A cut in that rollback confirms the
    release that never passed its server check, and raises the counter to its security_version."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    w = rt.World(tmp_path)
    try:
        good = w.publish("2.0.0", security_version=1)
        r = w.check()
        assert r["event"] == "installed", r["last"]
        monkeypatch.setenv("ESPSIM_NTP", "off")
        out = w.dev.run(rt.boot_app())
        assert (out.kind, out.value) == (sim.RETURNED, "unconfirmed"), out
        monkeypatch.delenv("ESPSIM_NTP")
        w.publish("2.0.0", image=good["image"], security_version=1, signers=[Ed25519PrivateKey.generate()])
        snap = w.snapshot("unjudged.bin")
        w.dev.oplog = []
        out = w.dev.run(rt.boot_app())
        n_ops = len(w.dev.oplog)
        w.dev.oplog = None
        assert out.kind == sim.RESET, out
        assert rt.settle(w.dev)[-1].booted == "ota_0"  # the clean run: back on 1.0.0
        bad = []
        for n in range(n_ops):
            w.restore(snap)
            w.dev.arm_power_cut(n, sim_flash.CUT_BEFORE)
            if w.dev.run(rt.boot_app()).kind != sim.POWER_CUT:
                continue
            rt.settle(w.dev)
            st = rt.ledger_state(w.dev)
            rec = st["records"]["ota_1"]
            if st["counter"] or (st["running"] == "ota_1" and rec and rec.get("ok")):
                bad.append((n, st["running"], st["version"], st["counter"]))
        assert not bad, "2.0.0 confirmed after a cut at (op, running, version, counter) %s" % (bad,)
    finally:
        w.close()

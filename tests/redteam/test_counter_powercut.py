"""The anti-rollback counter across power cuts. SECURITY.md: "the anti-rollback counter rises only
when the new image confirms itself"; "`ota.rollback()` refuses to go below it". ota.ledger.confirmed()
sets the slot's "ok" flag, then raises `secver`, and returns early for a record already "ok".
Property: once a release with security_version N runs confirmed, the counter is N, after a cut at
any flash operation of its confirmation, and ota.rollback() refuses the older image below N."""
import pytest

from espsim import flash as sim_flash
from ota_tool import sim

from . import rt


@pytest.mark.parametrize("limit", [1, 3])
def test_power_cut_during_confirmation_keeps_the_counter(tmp_path, limit):
    w = rt.World(tmp_path, settings={"boot_retry_limit": limit})
    try:
        w.publish("2.0.0", security_version=1)
        assert w.check()["event"] == "installed"
        snap = w.snapshot("installed.bin")
        w.dev.oplog = []
        out = w.dev.run(rt.boot_app())
        n_ops = len(w.dev.oplog)
        w.dev.oplog = None
        assert (out.kind, out.value) == (sim.RETURNED, "confirmed"), out
        lost = []
        for mode in (sim_flash.CUT_BEFORE, sim_flash.CUT_TORN):
            for n in range(n_ops):
                w.restore(snap)
                w.dev.arm_power_cut(n, mode)
                if w.dev.run(rt.boot_app()).kind != sim.POWER_CUT:
                    continue
                rt.settle(w.dev)
                st = rt.ledger_state(w.dev)
                rec = st["records"]["ota_1"]
                if st["running"] == "ota_1" and rec and rec.get("ok") and st["counter"] != 1:
                    lost.append((mode, n, st["counter"]))
        if lost:  # what it allows: ota.rollback() to 1.0.0 (security_version 0)
            mode, n, _ = lost[0]
            w.restore(snap)
            w.dev.arm_power_cut(n, mode)
            w.dev.run(rt.boot_app())
            rt.settle(w.dev)

            def rollback():
                import ota
                try:
                    ota.rollback("operator")
                except ota.OTAError as e:
                    return e.reason
            out = w.dev.run(rollback)
            then = w.dev.boot_only()[0]
        assert not lost, ("2.0.0 (security_version 1) confirmed with the counter at 0 after a cut at %s; "
                          "ota.rollback() then -> %s, booting %s" % (lost, out.kind, then))
    finally:
        w.close()

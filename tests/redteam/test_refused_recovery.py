"""Issue 14 class 10 (recovery): "At boot, a slot that otadata selects but that does not run ...
counts one failure, its record is dropped and set_boot points back at the running image"; the
ledger: "Idempotent: a power cut in the middle is finished at the next boot". bootstate.reconcile
drops the record BEFORE set_boot. Property: after a power cut at any flash operation of that
recovery the board still recovers: a fixed release installs (no `reboot_pending` for ever)."""
import pytest

from espsim import flash as sim_flash
from ota_tool import sim

from . import rt


def _damage_slot(world, label, at=0x4000):
    p = next(p for p in world.dev.partitions() if p.name == label)
    with open(world.dev.path, "r+b") as f:
        f.seek(p.offset + at)
        b = f.read(1)
        f.seek(p.offset + at)
        f.write(bytes([b[0] ^ 0xFF]))


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def test_power_cut_during_bootloader_refusal_recovery(world):
    world.publish("2.0.0")
    r = world.check()
    assert r["event"] == "installed"
    _damage_slot(world, "ota_1")  # the bootloader will not load the new image (as in the class-10 test)
    snap = world.snapshot("refused.bin")
    world.dev.oplog = []
    out = world.dev.run(rt.boot_app())
    n_ops = len(world.dev.oplog)
    world.dev.oplog = None
    assert out.kind == sim.RETURNED and out.booted == "ota_0", out
    fixed = world.image("2.0.1")
    wedged = []
    for mode in (sim_flash.CUT_BEFORE, sim_flash.CUT_TORN):
        for n in range(n_ops):
            world.restore(snap)
            world.publish("2.0.0", image=world.image("2.0.0"))
            world.dev.arm_power_cut(n, mode)
            if world.dev.run(rt.boot_app()).kind != sim.POWER_CUT:
                continue
            rt.settle(world.dev)
            world.publish("2.0.1", image=fixed, created=rt.NOW + 10)
            results = [world.check() for _ in range(2)]
            if all(x["event"] != "installed" for x in results):
                wedged.append((mode, n, [(x["event"], rt.reason(x)) for x in results]))
    assert not wedged, "after a cut in the recovery the board never installs again: %s" % (wedged,)

"""Power cut at EVERY flash operation of an update's life: install, set_boot, the reboot (the
bootloader's own otadata writes), confirm, and a failed self-test's rollback. After each cut the
device must boot a valid image (old or new) and the update must still complete when retried.

Cut modes: "before" (the operation never happened) and "torn" (an erase or program interrupted
half-way). The number of cut points tried is printed (pytest -s) and asserted non-trivial.
"""
import shutil

import pytest

import ota
from espsim.bootloader import Brick
from espsim.flash import CUT_BEFORE, CUT_TORN
from ota_tool import sim
from tests.simhelpers import installer, new_device, small_app

V1 = small_app("1.0.0", 1)
V2 = small_app("2.0.0", 2)
V3_BAD = small_app("3.0.0", 3, flags={"selftest_fails": True})


def healthy_self_test():
    import simhw

    return simhw.healthy()


def device_boot():
    # what every boot runs first: confirm (or roll back) the image on probation
    return ota.confirm(healthy_self_test)


def lifecycle(dev, image):
    """Install `image`, reboot, let the device confirm or roll back, reboot. Stops at a power cut."""
    for step in (lambda: (device_boot(), installer(image)()), device_boot, device_boot):
        out = dev.run(step)
        if out.kind == sim.POWER_CUT:
            return False
        if out.kind == sim.RESET and step is not device_boot:
            continue
        if out.kind == sim.RESET:  # a rollback: one more boot to settle
            if dev.run(device_boot).kind == sim.POWER_CUT:
                return False
    return True


def running(dev):
    def app():
        device_boot()
        st = ota.status()
        me = [s for s in st["slots"] if s["running"]][0]
        return me["image"]["version"], me["state"]

    out = dev.run(app)
    while out.kind == sim.RESET:  # a self-test failed and rolled back
        out = dev.run(app)
    return out.value


def base_device(tmp_path, first):
    dev = new_device(tmp_path, V1, name="base.bin")
    if first is not None:
        assert lifecycle(dev, first)
    return dev


SCENARIOS = {
    # (image installed before the sweep, the update during it, its version, the version at the end)
    "good update": (None, V2, "2.0.0", "2.0.0"),
    "bad update rolled back": (V2, V3_BAD, "3.0.0", "2.0.0"),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_power_cut_sweep(tmp_path, scenario, capsys):
    first, update, update_version, expected = SCENARIOS[scenario]
    base = base_device(tmp_path, first)
    start_version = running(base)[0]
    # count the flash operations of an uninterrupted run
    probe = sim.Device(str(tmp_path / "probe.bin"))
    shutil.copyfile(base.path, probe.path)
    assert lifecycle(probe, update)
    total = probe.ops
    assert running(probe) == (expected, "valid")

    tried = bricks = 0
    for mode in (CUT_BEFORE, CUT_TORN):
        for cut in range(total):
            dev = sim.Device(str(tmp_path / "cut.bin"))
            shutil.copyfile(base.path, dev.path)
            dev.arm_power_cut(cut, mode)
            completed = lifecycle(dev, update)
            assert not completed, "cut %d (%s) never happened" % (cut, mode)
            tried += 1
            # power is back: the board must boot a valid image, the old or the new one...
            try:
                dev.boot_only()
            except Brick:
                bricks += 1
                continue
            version, state = running(dev)
            assert version in (start_version, update_version), "cut %d (%s): runs %s" % (cut, mode, version)
            # ...and the update must still go through when retried
            if version != expected or state != "valid":
                assert lifecycle(dev, update), "retry after cut %d (%s) failed" % (cut, mode)
            assert running(dev) == (expected, "valid"), "cut %d (%s)" % (cut, mode)
    with capsys.disabled():
        print("\n%s: %d flash operations, %d power cuts tried, %d bricks" % (scenario, total, tried, bricks))
    assert bricks == 0
    assert tried == 2 * total and total >= 15

"""confirm / rollback / status on the simulated ESP32, with and without bootloader rollback."""
import pytest

import ota
from ota_tool import sim
from tests.espsim.test_parttable import FACTORY_CSV
from tests.simhelpers import installer, new_device, remembered, running_version, small_app

V1 = small_app("1.0.0", 1)
V2 = small_app("2.0.0", 2)


def boot_and_confirm(dev, healthy):
    return dev.run(lambda: ota.confirm(lambda: healthy))


@pytest.mark.parametrize("rollback", [True, False], ids=["idf-rollback", "no-idf-rollback"])
def test_failed_self_test_rolls_back(tmp_path, rollback):
    dev = new_device(tmp_path, V1, rollback=rollback)
    dev.run(lambda: None)
    assert dev.run(installer(V2)).kind == sim.RESET
    out = boot_and_confirm(dev, healthy=False)
    assert out.booted == "ota_1" and out.kind == sim.RESET
    version, state, out = running_version(dev)
    assert (version, out.booted) == ("1.0.0", "ota_0")
    # and it stays there
    assert dev.run(lambda: ota.confirm(lambda: True)).booted == "ota_0"
    st = dev.run(ota.status).value
    # an old bootloader (no app rollback) under a firmware that has it: named as such
    assert st["rollback"] == ("enabled" if rollback else "old_bootloader")
    states = {s["label"]: s["state"] for s in st["slots"]}
    if rollback:
        assert states == {"ota_0": "valid", "ota_1": "aborted"}


def test_self_test_that_raises_counts_as_failed(tmp_path):
    dev = new_device(tmp_path, V1)
    dev.run(installer(V2))

    def bad():
        raise RuntimeError("sensor missing")

    out = dev.run(lambda: ota.confirm(bad))
    assert out.kind == sim.RESET
    assert running_version(dev)[0] == "1.0.0"


def test_good_update_then_explicit_rollback(tmp_path):
    dev = new_device(tmp_path, V1)
    dev.run(installer(V2))
    assert boot_and_confirm(dev, True).value == "confirmed"
    out = dev.run(lambda: ota.rollback("operator asked"))
    assert out.kind == sim.RESET
    # the previous image boots on probation and confirms itself
    assert boot_and_confirm(dev, True).value == "confirmed"
    assert running_version(dev)[:2] == ("1.0.0", "valid")


def test_no_previous_image(tmp_path):
    dev = new_device(tmp_path, V1)

    def app():
        with pytest.raises(ota.OTAError) as e:
            ota.rollback()
        return e.value.reason

    assert dev.run(app).value == "no_rollback_target"


def test_corrupt_previous_image_is_not_a_rollback_target(tmp_path):
    dev = new_device(tmp_path, V1)
    dev.run(installer(V2))
    assert boot_and_confirm(dev, True).value == "confirmed"
    with open(dev.path, "r+b") as f:  # damage ota_0 behind the device's back
        f.seek(0x10000 + 5000)
        f.write(b"\x00" * 16)

    def app():
        with pytest.raises(ota.OTAError) as e:
            ota.rollback()
        return e.value.reason

    assert dev.run(app).value == "no_rollback_target"
    assert dev.boot_only()[0] == "ota_1"


def test_factory_layout_rolls_back_to_factory(tmp_path):
    dev = new_device(tmp_path, V1, partitions_csv=FACTORY_CSV)
    assert dev.run(lambda: ota.status()["running"]).value == "factory"
    dev.run(installer(V2))
    out = boot_and_confirm(dev, healthy=False)
    assert out.booted == "ota_0" and out.kind == sim.RESET
    assert dev.boot_only()[0] == "factory"


def test_without_otadata_there_is_nothing_to_confirm(tmp_path):
    csv = "nvs,data,nvs,0x9000,0x4000\nfactory,app,factory,0x10000,0x180000\n"
    dev = new_device(tmp_path, V1, partitions_csv=csv)

    def app():
        return ota.confirm(lambda: True), ota.status()["rollback"]

    assert dev.run(app).value == ("already_valid", "unsupported")


def test_status_of_a_new_device(tmp_path):
    dev = new_device(tmp_path, V1)
    st = dev.run(ota.status).value
    assert st["running"] == "ota_0" and st["boot"] == "ota_0" and st["next_update"] == "ota_1"
    assert not st["pending_verify"]
    assert st["slots"][0]["image"]["version"] == "1.0.0" and st["slots"][1]["image"] is None


def _install_pending(image):
    """install_image, the release recorded in the ledger, set_boot: as update.install_release does."""
    def app():
        import hashlib
        import io

        from ota import install, ledger, slot

        install.install(io.BytesIO(image), len(image), hashlib.sha256(image).digest(), set_boot=False)
        target = slot.by_label("ota_1")
        ledger.staged(target, {"version": "2.0.0", "image_sha256": hashlib.sha256(image).hexdigest()})
        install.make_bootable(target)
        import machine

        machine.reset()

    return app


@pytest.mark.parametrize("first_boot", ["crash", "self_test_fails", "network_excused"])
def test_each_failed_first_boot_counts_once(tmp_path, first_boot):
    # A release the bootloader rolled back (it reset before confirming itself) counts against it
    # in reconcile; one our rollback() judged is not counted again there (or counted not at all
    # when the cause may be the network).
    import hashlib

    import machine

    from ota import bootstate

    dev = new_device(tmp_path, V1)
    for attempt in (1, 2):
        assert dev.run(_install_pending(V2)).kind == sim.RESET
        if first_boot == "crash":
            out = dev.run(machine.reset)  # no confirm: the bootloader rolls back at the next boot
        else:
            out = dev.run(lambda: bootstate.rollback("failed", remember=first_boot == "self_test_fails"))
        assert out.booted == "ota_1" and out.kind == sim.RESET
        assert dev.run(lambda: ota.confirm(lambda: True)).booted == "ota_0"  # reconcile runs here
        bad = dev.run(remembered("bad")).value
        if first_boot == "network_excused":
            assert bad is None
        else:
            assert bad == {"image_sha256": hashlib.sha256(V2).hexdigest(), "version": "2.0.0", "n": attempt}
        assert dev.run(remembered("r1")).value is None


def test_pending_release_that_never_booted_is_not_counted(tmp_path):
    # set_boot back to the running slot before the reset (a user's choice): the new slot stays NEW
    from ota import bootstate, ledger, slot, state

    dev = new_device(tmp_path, V1)

    def app():
        import hashlib
        import io

        from ota import install

        install.install(io.BytesIO(V2), len(V2), hashlib.sha256(V2).digest(), set_boot=False)
        ledger.staged(slot.by_label("ota_1"), {"version": "2.0.0", "image_sha256": "00" * 32})
        install.make_bootable(slot.by_label("ota_1"))
        slot.running().set_boot()
        bootstate.reconcile()
        return state.get_json("r1"), state.get_json("bad")

    assert dev.run(app).value == (None, None)

"""The "factory + ota_0 + ota_1" layout (firmware/partitions-factory.csv) end to end on the simulated
board: the cable-flashed factory image boots first, updates go to ota_0/ota_1 with the usual
confirm/rollback, and the factory image is the last resort when no OTA slot can boot."""
import hashlib
import io
import os

import pytest

from ota_tool import images, sim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FACTORY_CSV = open(os.path.join(ROOT, "firmware", "partitions-factory.csv")).read()


def app(version, seed, flags=None):
    return images.app_image(version, size=24 * 1024, seed=seed, flags=flags)


def installer(img):
    import ota

    def run():
        ota.install_image(io.BytesIO(img), len(img), hashlib.sha256(img).digest(), reboot=True)

    return run


def status(dev):
    import ota

    out = dev.run(ota.status)
    return out.booted, out.value


@pytest.fixture
def device(tmp_path):
    return sim.create(str(tmp_path / "factory.bin"), app("1.0.0", 1), partitions_csv=FACTORY_CSV)


def test_factory_boots_first_and_updates_go_to_the_ota_slots(device):
    import ota

    booted, st = status(device)
    assert booted == "factory" and st["running"] == "factory" and st["next_update"] == "ota_0"
    assert device.run(installer(app("2.0.0", 2))).kind == sim.RESET
    out = device.run(lambda: ota.confirm(lambda: True))
    assert out.booted == "ota_0" and out.value == "confirmed"
    assert device.run(installer(app("3.0.0", 3))).kind == sim.RESET
    out = device.run(lambda: ota.confirm(lambda: False))  # v3 fails its self-test: rolls back
    assert out.booted == "ota_1" and out.kind == sim.RESET
    booted, st = status(device)
    assert booted == "ota_0"
    assert [(s["label"], s["state"]) for s in st["slots"]] == [("factory", "factory"), ("ota_0", "valid"), ("ota_1", "aborted")]


def test_factory_is_the_last_resort(device):
    """Both OTA slots unbootable (here: erased behind the library's back) -> the factory app."""
    import ota

    device.run(installer(app("2.0.0", 2)))
    assert device.run(lambda: ota.confirm(lambda: True)).booted == "ota_0"
    with open(device.path, "r+b") as f:  # wipe ota_0's image
        f.seek(0x150000)
        f.write(b"\xff" * 0x1000)
    label, log = device.boot_only()
    assert label == "factory"
    assert any("ota_0 is not bootable" in line for line in log), log


def test_rollback_from_a_confirmed_update_returns_to_factory(device):
    import ota

    device.run(installer(app("2.0.0", 2)))
    assert device.run(lambda: ota.confirm(lambda: True)).booted == "ota_0"
    out = device.run(lambda: ota.rollback("back to the factory image"))
    assert out.kind == sim.RESET
    booted, st = status(device)
    assert booted == "factory" and st["running"] == "factory"


def test_factory_layout_under_micropython(device):
    out = device.run_micropython("import ota\nst = ota.status()\nprint(st['running'], st['next_update'])\n")
    assert out.kind == sim.RETURNED, out.stderr
    assert out.stdout.split() == ["factory", "ota_0"]

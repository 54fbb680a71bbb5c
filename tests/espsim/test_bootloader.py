"""ESP-IDF's boot selection and rollback rules, as the simulated bootloader applies them."""
import pytest

from espsim import board as sim_board
from espsim import otadata
from espsim.bootloader import Brick
from tests.simhelpers import new_device, small_app
from tests.espsim.test_parttable import FACTORY_CSV

OTADATA = 0xD000


def entries(dev):
    raw = dev.read(OTADATA, 0x2000)
    return [otadata.Entry.unpack(raw[i * 0x1000:i * 0x1000 + 32]) for i in (0, 1)]


def write_entry(dev, i, seq, state, crc=None):
    e = otadata.Entry(seq=seq, state=state)
    e.crc = otadata.seq_crc(seq) if crc is None else crc
    with open(dev.path, "r+b") as f:
        f.seek(OTADATA + i * 0x1000)
        f.write(b"\xff" * 0x1000)
        f.seek(OTADATA + i * 0x1000)
        f.write(e.pack())


def put_image(dev, label, data):
    p = next(p for p in dev.partitions() if p.name == label)
    with open(dev.path, "r+b") as f:
        f.seek(p.offset)
        f.write(data)


def test_blank_otadata_boots_ota0_and_records_it(tmp_path):
    dev = new_device(tmp_path)
    label, log = dev.boot_only()
    assert label == "ota_0"
    e = entries(dev)
    assert (e[0].seq, e[0].state) == (1, otadata.VALID) and e[0].crc_ok()
    assert e[1].seq == 0xFFFFFFFF


def test_new_becomes_pending_then_aborted_on_next_reset(tmp_path):
    dev = new_device(tmp_path)
    put_image(dev, "ota_1", small_app("2.0.0"))
    write_entry(dev, 0, 1, otadata.VALID)
    write_entry(dev, 1, 2, otadata.NEW)
    assert dev.boot_only()[0] == "ota_1"
    assert entries(dev)[1].state == otadata.PENDING_VERIFY
    # a reset before the app confirms: single-shot rollback
    assert dev.boot_only()[0] == "ota_0"
    assert entries(dev)[1].state == otadata.ABORTED
    assert dev.boot_only()[0] == "ota_0"


def test_highest_valid_seq_wins_and_wraps_over_slots(tmp_path):
    dev = new_device(tmp_path)
    put_image(dev, "ota_1", small_app("2.0.0"))
    write_entry(dev, 0, 5, otadata.VALID)  # (5-1) % 2 = ota_0
    write_entry(dev, 1, 4, otadata.VALID)  # ota_1, older
    assert dev.boot_only()[0] == "ota_0"
    write_entry(dev, 1, 6, otadata.VALID)
    assert dev.boot_only()[0] == "ota_1"
    write_entry(dev, 1, 6, otadata.VALID, crc=0x1234)  # bad CRC: ignored
    assert dev.boot_only()[0] == "ota_0"


def test_invalid_image_in_selected_slot_falls_back(tmp_path):
    dev = new_device(tmp_path)
    bad = bytearray(small_app("2.0.0"))
    bad[5000] ^= 0xFF
    put_image(dev, "ota_1", bytes(bad))
    write_entry(dev, 0, 1, otadata.VALID)
    write_entry(dev, 1, 2, otadata.VALID)
    label, log = dev.boot_only()
    assert label == "ota_0"
    assert any("ota_1 is not bootable" in m for m in log)


def test_rollback_disabled_bootloader_never_touches_states(tmp_path):
    dev = new_device(tmp_path, rollback=False)
    put_image(dev, "ota_1", small_app("2.0.0"))
    write_entry(dev, 0, 1, otadata.VALID)
    write_entry(dev, 1, 2, otadata.UNDEFINED)
    for _ in range(3):
        assert dev.boot_only()[0] == "ota_1"
    assert entries(dev)[1].state == otadata.UNDEFINED


def test_factory_layout(tmp_path):
    dev = new_device(tmp_path, partitions_csv=FACTORY_CSV)
    assert dev.boot_only()[0] == "factory"  # blank otadata: the factory app
    assert entries(dev)[0].seq == 0xFFFFFFFF  # and otadata stays blank
    put_image(dev, "ota_0", small_app("2.0.0"))
    write_entry(dev, 0, 1, otadata.PENDING_VERIFY)
    assert dev.boot_only()[0] == "factory"  # pending at reset -> aborted -> back to factory


def test_nothing_bootable_is_a_brick(tmp_path):
    dev = new_device(tmp_path)
    put_image(dev, "ota_0", b"\x00" * 64)
    with pytest.raises(Brick):
        dev.boot_only()


def test_chip_config_travels_in_the_flash(tmp_path):
    dev = new_device(tmp_path, chip_rev=301, rollback=False, mac="24:0a:c4:12:34:56")
    b = sim_board.Board(dev.path)
    assert (b.chip, b.chip_rev, b.rollback_enabled, b.mac) == ("esp32", 301, False, "24:0a:c4:12:34:56")
    b.close()

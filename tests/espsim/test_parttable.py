import pytest
from esp_idf_defs.partitions import PartitionTable

from espsim import parttable
from ota_tool import partitions
from ota_tool.sim import default_partitions_csv

FACTORY_CSV = """
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
phy_init, data, phy,     0xf000,  0x1000,
factory,  app,  factory, 0x10000, 1M,
ota_0,    app,  ota_0,   ,        1M,
ota_1,    app,  ota_1,   ,        1M,
"""


@pytest.mark.parametrize("csv", [default_partitions_csv(), FACTORY_CSV], ids=["micropython-4MiB-ota", "factory+ota"])
def test_binary_identical_to_esp_idf_defs(csv):
    ours = partitions.to_binary(partitions.parse_csv(csv))
    theirs = PartitionTable.from_csv(csv).to_binary()
    assert ours == theirs
    assert len(ours) == 0xC00


def test_chip_side_reader_reads_independent_binary():
    theirs = PartitionTable.from_csv(default_partitions_csv()).to_binary()
    parts = parttable.parse(theirs, 4 * 1024 * 1024)
    assert [(p.label, p.type, p.subtype, p.offset, p.size) for p in parts] == [
        ("nvs", 1, 2, 0x9000, 0x4000), ("otadata", 1, 0, 0xD000, 0x2000), ("phy_init", 1, 1, 0xF000, 0x1000),
        ("ota_0", 0, 0x10, 0x10000, 0x180000), ("ota_1", 0, 0x11, 0x190000, 0x180000)]
    assert [p.label for p in parttable.ota_slots(parts)] == ["ota_0", "ota_1"]


def test_md5_mismatch_detected():
    data = bytearray(partitions.to_binary(partitions.parse_csv(default_partitions_csv())))
    data[40] ^= 1  # inside the second entry
    with pytest.raises(parttable.TableError, match="MD5"):
        parttable.parse(bytes(data))


def test_bad_magic_and_empty_table():
    with pytest.raises(parttable.TableError, match="no partition table"):
        parttable.parse(b"\xff" * 0xC00)
    with pytest.raises(parttable.TableError, match="bad magic"):
        parttable.parse(b"\x12\x34" + b"\x00" * 0xBFE)

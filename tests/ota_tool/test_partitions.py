import pytest

from ota_tool import partitions

GOOD = """# comment
nvs,      data, nvs,     0x9000,  0x4000,
otadata,  data, ota,     0xd000,  0x2000,
ota_0,    app,  ota_0,   0x10000, 0x180000,
ota_1,    app,  ota_1,   0x190000, 0x180000,
"""


def test_good_table_and_auto_offsets():
    parts = partitions.parse_csv(GOOD)
    assert [p.name for p in parts] == ["nvs", "otadata", "ota_0", "ota_1"]
    auto = partitions.parse_csv(GOOD.replace("0x190000", ""))
    assert auto[-1].offset == 0x190000


@pytest.mark.parametrize("change,message", [
    (("0x190000, 0x180000", "0x180000, 0x180000"), r"row 5 \(ota_1\) overlaps row 4 \(ota_0\)"),
    (("ota_1,    app,  ota_1,   0x190000", "ota_1,    app,  ota_1,   0x191000"), r"row 5 \(ota_1\): offset 0x191000 is not aligned to 0x10000"),
    (("0x190000, 0x180000", "0x190000, 0x280000"), r"row 5 \(ota_1\): ends at 0x410000, beyond the 0x400000-byte flash"),
    (("otadata,  data, ota,     0xd000,  0x2000,\n", ""), "OTA slots without an otadata partition"),
    (("0x190000, 0x180000", "0x190000, 0x170000"), "OTA slots of different sizes"),
    (("ota_1,    app,  ota_1", "ota_1,    app,  ota_3"), "without gaps"),
    (("nvs,      data, nvs,     0x9000", "nvs,      data, nvs,     0x8000"), r"row 2 \(nvs\): offset 0x8000 overlaps the bootloader or the partition table"),
    (("ota_0,    app,  ota_0", "ota_0,    app,  sideways"), r"row 4 \(ota_0\): subtype 'sideways' is not a number"),
    (("0xd000,  0x2000", "0xd000,  0x3000"), "otadata must be exactly 0x2000"),
    (("nvs,      data, nvs,     0x9000,  0x4000,", "nvs,      data, nvs,     0x9000,  0x4000, secret"), "unknown flag"),
    (("ota_1,    app", "ota_0,    app"), "name already used"),
])
def test_errors_name_the_row(change, message):
    bad = GOOD.replace(*change)
    assert bad != GOOD
    with pytest.raises(partitions.PartitionTableError, match=message):
        partitions.parse_csv(bad)


def test_binary_roundtrip_and_vfs_region():
    parts = partitions.parse_csv(GOOD)
    back = partitions.from_binary(partitions.to_binary(parts), 4 * 1024 * 1024)
    assert [(p.name, p.offset, p.size) for p in back] == [(p.name, p.offset, p.size) for p in parts]
    assert partitions.vfs_region(parts, 4 * 1024 * 1024) == (0x310000, 0xF0000)  # 960 KiB as MicroPython makes it

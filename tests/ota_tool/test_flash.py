"""`ota-tool flash` without a board: the layout and its checks, and the merged whole-flash image
(esptool merge_bin), which must boot on the simulated device."""
import hashlib
import json
import os

import pytest

from ota_tool import cli, flashing, images, partitions, sim
from ota_tool.errors import ToolError

from . import boardimages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTA_CSV = os.path.join(ROOT, "partitions.csv")
FACTORY_CSV = os.path.join(ROOT, "firmware", "partitions-factory.csv")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("fw")
    app = images.app_image("1.0.0", size=24 * 1024, seed=3)
    boot = boardimages.real_bootloader()
    table = partitions.to_binary(partitions.load_csv(OTA_CSV))
    paths = {"app": d / "micropython.bin", "boot": d / "bootloader.bin",
             "firmware": d / "firmware.bin", "dir": d}
    paths["app"].write_bytes(app)
    paths["boot"].write_bytes(boot)
    paths["firmware"].write_bytes(images.merged_firmware(boot, table, app))
    return paths


def tool(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_layout_for_the_ota_table(files):
    app = files["app"].read_bytes()
    layout = flashing.plan(app, files["boot"].read_bytes(), OTA_CSV)
    assert [(r.name, r.offset) for r in layout.regions] == [
        ("bootloader", 0x1000), ("partition-table", 0x8000), ("otadata", 0xD000), ("ota_0", 0x10000)]
    assert layout.regions[2].data == b"\xff" * 0x2000  # blank otadata: boot from the first slot
    assert layout.regions[3].data == app
    assert layout.app_partition.name == "ota_0" and not layout.notes


def test_layout_for_the_factory_table_puts_the_app_in_factory(files):
    layout = flashing.plan(files["app"].read_bytes(), None, FACTORY_CSV)
    assert [(r.name, r.offset) for r in layout.regions] == [
        ("partition-table", 0x8000), ("otadata", 0xD000), ("factory", 0x10000)]
    assert any("bootloader already on the board is kept" in n for n in layout.notes)


def test_binary_partition_table_accepted(files, tmp_path):
    binary = tmp_path / "partition-table.bin"
    binary.write_bytes(partitions.to_binary(partitions.load_csv(FACTORY_CSV)))
    layout = flashing.plan(files["app"].read_bytes(), None, str(binary))
    assert layout.app_partition.name == "factory"


def test_refuses_merged_firmware_bin_as_the_app(files, capsys):
    rc, out, err = tool(capsys, "flash", "--firmware", files["firmware"], "--bootloader", files["boot"],
                        "--merge-only", "-o", files["dir"] / "x.bin")
    assert rc == 1
    assert "micropython.bin" in err and "firmware.bin" in err
    assert not (files["dir"] / "x.bin").exists()


def test_refuses_a_whole_flash_image_as_the_app(files, tmp_path, capsys):
    full = tmp_path / "full.bin"
    assert tool(capsys, "flash", "--firmware", files["app"], "--bootloader", files["boot"], "--merge-only",
                "-o", full)[0] == 0
    rc, out, err = tool(capsys, "flash", "--firmware", full, "--port", "socket://127.0.0.1:1")
    assert rc == 1 and "whole-flash image" in err and "micropython.bin" in err


@pytest.mark.parametrize("what,expect", [
    ("app-as-bootloader", "is an application image, not a bootloader"),
    ("firmware-as-bootloader", "more than the"),
    ("garbage-bootloader", "not an ESP image"),
])
def test_refuses_a_wrong_bootloader(files, what, expect):
    data = {"app-as-bootloader": files["app"].read_bytes(),
            "firmware-as-bootloader": boardimages.real_bootloader() + b"\x00" * 0x8000,
            "garbage-bootloader": b"\x00" * 4096}[what]
    with pytest.raises(ToolError, match=expect):
        flashing.plan(files["app"].read_bytes(), data, OTA_CSV)


def test_refuses_an_app_larger_than_its_partition(files, tmp_path):
    small = tmp_path / "small.csv"
    small.write_text("otadata, data, ota, 0xd000, 0x2000\nota_0, app, ota_0, 0x10000, 0x10000\n"
                     "ota_1, app, ota_1, 0x20000, 0x10000\n")
    app = files["app"].read_bytes()
    assert len(app) > 0x10000
    with pytest.raises(ToolError, match="the app is %d bytes but ota_0 holds 65536" % len(app)):
        flashing.plan(app, None, str(small))


def test_refuses_an_app_for_another_chip():
    s3 = images.app_image("1.0.0", size=24 * 1024, chip="esp32s3")
    with pytest.raises(ToolError, match="built for esp32s3, not esp32"):
        flashing.plan(s3, None, OTA_CSV, chip="esp32")


def test_bad_csv_names_the_row(files, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("otadata, data, ota, 0xd000, 0x2000\nota_0, app, ota_0, 0x10000, 0x180000\n"
                   "ota_1, app, ota_1, 0x100000, 0x180000\n")
    rc, out, err = tool(capsys, "flash", "--firmware", files["app"], "--partitions", bad, "--merge-only", "-o",
                        tmp_path / "x.bin", "--bootloader", files["boot"])
    assert rc == 1 and "row 3 (ota_1) overlaps row 2 (ota_0)" in err


def test_port_names_as_mpremote_takes_them(files, capsys):
    rc, out, err = tool(capsys, "flash", "--firmware", files["app"], "--port", "u9")  # mpremote's u9
    assert rc == 1 and "cannot reach an esp32 bootloader on /dev/ttyUSB9" in err and "hint: " in err, err


@pytest.mark.parametrize("csv,boots", [(OTA_CSV, "ota_0"), (FACTORY_CSV, "factory")], ids=["ota", "factory"])
def test_merged_image_boots_in_the_simulator(files, tmp_path, capsys, csv, boots):
    """merge -> pad to 4 MiB -> a simulated device's flash file -> the bootloader boots the app."""
    full = tmp_path / "full.bin"
    rc, out, err = tool(capsys, "flash", "--firmware", files["app"], "--bootloader", files["boot"],
                        "--partitions", csv, "--merge-only", "-o", full, "--json")
    assert rc == 0, err
    result = json.loads(out)
    merged = full.read_bytes()
    assert result["output_size"] == len(merged) < 4 * 1024 * 1024  # unpadded: ends with the app
    app = files["app"].read_bytes()
    target = {r["name"]: r for r in result["regions"]}[boots]
    assert merged[target["offset"]:target["offset"] + len(app)] == app
    assert merged[0x1000:0x1000 + len(files["boot"].read_bytes())] == files["boot"].read_bytes()
    assert merged[0xD000:0xF000] == b"\xff" * 0x2000
    device = tmp_path / "device.bin"
    device.write_bytes(merged + b"\xff" * (4 * 1024 * 1024 - len(merged)))
    label, log = sim.Device(str(device)).boot_only()
    assert label == boots, log
    assert "booting %s at 0x10000" % boots in log[-1]


def test_merge_pad_fills_the_flash(files, tmp_path, capsys):
    full = tmp_path / "full.bin"
    rc, _, err = tool(capsys, "flash", "--firmware", files["app"], "--bootloader", files["boot"], "--merge-only",
                      "--pad", "-o", full)
    assert rc == 0, err
    data = full.read_bytes()
    assert len(data) == 4 * 1024 * 1024 and data[-4096:] == b"\xff" * 4096
    assert hashlib.sha256(data).digest() == hashlib.sha256(
        flashing.assemble([(r.offset, r.data) for r in flashing.plan(
            files["app"].read_bytes(), files["boot"].read_bytes(), OTA_CSV).regions])).digest()


def test_unreachable_port_is_a_clear_error(files, capsys):
    rc, out, err = tool(capsys, "flash", "--firmware", files["app"], "--port", "socket://127.0.0.1:1", "--json")
    assert rc == 1
    doc = json.loads(out.strip().splitlines()[-1])
    assert doc["ok"] is False and "cannot reach an esp32 bootloader" in doc["error"] and doc["hint"]

"""`ota-tool inspect` on flash dumps of real boards: a bootloader without the simulator's ESPSIM tag,
merged by esptool with a partition table, otadata and apps, in the states a board is found in."""
import hashlib
import json
import os

import pytest

from ota_tool import cli, flashinfo, images

from . import boardimages as bi

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTA_CSV = os.path.join(ROOT, "partitions.csv")
FACTORY_CSV = os.path.join(ROOT, "firmware", "partitions-factory.csv")


@pytest.fixture(scope="module")
def apps():
    return {v: images.app_image(v, size=24 * 1024, seed=i + 10) for i, v in enumerate(("1.0.0", "2.0.0", "3.0.0"))}


def write(tmp_path, data, name="dump.bin"):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def corrupt(img):
    img = bytearray(img)
    img[0x400] ^= 0xFF  # inside the first segment: checksum and appended SHA-256 both fail
    return bytes(img)


def inspect(path):
    before = hashlib.sha256(open(path, "rb").read()).digest()
    info = flashinfo.inspect(path)
    assert hashlib.sha256(open(path, "rb").read()).digest() == before, "inspect must not change the dump"
    return info


def test_real_bootloader_is_reported_as_real(tmp_path, apps):
    info = inspect(write(tmp_path, bi.dump(OTA_CSV, {"ota_0": apps["1.0.0"]})))
    assert info["bootloader"]["offset"] == 0x1000
    assert info["bootloader"]["simulated"] is False
    assert "rollback" in info["bootloader"]["assumed"]
    assert info["chip"] == "esp32"
    assert info["boot"]["partition"] == "ota_0"
    assert [a["label"] for a in info["apps"] if a["valid"]] == ["ota_0"]
    assert info["apps"][0]["app"]["version"] == "1.0.0" and info["apps"][0]["esptool_agrees"]


def test_simulated_device_is_reported_as_simulated(tmp_path, apps):
    from ota_tool import sim

    path = str(tmp_path / "sim.bin")
    sim.create(path, apps["1.0.0"])
    info = inspect(path)
    assert info["bootloader"]["simulated"] is True and "assumed" not in info["bootloader"]


# (otadata entry 0, entry 1) -> what the bootloader does with a dump holding 1.0.0 in ota_0 and
# 2.0.0 in ota_1, and why (a line of its log).
CASES = {
    "blank-otadata": (None, None, "ota_0", "otadata empty and no factory image"),
    "ota_1-valid": ((1, bi.VALID), (2, bi.VALID), "ota_1", "seq 2 selects ota_1 (VALID)"),
    "ota_1-new": ((1, bi.VALID), (2, bi.NEW), "ota_1", "NEW -> PENDING_VERIFY"),
    "ota_1-pending-verify": ((1, bi.VALID), (2, bi.PENDING_VERIFY), "ota_0", "was PENDING_VERIFY at reset: marked ABORTED"),
    "ota_1-aborted": ((1, bi.VALID), (2, bi.ABORTED), "ota_0", "seq 1 selects ota_0"),
    "ota_1-invalid": ((1, bi.VALID), (2, bi.INVALID), "ota_0", "seq 1 selects ota_0"),
    "seq-wraps-to-ota_0": ((3, bi.VALID), (2, bi.VALID), "ota_0", "seq 3 selects ota_0"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_boot_prediction_from_otadata(tmp_path, apps, case):
    first, second, boots, why = CASES[case]
    ota = bi.otadata(first, second)
    path = write(tmp_path, bi.dump(OTA_CSV, {"ota_0": apps["1.0.0"], "ota_1": apps["2.0.0"]}, ota))
    info = inspect(path)
    assert info["boot"]["partition"] == boots
    assert any(why in line for line in info["boot"]["log"]), info["boot"]["log"]
    assert info["boot"]["log"][-1].startswith("booting %s" % boots)
    names = {bi.VALID: "VALID", bi.NEW: "NEW", bi.PENDING_VERIFY: "PENDING_VERIFY", bi.ABORTED: "ABORTED",
             bi.INVALID: "INVALID"}
    expected = [names[e[1]] if e else "UNDEFINED" for e in (first, second)]
    assert [e["state"] for e in info["otadata"]["entries"]] == expected


def test_selected_slot_corrupt_falls_back(tmp_path, apps):
    ota = bi.otadata((1, bi.VALID), (2, bi.VALID))
    path = write(tmp_path, bi.dump(OTA_CSV, {"ota_0": apps["1.0.0"], "ota_1": corrupt(apps["2.0.0"])}, ota))
    info = inspect(path)
    assert info["boot"]["partition"] == "ota_0"
    assert any("ota_1 is not bootable" in line for line in info["boot"]["log"])
    assert [a["valid"] for a in info["apps"]] == [True, False]


def test_nothing_bootable_is_reported(tmp_path, apps, capsys):
    path = write(tmp_path, bi.dump(OTA_CSV, {"ota_0": corrupt(apps["1.0.0"])}))
    assert cli.main(["inspect", path]) == 1
    out = capsys.readouterr().out
    assert "NOTHING BOOTS" in out


@pytest.mark.parametrize("first,second,ota0,boots,why", [
    (None, None, True, "factory", "defaulting to factory"),
    ((1, bi.VALID), None, True, "ota_0", "seq 1 selects ota_0"),
    ((1, bi.ABORTED), (2, bi.ABORTED), True, "factory", "defaulting to factory"),
    ((1, bi.VALID), (2, bi.PENDING_VERIFY), False, "factory", "ota_0 is not bootable"),
], ids=["blank", "ota_0-valid", "both-aborted", "ota_0-erased"])
def test_factory_layout_last_resort(tmp_path, apps, first, second, ota0, boots, why):
    contents = {"factory": apps["1.0.0"], "ota_1": apps["3.0.0"]}
    if ota0:
        contents["ota_0"] = apps["2.0.0"]
    path = write(tmp_path, bi.dump(FACTORY_CSV, contents, bi.otadata(first, second)))
    info = inspect(path)
    assert [p["label"] for p in info["partitions"]][-3:] == ["factory", "ota_0", "ota_1"]
    assert info["boot"]["partition"] == boots, info["boot"]["log"]
    assert any(why in line for line in info["boot"]["log"]), info["boot"]["log"]


def test_cli_text_and_json_on_a_dump(tmp_path, apps, capsys):
    ota = bi.otadata((1, bi.VALID), (2, bi.PENDING_VERIFY))
    path = write(tmp_path, bi.dump(OTA_CSV, {"ota_0": apps["1.0.0"], "ota_1": apps["2.0.0"]}, ota))
    assert cli.main(["inspect", path]) == 0
    text = capsys.readouterr().out
    assert "bootloader at 0x1000 (real)" in text
    assert "[1] seq 2    -> ota_1  PENDING_VERIFY" in text
    assert "next boot: ota_0" in text and "marked ABORTED (rollback)" in text
    assert cli.main(["inspect", path, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["boot"]["partition"] == "ota_0" and doc["otadata"]["active"] == 1

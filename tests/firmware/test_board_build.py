"""firmware/: the ESP32_OTA board builds with size optimisation (as MicroPython's own OTA variant),
and build.sh's image check refuses an image that leaves less than the stated margin in the slot."""
import os
import subprocess
import sys

import pytest

from ota_tool import images

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIRMWARE = os.path.join(ROOT, "firmware")
SLOT = 0x180000  # partitions.csv's OTA slots
sys.path.insert(0, FIRMWARE)
import check_image  # noqa: E402


def settings():
    out = {}
    with open(os.path.join(FIRMWARE, "boards", "ESP32_OTA", "sdkconfig.board")) as f:
        for line in f:
            if "=" in line and not line.startswith("#"):
                k, v = line.strip().split("=", 1)
                out[k] = v
    return out


def test_board_optimises_for_size():
    s = settings()
    assert s["CONFIG_COMPILER_OPTIMIZATION_SIZE"] == "y" and s["CONFIG_COMPILER_OPTIMIZATION_PERF"] == "n"


def test_build_script_calls_the_image_check_with_its_margin():
    with open(os.path.join(FIRMWARE, "build.sh")) as f:
        text = f.read()
    assert "SLOT_MARGIN=${SLOT_MARGIN:-65536}" in text and 'check_image.py" ' in text and '--margin "$SLOT_MARGIN"' in text


@pytest.mark.parametrize("size, ok", [(SLOT - 200 * 1024, True), (SLOT - 20 * 1024, False)])
def test_image_check_refuses_an_image_without_its_margin(tmp_path, size, ok):
    app = images.app_image("1.2.0", size=size, seed=5)
    path = tmp_path / "micropython.bin"
    path.write_bytes(app)
    res = subprocess.run([sys.executable, os.path.join(FIRMWARE, "check_image.py"), str(path), "1.2.0",
                          os.path.join(ROOT, "partitions.csv")], capture_output=True, text=True)
    assert (res.returncode == 0) == ok, res.stdout + res.stderr
    if not ok:
        assert "less than the margin of 65536" in res.stderr
    with pytest.raises(ValueError, match="expected '9.9.9'"):
        check_image.check(app, "9.9.9", os.path.join(ROOT, "partitions.csv"))


@pytest.mark.parametrize("version, ok", [("1.25", False), ("1.26", True), ("1.28.0", True)])
def test_partitions_refuses_a_table_without_vfs_for_micropython_before_1_26(tmp_path, version, ok):
    res = subprocess.run(["ota-tool", "partitions", os.path.join(ROOT, "partitions.csv"), "--micropython", version],
                         capture_output=True, text=True, env=dict(os.environ, PATH=os.path.dirname(sys.executable)
                                                                  + os.pathsep + os.environ["PATH"]))
    assert res.returncode == (0 if ok else 1), res.stdout + res.stderr
    if not ok:
        assert "no filesystem partition" in res.stderr and "hint:" in res.stderr
    with_vfs = tmp_path / "with-vfs.csv"
    with open(os.path.join(ROOT, "partitions.csv")) as f:
        with_vfs.write_text(f.read().rstrip("\n") + "\nvfs, data, fat, 0x310000, 0xF0000\n")
    res = subprocess.run([os.path.join(os.path.dirname(sys.executable), "ota-tool"), "partitions", str(with_vfs),
                          "--micropython", version], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr

"""`ota-tool flash` against esptool's ROM protocol, answered by esp32-mock-bootloader (an in-memory
flash on a TCP port): flash, read back what was written with an independent esptool run (ROM reads,
--no-stub: the mock's stub reads fail), assemble the flash image and boot the simulated device
from it. ROM reads are slow (~200 kbit/s), so only the written regions are read, and the app is
small."""
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout

import pytest

from ota_tool import cli, flashinfo, flashing, images, partitions, sim

from . import boardimages

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OTA_CSV = os.path.join(ROOT, "partitions.csv")
FACTORY_CSV = os.path.join(ROOT, "firmware", "partitions-factory.csv")


def _mock_exe():
    here = os.path.join(os.path.dirname(sys.executable), "esp32-mock-bootloader")
    return here if os.path.exists(here) else shutil.which("esp32-mock-bootloader")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def mock_port():
    """socket:// URL of a fresh mock ESP32 ROM bootloader (killed after the test)."""
    exe = _mock_exe()
    if exe is None:
        pytest.skip("esp32-mock-bootloader is not installed")
    port = _free_port()
    proc = subprocess.Popen([exe, "run", "--chip", "esp32", "--port", str(port), "--bind", "127.0.0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            if proc.poll() is not None:
                pytest.fail("the mock bootloader exited: %s" % proc.stdout.read().decode(errors="replace"))
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("the mock bootloader does not listen on %d" % port)
                time.sleep(0.05)
        yield "socket://127.0.0.1:%d" % port
    finally:
        proc.kill()
        proc.wait(timeout=10)


def esptool_read(url, regions, out_dir):
    """Read (offset, length) regions with esptool's own command line (ROM loader), one run."""
    import esptool

    got = []
    for i, (offset, n) in enumerate(regions):
        path = os.path.join(out_dir, "read%d.bin" % i)
        with redirect_stdout(io.StringIO()):
            esptool.main(["--chip", "esp32", "--port", url, "--no-stub", "--after", "no-reset",
                          "read-flash", hex(offset), str(n), path])
        with open(path, "rb") as f:
            got.append(f.read())
    return got


def test_flash_then_read_back_boots_in_the_simulator(mock_port, tmp_path, capsys):
    app = images.app_image("1.2.3", size=24 * 1024, seed=5)
    boot = boardimages.real_bootloader()
    (tmp_path / "micropython.bin").write_bytes(app)
    (tmp_path / "bootloader.bin").write_bytes(boot)
    rc = cli.main(["flash", "--port", mock_port, "--firmware", str(tmp_path / "micropython.bin"),
                   "--bootloader", str(tmp_path / "bootloader.bin"), "--after", "no-reset", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["verified"] is True and result["app_partition"] == "ota_0"
    assert "Hash of data verified" in err or "Verification successful" in err  # esptool's own check ran
    regions = [(r["offset"], r["size"]) for r in result["regions"]]
    assert regions == [(0x1000, len(boot)), (0x8000, 0xC00), (0xD000, 0x2000), (0x10000, len(app))]

    got = esptool_read(mock_port, regions, str(tmp_path))
    table = partitions.to_binary(partitions.load_csv(OTA_CSV))
    assert got == [boot, table, b"\xff" * 0x2000, app]

    device = tmp_path / "device.bin"
    device.write_bytes(flashing.assemble(list(zip([o for o, _ in regions], got))))
    info = flashinfo.inspect(str(device))
    assert info["bootloader"]["simulated"] is False
    assert info["apps"][0]["app"]["version"] == "1.2.3"
    label, log = sim.Device(str(device)).boot_only()
    assert label == "ota_0", log


def test_flash_factory_layout_rom_only_with_read_back(mock_port, tmp_path, capsys):
    app = images.app_image("1.0.0", size=24 * 1024, seed=6)
    (tmp_path / "micropython.bin").write_bytes(app)
    (tmp_path / "bootloader.bin").write_bytes(boardimages.real_bootloader())
    rc = cli.main(["flash", "--port", mock_port, "--firmware", str(tmp_path / "micropython.bin"),
                   "--bootloader", str(tmp_path / "bootloader.bin"), "--partitions", FACTORY_CSV,
                   "--no-stub", "--read-back", "--after", "no-reset", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads(out)
    assert result["app_partition"] == "factory"
    assert result["verified"] is True and result["read_back"] is True
    assert [r["name"] for r in result["regions"]] == ["bootloader", "partition-table", "otadata", "factory"]


def test_reflash_keeps_the_bootloader_when_not_given(mock_port, tmp_path, capsys):
    """Without --bootloader only the table, otadata and app are written: the one on the board stays."""
    boot = boardimages.real_bootloader()
    v1 = images.app_image("1.0.0", size=24 * 1024, seed=7)
    v2 = images.app_image("2.0.0", size=24 * 1024, seed=8)
    (tmp_path / "b.bin").write_bytes(boot)
    (tmp_path / "v1.bin").write_bytes(v1)
    (tmp_path / "v2.bin").write_bytes(v2)
    base = ["flash", "--port", mock_port, "--after", "no-reset", "--json"]
    assert cli.main(base + ["--firmware", str(tmp_path / "v1.bin"), "--bootloader", str(tmp_path / "b.bin")]) == 0
    capsys.readouterr()
    assert cli.main(base + ["--firmware", str(tmp_path / "v2.bin")]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in result["regions"]] == ["partition-table", "otadata", "ota_0"]
    got = esptool_read(mock_port, [(0x1000, len(boot)), (0x10000, 0x100)], str(tmp_path))
    assert got[0] == boot and got[1] == v2[:0x100]

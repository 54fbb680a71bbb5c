"""The hardware-in-the-loop script (tests/hil) run against the simulated board on a pty, so that
the script users run on real boards is known to work, and prints what firmware/README.md shows."""
import os
import subprocess
import sys

import pytest

from ota_tool import images, sim, simport

pytestmark = pytest.mark.micropython

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_hil_script_on_the_simulated_board(tmp_path):
    flash = tmp_path / "device.bin"
    sim.create(str(flash), images.app_image("1.0.0", size=24 * 1024, seed=9))
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "boot.py").write_text("print('the user boot.py')\n")
    with simport.SimPort(str(flash), str(fs)) as port:
        env = dict(os.environ, OTA_HIL_SETTLE="0.3")
        res = subprocess.run([sys.executable, "-m", "pytest", "tests/hil", "--port", port.device, "-s", "-q",
                              "-p", "no:cacheprovider"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
        boots = list(port.boots)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    lines = [line[line.index("[HIL] "):] for line in res.stdout.splitlines() if "[HIL] " in line]
    expected = [
        "[HIL] board on %s: MicroPython" % port.device,
        "[HIL] deployed ",
        "[HIL] set aside for the test: boot.py",
        "[HIL] running ota_0 (valid), next update goes to ota_1, rollback: ",
        "[HIL] installed a copy of ota_0 into ota_1: 65616 bytes, verified, set as boot partition",
        "[HIL] after reset: running ota_1, pending_verify=True",
        "[HIL] reset before confirming: running ota_0, ota_1 is aborted -> rolled back",
        "[HIL] installed again into ota_1",
        "[HIL] after reset: running ota_1, ota.confirm() -> confirmed",
        "[HIL] after another reset: running ota_1 (valid), rollback support: enabled",
        "[HIL] ota.rollback(): running ota_0 again",
        "[HIL] restored boot.py",
    ]
    assert len(lines) == len(expected), "\n".join(lines)
    for got, want in zip(lines, expected):
        assert got.startswith(want), (got, want)
    # every reboot went through the simulated bootloader
    assert boots == ["ota_0", "ota_1", "ota_0", "ota_1", "ota_1", "ota_0"]
    assert (fs / "boot.py").read_text() == "print('the user boot.py')\n"
    assert not (fs / "boot.py.hil").exists()

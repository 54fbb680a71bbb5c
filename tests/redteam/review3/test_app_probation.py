"""Review 3: an app bundle on probation, under boot.py/main.py on the simulated board (MicroPython)."""
import json
import os

import pytest

from ota_tool import app_release, devfs, images, keys, release, server, sim
from tests.simhelpers import SMALL

pytestmark = pytest.mark.micropython
HEAP = "208k"  # ota-tool sim-port's default: the agent with app bundles (README "heap")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
MAIN = open(os.path.join(ROOT, "main.py")).read()
BOOT = open(os.path.join(ROOT, "boot.py")).read()
BOARD = "import simrun\nsimrun.run_scripts()\n"  # boot.py, then main.py, from the board's filesystem

HANGS = """
def self_test():
    while True:
        pass
"""


@pytest.fixture
def board(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = str(tmp_path / "repo")
    os.mkdir(repo)
    fw = images.app_image("1.0.0", size=SMALL, seed=1)
    release.build(fw, "1.0.0", [key], repo)  # the firmware the board runs: the check is up to date
    srv = server.start_server(repo, tls_dir=str(tmp_path / "tls"), reports=False)
    dev = sim.create(str(tmp_path / "dev.bin"), fw)
    devfs.put(dev.path, "ota.json", json.dumps({
        "source": srv.url + "stable.json", "app_source": srv.url + "stable-app.json",
        "probation_watchdog": 4, "keys": {"k": keys.public_text(key)}}).encode())
    devfs.put(dev.path, "ota_ca.der", srv.ca_der)
    devfs.put(dev.path, "wifi.json", b'{"ssid": "lab", "password": "secret12"}')
    devfs.put(dev.path, "boot.py", BOOT.encode())
    devfs.put(dev.path, "main.py", MAIN.encode())
    yield dev, key, repo
    srv.stop()


def test_an_app_bundle_whose_self_test_hangs_is_not_left_hanging(board):
    """README, "App bundles and settings": "The new tree goes through the same self-test and
    confirmation as a firmware; a failure restores app.old/." and, for that confirmation, "Nothing
    leaves an image on probation stuck ... a hang anywhere resets the board and the bootloader
    rolls the image back".

    What happens: boot.py arms the probation watchdog only while the FIRMWARE is on probation
    (ota.probation.on_probation is bootstate.unconfirmed). A new app tree on probation
    (apptree phase "swapped") runs its self-test (main.py's self_test imports app.py) with no
    watchdog armed: an app whose import or self-test hangs leaves the board hung for good
    (neither confirmed nor rolled back) until someone power-cycles it; a firmware with the same
    hang is reset by the watchdog and rolled back."""
    dev, key, repo = board
    app_release.build([("app.py", HANGS.encode())], "1.0.0", [key], repo)
    out = dev.run_micropython(BOARD, HEAP, timeout=60)
    assert out.kind == sim.RESET and out.cause == sim.BY_CODE, out.stdout[-2000:]  # installed the app, reset into it
    assert json.loads(devfs.get(dev.path, "ota-app.journal"))["phase"] == "swapped"
    out = dev.run_micropython(BOARD, HEAP, timeout=15)  # a 4 s watchdog would have reset it long before
    assert out.kind != sim.HUNG, "the board hangs in the new app's self-test, with no watchdog: %r\n%s" % (
        out, out.stdout[-1500:])
    # Fixed: boot.py arms the watchdog for an app on probation too; its reset counts as a boot of
    # the app, the next boot restores the tree before it, and after KNOWN_BAD_AFTER (2) failures
    # the agent refuses that app (known_bad) and keeps the board on its update schedule.
    assert out.kind == sim.RESET and out.cause == sim.BY_WATCHDOG, out
    seen = []
    for _ in range(4):
        out = dev.run_micropython(BOARD, HEAP, timeout=10)
        seen.append((out.kind, out.cause))
        if out.kind == sim.HUNG:
            break
    assert out.kind == sim.HUNG, seen  # the agent's schedule, the hanging app not installed again
    assert json.loads(devfs.get(dev.path, "ota-app.journal"))["phase"] != "swapped"
    log = devfs.get(dev.path, "ota.log").decode()
    assert "no successful self-test" in log and '"reason": "known_bad"' in log, log[-2000:]

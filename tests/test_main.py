"""The device entry point main.py on a simulated board: the agent confirms or rolls back first,
then the application from the app tree runs (app.py), and only after that. Under MicroPython,
where the app is imported from the board's own filesystem as on a device."""
import json
import os

import pytest

from ota_tool import devfs, images, keys, release, server, sim
from tests.simhelpers import SMALL

pytestmark = pytest.mark.micropython
HEAP = "192k"  # the whole signed HTTPS flow with the library's bytecode in the heap (README "Heap")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAIN = open(os.path.join(ROOT, "main.py")).read()

APP = """
import simhw
order = []

def connect():
    import network
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("lab", "x")
    return w.isconnected()

def self_test():
    order.append("self_test")
    return simhw.healthy()

def main(agent):
    order.append("main:" + agent.app_state)
    print("app", order, agent.check_now(reboot=False))
"""


@pytest.fixture
def board(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    (tmp_path / "repo").mkdir()
    srv = server.start_server(str(tmp_path / "repo"), tls_dir=str(tmp_path / "tls"), reports=False)
    dev = sim.create(str(tmp_path / "dev.bin"), images.app_image("1.0.0", size=SMALL, seed=1))
    devfs.put(dev.path, "ota.json", json.dumps({"source": srv.url + "stable.json",
                                                "keys": {"k": keys.public_text(key)}}).encode())
    devfs.put(dev.path, "ota_ca.der", srv.ca_der)
    devfs.put(dev.path, "app/app.py", APP.encode())
    yield dev, key, str(tmp_path / "repo")
    srv.stop()


def test_main_runs_the_agent_then_the_app(board):
    dev, key, repo = board
    release.build(images.app_image("2.0.0", size=SMALL, seed=2), "2.0.0", [key], repo)
    out = dev.run_code(MAIN, "micropython", HEAP)
    assert out.kind == sim.RETURNED, out.stdout
    assert "app ['main:none'] installed" in out.stdout  # no self-test on a confirmed image
    out = dev.run_code(MAIN, "micropython", HEAP)  # 2.0.0 on probation: the app's self-test runs, before its main
    assert out.booted == "ota_1" and "app ['self_test', 'main:none'] up_to_date" in out.stdout, out.stdout


def test_main_rolls_back_a_release_whose_app_self_test_fails(board):
    dev, key, repo = board
    release.build(images.app_image("2.0.0", size=SMALL, seed=2, flags={"selftest_fails": True}), "2.0.0", [key], repo)
    assert "installed" in dev.run_code(MAIN, "micropython", HEAP).stdout
    out = dev.run_code(MAIN, "micropython", HEAP)
    assert out.kind == sim.RESET and out.booted == "ota_1" and "app [" not in out.stdout  # main never ran
    assert dev.boot_only()[0] == "ota_0"

"""A new user's journey with a board, as one scenario, every step through ota-tool (issue 16):
keygen, serve, sim-port (the simulated board on a pty, the device code under the MicroPython unix
port), deploy with Wi-Fi settings, main.py running, a release staged at 10 %, `device update` with
its progress, the reboot and the confirmation, the rollout to 100 %, a failing release rolled back
and explained by `device update`, and `fleet` listing the device. Before the README's release, the
case its text describes: a stage the board is outside of."""
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from ota import policy
from ota_tool import cli, images, reports, simport

pytestmark = pytest.mark.micropython

if not hasattr(os, "openpty"):
    pytest.skip("needs pseudo-terminals", allow_module_level=True)

DEVICE_ID = "240ac4000001"  # machine.unique_id() of a simulated board (its MAC)
APP = "import simhw\n\n\ndef self_test():\n    return simhw.healthy()\n"  # the user's app checks its hardware


def tool(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    with capsys.disabled():  # the journey, readable with pytest -s (and not read again by the next step)
        sys.stdout.write(out)
        sys.stdout.write(err)
    return rc, out, err


def start(argv, pattern, timeout=60):
    """Start a long-running ota-tool command; wait for the line its `pattern` captures."""
    proc = subprocess.Popen([sys.executable, "-m", "ota_tool.cli"] + argv, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    end = time.monotonic() + timeout
    seen = []
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        m = re.search(pattern, line)
        if m:
            import threading

            proc.seen = seen  # what it prints from now on, for failure messages (and so the pipe never fills)
            threading.Thread(target=lambda: seen.extend(proc.stdout), daemon=True).start()
            return proc, m.group(1)
    stop(proc)
    raise AssertionError("%s did not print %r:\n%s" % (argv[0], pattern, "".join(seen)))


def stop(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_for(predicate, timeout=30):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_the_journey_with_a_simulated_board(tmp_path, capsys, monkeypatch):
    t0 = time.monotonic()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WIFI_PASSWORD", "correct horse")
    heap = os.environ.get("OTA_JOURNEY_HEAP", simport.DEFAULT_HEAP)
    os.mkdir("repo")
    os.mkdir("fs")
    (tmp_path / "fw-2.0.0.bin").write_bytes(images.app_image("2.0.0", size=1500 * 1024, seed=2))
    (tmp_path / "fw-3.0.0.bin").write_bytes(images.app_image("3.0.0", size=1500 * 1024, seed=3,
                                                             flags={"selftest_fails": True}))
    procs = []
    try:
        assert tool(capsys, "keygen", "release.pem")[0] == 0
        srv, url = start(["serve", "repo", "--port", "0", "--bind", "127.0.0.1"], r"serving .* at (https://\S+/) ")
        procs.append(srv)
        board, port = start(["sim-port", "--flash", "device.bin", "--fs", "fs", "--new", "--heap", heap,
                             "--wifi", "lab", "--wifi-password-env", "WIFI_PASSWORD"], r"simulated board on (\S+) ")
        procs.append(board)

        # deploy: library, boot.py/main.py, the server's settings, key and CA, the Wi-Fi settings
        rc, out, err = tool(capsys, "deploy", "--port", port, "--server", url, "--ca", ".ota-tls/ca.der",
                            "--keys", "release.pem.pub", "--wifi", "lab", "--wifi-password-env", "WIFI_PASSWORD")
        assert rc == 0 and "verified" in out, out + err
        os.makedirs("fs/app")
        with open("fs/app/app.py", "w") as f:  # the user's app (as mpremote cp would copy it)
            f.write(APP)
        # main.py runs: the agent confirms nothing (a cable-flashed board) and checks: no release yet
        assert tool(capsys, "device", "reset", "--port", port)[0] == 0
        assert wait_for(lambda: os.path.exists("fs/ota.log") and "http_404" in open("fs/ota.log").read()), (
            "".join(board.seen), open("fs/ota.log").read() if os.path.exists("fs/ota.log") else "no ota.log")

        # what the README says of a random salt that leaves the board outside the 10 % stage: the
        # board refuses (not_in_rollout), fleet counts it under SKIPPED and lists the release it runs
        # (1.0.0, from its app descriptor: flashed by cable), and the rollout to 100 % waits for reports
        outside = next("s%d" % i for i in range(1000) if policy.rollout_bucket(DEVICE_ID, "s%d" % i) >= 1000)
        rc, out, err = tool(capsys, "release", "fw-2.0.0.bin", "--key", "release.pem", "--version", "2.0.0",
                            "--out", "repo", "--percent", "10", "--salt", outside, "--compress")
        assert rc == 0, out + err
        rc, out, err = tool(capsys, "device", "update", "--port", port)
        assert rc == 1 and "not_in_rollout" in err, out + err
        rc, out, err = tool(capsys, "fleet", "repo")
        assert rc == 0 and re.search(r"^2\.0\.0 .* 1$", out, re.M), out  # SKIPPED, the last column
        assert re.search(r"^%s +1\.0\.0 " % DEVICE_ID, out, re.M), out
        rc, out, err = tool(capsys, "rollout", "repo/stable.json", "--key", "release.pem", "--percent", "100")
        assert rc == 1 and "--min-reports" in out + err, out + err

        # a release staged at 10 %, with the README's salt, which puts this board in the first 10 %
        # (--replace: the same version again, here after the case above)
        salt = "journey-6"
        assert policy.rollout_bucket(DEVICE_ID, salt) == 290  # the README says so
        rc, out, err = tool(capsys, "release", "fw-2.0.0.bin", "--key", "release.pem", "--version", "2.0.0",
                            "--out", "repo", "--percent", "10", "--salt", salt, "--compress", "--replace")
        assert rc == 0 and "live to 10% of the devices" in out, out + err

        # device update: interrupts main.py, installs with progress, follows the reboot to the confirmation
        rc, out, err = tool(capsys, "device", "update", "--port", port)
        assert rc == 0, out + err
        assert "downloading 2.0.0:  25%" in out and "downloading 2.0.0: 100%" in out, out
        assert "installed release 2.0.0" in out and "release 2.0.0 confirmed itself" in out, out
        rc, out, err = tool(capsys, "device", "status", "--port", port)
        assert rc == 0 and "device id:      %s" % DEVICE_ID in out and "release:        2.0.0" in out, out

        # the stage widens to everyone: the board's report (confirmed) is what lets it
        rc, out, err = tool(capsys, "rollout", "repo/stable.json", "--key", "release.pem", "--percent", "100")
        assert rc == 0 and "10% -> 100%" in out and "1 attempted, 1 confirmed" in out, out + err

        # a release whose self-test fails: installed, rolled back by the board, explained
        rc, out, err = tool(capsys, "release", "fw-3.0.0.bin", "--key", "release.pem", "--version", "3.0.0",
                            "--out", "repo")
        assert rc == 0, out + err
        rc, out, err = tool(capsys, "device", "update", "--port", port)
        assert rc == 1 and "installed release 3.0.0" in out, out + err
        assert "error: release 3.0.0 was rolled back: self-test failed; the board runs 2.0.0 again" in err, err
        assert "hint: " in err
        rc, out, err = tool(capsys, "device", "log", "--port", port, "-n", "5")
        assert rc == 0 and "rolled_back" in out and "reason=self-test failed" in out, out

        # the fleet: the board, the release it runs, its state
        # (the board sends its rolled_back report from 2.0.0 after booting it: it may still be on its way)
        assert wait_for(lambda: "rolled back 3.0.0" in reports.summary_from_path(reports.default_path("repo"))[
            "device_list"][0]["state"]), "the board's rolled_back report did not arrive"
        rc, out, err = tool(capsys, "fleet", "repo")
        assert rc == 0, err
        row = next(line for line in out.splitlines() if line.startswith(DEVICE_ID))
        assert "2.0.0" in row and "rolled back 3.0.0: self-test failed" in row, out
    finally:
        for p in procs:
            stop(p)
    with capsys.disabled():
        print("\njourney: %.1f s (heap %s)" % (time.monotonic() - t0, heap))

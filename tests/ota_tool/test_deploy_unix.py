"""`ota-tool deploy` and `ota-tool device` through mpremote, against the MicroPython unix port on a
pseudo-terminal (ota_tool.simport) attached to a simulated ESP32: what the board imports and runs
is what deploy copied into the folder that plays its filesystem."""
import hashlib
import io
import json
import os
import subprocess
import sys
import time

import pytest

from ota_tool import cli, deploy, images, keys, mpdevice, sim, simport
from ota_tool.errors import ToolError

pytestmark = pytest.mark.micropython

if not hasattr(os, "openpty"):
    pytest.skip("needs pseudo-terminals", allow_module_level=True)


@pytest.fixture
def board(tmp_path):
    """A simulated board on a pty: yields the SimPort (.device is the port, .fs_dir its filesystem)."""
    flash = tmp_path / "device.bin"
    sim.create(str(flash), images.app_image("1.0.0", size=24 * 1024, seed=4))
    with simport.SimPort(str(flash), str(tmp_path / "fs")) as port:
        yield port


@pytest.fixture
def extras(tmp_path):
    """A config, a public key and a CA certificate, as a user would pass them."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    cfg = tmp_path / "ota.json"
    cfg.write_text(json.dumps({"source": "https://updates.example/stable.json", "interval": 3600}))
    key = keys.generate(str(tmp_path / "release.pem"))
    k = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(k.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(k, hashes.SHA256()))
    ca = tmp_path / "ca.pem"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return {"config": cfg, "pub": tmp_path / "release.pem.pub", "key": key, "ca": ca,
            "ca_der": cert.public_bytes(serialization.Encoding.DER)}


def tool(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_deploy_mpy_then_status(board, extras, capsys):
    rc, out, err = tool(capsys, "deploy", "--port", board.device, "--config", extras["config"],
                        "--keys", extras["pub"], "--ca", extras["ca"], "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["mode"] == "mpy" and report["arch"] == "x64"  # asked from the board, not assumed
    fs = board.fs_dir
    lib = [f["path"] for f in report["files"] if f["what"] == "library"]
    assert sorted(lib) == sorted("lib/ota/" + rel[:-3] + ".mpy" for rel, _ in deploy.library_sources())
    assert all(f["verified"] for f in report["files"])
    for f in report["files"]:  # the board's filesystem holds exactly what was sent
        with open(os.path.join(fs, f["path"]), "rb") as fh:
            assert hashlib.sha256(fh.read()).hexdigest() == f["sha256"], f["path"]
    assert not [n for _, _, names in os.walk(fs) for n in names if n.endswith(".tmp")]
    assert report["ota"]["file"].startswith(fs) and "warning" not in report["ota"]
    with open(os.path.join(fs, "ota.json")) as fh:
        assert json.load(fh) == {"source": "https://updates.example/stable.json", "interval": 3600,
                                 "keys": {"release": keys.public_text(extras["key"])}}
    with open(os.path.join(fs, "ota_ca.der"), "rb") as fh:
        assert fh.read() == extras["ca_der"]
    assert os.path.isfile(os.path.join(fs, "boot.py")) and os.path.isfile(os.path.join(fs, "main.py"))
    with open(os.path.join(fs, "lib", "ota", "__init__.mpy"), "rb") as fh:
        assert fh.read(2) == b"M\x06"  # .mpy v6

    rc, out, err = tool(capsys, "device", "status", "--port", board.device, "--json")
    assert rc == 0, err
    st = json.loads(out)
    assert st["running"] == "ota_0" and st["next_update"] == "ota_1"
    assert st["slots"][0]["image"]["version"] == "1.0.0" and st["slots"][0]["running"]
    rc, out, err = tool(capsys, "device", "status", "--port", board.device)
    assert rc == 0 and "running:        ota_0" in out and "1.0.0" in out


def test_deploy_py_replaces_mpy_and_removes_stale_files(board, capsys):
    assert tool(capsys, "deploy", "--port", board.device, "--no-app")[0] == 0
    stale = os.path.join(board.fs_dir, "lib", "ota", "gone.py")
    with open(stale, "w") as f:
        f.write("raise ImportError\n")
    rc, out, err = tool(capsys, "deploy", "--port", board.device, "--py", "--no-app", "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert "lib/ota/gone.py" in report["removed"] and "lib/ota/__init__.mpy" in report["removed"]
    assert report["ota"]["file"].endswith("lib/ota/__init__.py")
    names = [n for _, _, ns in os.walk(os.path.join(board.fs_dir, "lib")) for n in ns]
    assert names and all(n.endswith(".py") for n in names)
    assert not os.path.exists(os.path.join(board.fs_dir, "boot.py"))


def test_deploy_notices_a_file_that_differs_on_the_board(board):
    class Flaky(mpdevice.Board):
        def write(self, path, data, progress=None):
            if path.endswith("errors.py"):
                data = data[:-1] + b"#"
            super().write(path, data, progress)

    items, _ = deploy.plan("py", None, app=False)
    with Flaky(board.device, resume=True) as b:
        with pytest.raises(ToolError, match="1 file\\(s\\) differ on the board after copying: lib/ota/errors.py"):
            deploy.deploy(b, items, log=io.StringIO())


def test_device_config_get_set_unset(board, extras, capsys):
    assert tool(capsys, "deploy", "--port", board.device, "--no-app", "--config", extras["config"])[0] == 0
    base = ["device", "config"]
    port = ["--port", board.device]
    rc, out, err = tool(capsys, *base, "get", "interval", *port)
    assert rc == 0 and out.strip() == "3600"
    assert tool(capsys, *base, "set", "interval", "60", *port)[0] == 0
    assert tool(capsys, *base, "set", "channel", "123", "--string", *port)[0] == 0
    assert tool(capsys, *base, "set", "keys.lab", keys.public_text(extras["key"]), *port)[0] == 0
    assert tool(capsys, *base, "unset", "source", *port)[0] == 0
    with open(os.path.join(board.fs_dir, "ota.json")) as f:
        doc = json.load(f)
    assert doc == {"interval": 60, "channel": "123", "keys": {"lab": keys.public_text(extras["key"])}}
    assert not os.path.exists(os.path.join(board.fs_dir, "ota.json.tmp"))
    rc, out, err = tool(capsys, *base, "get", *port, "--json")
    assert json.loads(out) == doc
    rc, out, err = tool(capsys, *base, "get", "nope", *port)
    assert rc == 1 and "has no 'nope'" in err
    # refused with the device's own words, and the board's file is left as it was
    rc, out, err = tool(capsys, *base, "set", "interval", "soon", *port)
    assert rc == 1 and "setting 'interval' must be int" in err
    rc, out, err = tool(capsys, *base, "set", "colour", "blue", *port)
    assert rc == 1 and "unknown setting 'colour'" in err
    with open(os.path.join(board.fs_dir, "ota.json")) as f:
        assert json.load(f) == doc


def test_deploy_keys_into_the_boards_settings(board, extras, capsys, tmp_path):
    assert tool(capsys, "deploy", "--port", board.device, "--no-app", "--config", extras["config"])[0] == 0
    other = keys.generate(str(tmp_path / "second.pem"))
    rc, out, err = tool(capsys, "deploy", "--port", board.device, "--no-app", "--keys", tmp_path / "second.pem.pub")
    assert rc == 0, err
    with open(os.path.join(board.fs_dir, "ota.json")) as f:
        doc = json.load(f)
    assert doc["source"] == "https://updates.example/stable.json"  # kept from the board's settings
    assert doc["keys"] == {"second": keys.public_text(other)}


def test_deploy_refuses_bad_settings_before_touching_the_board(board, tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"interval": "hourly"}))
    rc, out, err = tool(capsys, "deploy", "--port", board.device, "--config", bad)
    assert rc == 1 and "setting 'interval' must be int" in err
    assert not os.path.exists(os.path.join(board.fs_dir, "lib"))


def test_device_log(board, capsys):
    rc, out, err = tool(capsys, "device", "log", "--port", board.device)
    assert rc == 0 and "no ota.log" in err
    with open(os.path.join(board.fs_dir, "ota.log.1"), "w") as f:  # the rotated part comes first
        f.write("".join(json.dumps({"t": None, "ticks": 1500 * i, "event": "up_to_date"}) + "\n" for i in range(299)))
    with open(os.path.join(board.fs_dir, "ota.log"), "w") as f:
        f.write(json.dumps({"t": 1767225600, "ticks": 9, "event": "failed", "reason": "http_404",
                            "message": "https://h/stable.json answered HTTP 404"}) + "\nnot json\n")
    rc, out, err = tool(capsys, "device", "log", "--port", board.device, "-n", "3")
    assert rc == 0 and out.splitlines() == [
        "clock unset, t+447.0s  up_to_date     ",
        "2026-01-01 00:00:00  failed         reason=http_404  https://h/stable.json answered HTTP 404",
        "not json"], out
    rc, out, err = tool(capsys, "device", "log", "--port", board.device, "--json")
    records = json.loads(out)  # a JSON list of the records
    assert len(records) == 301 and records[299]["reason"] == "http_404" and records[-1] == {"text": "not json"}


def test_device_update(board, capsys):
    assert tool(capsys, "deploy", "--port", board.device, "--no-app")[0] == 0
    rc, out, err = tool(capsys, "device", "update", "--port", board.device)
    assert rc == 1 and "no update source configured" in out and "@@" not in out  # the board's words, passed on
    assert "error: the update check failed" in err and "(reason no_source)" in err and "hint: " in err, err
    # with --resume the REPL keeps its modules between connections: stand in other agents
    with mpdevice.Board(board.device) as b:
        b.exec("import ota\ndel ota.update_now")
    rc, out, err = tool(capsys, "device", "update", "--port", board.device, "--resume")
    assert rc == 1 and "has no update agent" in err and "hint: " in err
    with mpdevice.Board(board.device, resume=True) as b:
        b.exec("import ota, ota.agent\nota.update_now = print\n"
               "def _c(self, **kw):\n print('checking stable.json')\n self.log('up_to_date')\n return 'up_to_date'\n"
               "ota.agent.Agent.check_now = _c")
    rc, out, err = tool(capsys, "device", "update", "--port", board.device, "--resume", "--json")
    assert rc == 0, err
    assert "board: checking stable.json" in err
    doc = json.loads(out)
    assert doc["ok"] and doc["result"] == "up_to_date" and doc["events"] == [["up_to_date", {}]] and not doc["reset"]
    # an update that reboots the board: the command notices the reset instead of waiting
    with mpdevice.Board(board.device, resume=True) as b:
        b.exec("import ota.agent, machine\n"
               "def _c(self, **kw):\n print('installed, rebooting')\n"
               " self.log('installed', target_version='2.0.0', bytes=10, message='raw')\n machine.reset()\n"
               "ota.agent.Agent.check_now = _c")
    rc, out, err = tool(capsys, "device", "update", "--port", board.device, "--resume", "--json", "--wait", "0")
    assert rc == 0, err
    doc = json.loads(out)
    assert doc["reset"] and doc["installed"]["target_version"] == "2.0.0" and "installed, rebooting" in err
    assert "installed release 2.0.0 (raw artifact, 10 bytes downloaded)" in err
    deadline = time.monotonic() + 10
    while len(board.boots) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert board.boots == ["ota_0", "ota_0"]  # rebooted through the simulated bootloader


def test_no_library_on_the_board(board, capsys):
    rc, out, err = tool(capsys, "device", "status", "--port", board.device)
    assert rc == 1 and "no ota library" in err and "ota-tool deploy" in err


def test_mpy_version_mismatch_is_refused():
    with pytest.raises(ToolError, match="the board loads .mpy v5.0"):
        deploy.plan("mpy", mpy_word=5 | (10 << 10))
    assert deploy.parse_mpy_word(6 | (3 << 8) | (10 << 10)) == (6, 3, "xtensawin")


def test_port_that_is_not_a_board(capsys, tmp_path):
    rc, out, err = tool(capsys, "device", "status", "--port", str(tmp_path / "ttyNOPE"))
    assert rc == 1 and "cannot open" in err


def test_mip_install_of_package_json(tmp_path):
    """package.json installs the library the way `mpremote mip install github:OWNER/REPO` would
    (here from the checkout: mpremote resolves its relative URLs next to package.json)."""
    flash = tmp_path / "device.bin"
    sim.create(str(flash), images.app_image("1.0.0", size=24 * 1024, seed=4))
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with simport.SimPort(str(flash), str(tmp_path / "fs"), heap="256k") as port:
        res = subprocess.run([sys.executable, "-m", "mpremote", "connect", port.device, "resume", "mip", "install",
                              os.path.join(root, "package.json")], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stdout + res.stderr
        with mpdevice.Board(port.device, resume=True) as b:
            where = b.call("import ota\nresult = [ota.__file__, ota.status()['running']]")
    assert where == [os.path.join(port.fs_dir, "lib", "ota", "__init__.py"), "ota_0"]
    installed = sorted(os.path.relpath(os.path.join(d, n), os.path.join(port.fs_dir, "lib")).replace(os.sep, "/")
                       for d, _, ns in os.walk(os.path.join(port.fs_dir, "lib")) for n in ns)
    assert installed == sorted("ota/" + rel for rel, _ in deploy.library_sources())

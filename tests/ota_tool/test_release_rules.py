"""What `ota-tool release` refuses or keeps (issue 16 item 7), the app taken out of a merged
firmware.bin (item 9), and the conventions of item 11 (port names, the server's index page)."""
import hashlib
import json
import ssl
import urllib.request

import pytest

from ota import manifest
from ota_tool import cli, images, keys, partitions, ports, server, sim

V1 = images.app_image("1.0.0", size=40 * 1024, seed=1)
V2 = images.app_image("2.0.0", size=40 * 1024, seed=2, base=images.code_like(40 * 1024 - 0x3000, 1), changes=3)


@pytest.fixture
def key(tmp_path):
    keys.generate(str(tmp_path / "k.pem"))
    return str(tmp_path / "k.pem")


def run(capsys, *argv):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def doc(path):
    return json.loads(manifest.split(open(path, "rb").read())[1])


def test_extract_app_from_a_merged_firmware_bin(tmp_path, key, capsys):
    table = partitions.to_binary(partitions.parse_csv(sim.default_partitions_csv()))
    merged = images.merged_firmware(images.bootloader_image(), table, V2)  # MicroPython's firmware.bin (0x1000)
    for name, data in (("firmware.bin", merged), ("full-flash.bin", b"\xff" * 0x1000 + merged)):
        (tmp_path / name).write_bytes(data)
        rc, out, err = run(capsys, "release", tmp_path / name, "--key", key, "--version", "2.0.0", "--out",
                           tmp_path / name.replace(".bin", "-repo"))
        assert rc == 1 and "add --extract-app" in err, err  # refused without the flag, naming what it is
        rc, out, err = run(capsys, "release", tmp_path / name, "--extract-app", "--key", key, "--version", "2.0.0",
                           "--out", tmp_path / name.replace(".bin", "-repo"))
        assert rc == 0, err
        assert "the app in ota_0 at 0x10000" in out and "%d bytes" % len(V2) in out, out
        d = doc(tmp_path / name.replace(".bin", "-repo") / "stable.json")
        assert d["image"] == {"size": len(V2), "sha256": hashlib.sha256(V2).hexdigest()}


def test_re_releasing_keeps_what_was_published_and_going_back_needs_a_flag(tmp_path, key, capsys):
    (tmp_path / "v1.bin").write_bytes(V1)
    (tmp_path / "v2.bin").write_bytes(V2)
    repo = tmp_path / "repo"
    assert run(capsys, "release", tmp_path / "v2.bin", "--key", key, "--version", "2.0.0", "--out", repo,
               "--percent", "10", "--compress", "--from", tmp_path / "v1.bin")[0] == 0
    before = doc(repo / "stable.json")
    assert before["rollout"]["percent"] == 10 and {a["encoding"] for a in before["artifacts"]} == {"raw", "zlib", "delta"}
    rc, out, err = run(capsys, "release", tmp_path / "v2.bin", "--key", key, "--version", "2.0.0", "--out", repo)
    assert rc == 1 and "already publishes release 2.0.0" in err and "--replace" in err
    rc, out, err = run(capsys, "release", tmp_path / "v2.bin", "--key", key, "--version", "2.0.0", "--out", repo,
                       "--replace")
    assert rc == 0, err
    after = doc(repo / "stable.json")
    assert after["rollout"] == before["rollout"] and after["artifacts"] == before["artifacts"]  # stage and artifacts kept
    assert after["created"] > before["created"]  # newer, or devices would call it a replay
    rc, out, err = run(capsys, "release", tmp_path / "v1.bin", "--key", key, "--version", "1.0.0", "--out", repo)
    assert rc == 1 and "publishes 2.0.0, newer than 1.0.0" in err and "--allow-older" in err
    assert doc(repo / "stable.json")["version"] == "2.0.0"
    assert run(capsys, "release", tmp_path / "v1.bin", "--key", key, "--version", "1.0.0", "--out", repo,
               "--allow-older", "--halt")[0] == 0
    assert doc(repo / "stable.json")["halted"] is True


def test_an_image_that_fits_no_slot_is_refused(tmp_path, key, capsys):
    (tmp_path / "big.bin").write_bytes(images.app_image("2.0.0", size=1600 * 1024, seed=3))
    rc, out, err = run(capsys, "release", tmp_path / "big.bin", "--key", key, "--version", "2.0.0",
                       "--out", tmp_path / "repo")
    assert rc == 1 and "fits no OTA slot of partitions.csv (largest 1572864 bytes)" in err, err
    assert not (tmp_path / "repo" / "stable.json").exists()


def test_widening_needs_reports(tmp_path, key, capsys):
    (tmp_path / "v2.bin").write_bytes(V2)
    repo = tmp_path / "repo"
    assert run(capsys, "release", tmp_path / "v2.bin", "--key", key, "--version", "2.0.0", "--out", repo,
               "--percent", "10")[0] == 0
    rc, out, err = run(capsys, "rollout", repo / "stable.json", "--key", key, "--percent", "50")
    assert rc == 1 and "only 0 device(s) reported attempting 2.0.0, 1 needed" in err, err
    assert run(capsys, "rollout", repo / "stable.json", "--key", key, "--percent", "50", "--min-reports", "0")[0] == 0


def test_port_names_as_mpremote_and_esptool_take_them(monkeypatch):
    assert ports.candidates("u0") == ["/dev/ttyUSB0"] and ports.candidates("a1") == ["/dev/ttyACM1"]
    assert ports.candidates("c3") == ["COM3"] and ports.candidates("port:u0") == ["u0"]
    assert ports.candidates("/dev/pts/4") == ["/dev/pts/4"]

    class P:
        def __init__(self, device, vid, serial_number=None):
            self.device, self.vid, self.pid, self.serial_number = device, vid, vid, serial_number

        def __lt__(self, other):
            return self.device < other.device

    import serial.tools.list_ports

    monkeypatch.setattr(serial.tools.list_ports, "comports",
                        lambda: [P("/dev/ttyS0", None), P("/dev/ttyUSB1", 0x10C4, "A1"), P("/dev/ttyACM0", 0x303A, "B2")])
    assert ports.candidates("auto") == ["/dev/ttyACM0", "/dev/ttyUSB1"]  # USB ports only, as mpremote
    assert ports.candidates("id:A1") == ["/dev/ttyUSB1"]


def test_the_server_answers_at_its_url(tmp_path, key):
    (tmp_path / "repo").mkdir()
    from ota_tool import release

    release.build(V2, "2.0.0", [keys.load_private(key)], str(tmp_path / "repo"), percent=25)
    srv = server.start_server(str(tmp_path / "repo"), tls_dir=str(tmp_path / "tls"))
    try:
        ctx = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(srv.ca_der))
        page = urllib.request.urlopen(srv.url, context=ctx).read().decode()
        assert '<a href="stable.json">stable.json</a>' in page and "25%" in page and 'href="status"' in page
    finally:
        srv.stop()

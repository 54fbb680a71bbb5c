"""`ota-tool keygen`, `release` and `verify`: the commands a release manager runs."""
import json
import os
import stat

import pytest

from ota import manifest
from ota.trust import Trust
from ota_tool import cli, images, keys

V1 = images.app_image("1.0.0", size=24 * 1024, seed=1)
V2 = images.app_image("2.0.0", size=24 * 1024, seed=1, base=V1, changes=3)


def run(capsys, *argv):
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.fixture
def key(tmp_path, capsys):
    path = str(tmp_path / "release.pem")
    assert run(capsys, "keygen", path)[0] == 0
    return path


def test_keygen_private_key_is_0600_and_never_overwritten(tmp_path, key, capsys):
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    pub = open(key + ".pub").read().strip()
    assert pub == keys.public_text(keys.load_private(key)) and len(pub) == 44  # base64 of 32 bytes
    before = open(key, "rb").read()
    rc, _, err = run(capsys, "keygen", key)
    assert rc == 1 and "refusing to overwrite" in err and open(key, "rb").read() == before
    rc, out, _ = run(capsys, "keygen", key, "--force", "--json")
    assert rc == 0 and open(key, "rb").read() != before and json.loads(out)["public_key"] == \
        open(key + ".pub").read().strip()


def test_keygen_with_a_passphrase(tmp_path, capsys, monkeypatch):
    path = str(tmp_path / "locked.pem")
    monkeypatch.setenv("OTA_PASS", "correct horse")
    assert run(capsys, "keygen", path, "--passphrase-env", "OTA_PASS")[0] == 0
    assert b"ENCRYPTED" in open(path, "rb").read()
    fw = tmp_path / "v1.bin"
    fw.write_bytes(V1)
    out_dir = str(tmp_path / "repo")
    rc, _, err = run(capsys, "release", str(fw), "--key", path, "--version", "1.0.0", "--out", out_dir)
    assert rc == 1 and "passphrase" in err  # a locked key without its passphrase: a clear error
    assert run(capsys, "release", str(fw), "--key", path, "--passphrase-env", "OTA_PASS", "--version", "1.0.0",
               "--out", out_dir)[0] == 0


def test_release_then_verify_as_the_device_does(tmp_path, key, capsys):
    (tmp_path / "v1.bin").write_bytes(V1)
    (tmp_path / "v2.bin").write_bytes(V2)
    repo = tmp_path / "repo"
    rc, out, err = run(capsys, "release", str(tmp_path / "v2.bin"), "--key", key, "--version", "2.0.0",
                       "--out", str(repo), "--compress", "--from", str(tmp_path / "v1.bin"), "--security-version",
                       "2", "--requires-idf", "5.2.0", "--json")
    assert rc == 0 and err == "", err
    info = json.loads(out)
    assert info["ok"] and info["chip"] == "esp32" and info["warnings"] == []
    # --from publishes today's delta and the relocation-aware one (smaller here); verify applies both
    assert [a["encoding"] for a in info["artifacts"]] == ["raw", "zlib", "delta", "rdelta"]
    m = manifest.load((repo / "stable.json").read_bytes(), Trust.from_list([keys.load_public(key + ".pub")]))
    assert (m.version, m.security_version, m.chips, m.requires) == ("2.0.0", 2, ["esp32"], {"idf": "5.2.0"})
    rc, out, _ = run(capsys, "verify", str(repo / "stable.json"), "--pubkey", key + ".pub", "--json")
    assert rc == 0 and json.loads(out)["version"] == "2.0.0"
    # another key: refused; a swapped artifact: refused, and the message names it
    other = str(tmp_path / "other.pem")
    run(capsys, "keygen", other)
    assert run(capsys, "verify", str(repo / "stable.json"), "--pubkey", other + ".pub")[0] == 1
    raw = repo / info["artifacts"][0]["url"]
    raw.write_bytes(V1 + bytes(len(V2) - len(V1)) if len(V2) >= len(V1) else V1[:len(V2)])
    rc, _, err = run(capsys, "verify", str(repo / "stable.json"), "--pubkey", key + ".pub")
    assert rc == 1 and info["artifacts"][0]["url"] in err


@pytest.mark.parametrize("image,version,expected", [
    (images.merged_firmware(images.bootloader_image(), b"\xaa\x50" + bytes(30), V1), "1.0.0", "micropython.bin"),
    (b"\x00" * 4096, "1.0.0", "no ESP32 image magic (0xE9)"),
    (V1, "1.0", "version"),
    (V1, "v1.0.0", "version"),
])
def test_release_refuses_what_a_device_would_refuse(tmp_path, key, capsys, image, version, expected):
    fw = tmp_path / "firmware.bin"
    fw.write_bytes(image)
    rc, _, err = run(capsys, "release", str(fw), "--key", key, "--version", version, "--out", str(tmp_path / "repo"))
    assert rc == 1 and expected in err, err
    assert not (tmp_path / "repo" / "stable.json").exists()


def test_release_warns_when_the_descriptor_says_another_version(tmp_path, key, capsys):
    # a board flashed with this image by cable takes the descriptor's version for the running release
    fw = tmp_path / "v1.bin"
    fw.write_bytes(V1)  # descriptor: 1.0.0
    rc, _, err = run(capsys, "release", str(fw), "--key", key, "--version", "1.0.1", "--out", str(tmp_path / "r"))
    assert rc == 0 and "warning: the image's app descriptor says version 1.0.0" in err
    tagged = tmp_path / "tagged.bin"
    tagged.write_bytes(images.app_image("v1.24.1", size=24 * 1024))  # MicroPython's own: no warning
    rc, _, err = run(capsys, "release", str(tagged), "--key", key, "--version", "1.0.2", "--out", str(tmp_path / "r"))
    assert rc == 0 and "warning" not in err

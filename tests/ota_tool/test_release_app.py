"""`ota-tool release-app` (app bundles and configuration documents), `ota-tool verify` on them, and
`ota-tool release --app` (a firmware naming the app that must come with it). The documents are
checked with the device's own parser (ota.bundle, ota.manifest)."""
import hashlib
import json
import os

import pytest

from ota import bundle, manifest
from ota.trust import Trust
from ota_tool import app_release, cli, images, keys
from ota_tool.errors import ToolError


@pytest.fixture
def key(tmp_path):
    path = str(tmp_path / "release.pem")
    keys.generate(path)
    return path


def app_dir(tmp_path):
    src = tmp_path / "app"
    (src / "lib" / "__pycache__").mkdir(parents=True)
    (src / "main.py").write_text("import lib.util\n")
    (src / "lib" / "util.py").write_text("VALUE = 1\n" * 200)
    (src / "lib" / "__init__.py").write_text("")
    (src / "lib" / "__pycache__" / "util.cpython-311.pyc").write_bytes(b"junk")
    (src / ".git").mkdir()
    (src / ".git" / "HEAD").write_text("ref")
    (src / "notes.tmp").write_text("scratch")
    return src


def run(*argv):
    return cli.main(list(argv))


def test_release_app_and_verify(tmp_path, key, capsys):
    src = app_dir(tmp_path)
    repo = tmp_path / "repo"
    assert run("release-app", str(src), "--key", key, "--version", "1.2.0", "--compress", "--out", str(repo),
               "--requires-firmware", ">=1.0.0,<2.0.0", "--exclude", "*.tmp", "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert [f["path"] for f in info["files"]] == ["lib/__init__.py", "lib/util.py", "main.py"]
    assert info["manifest"].endswith("stable-app.json") and info["download_bytes"] < info["bytes"]
    blob = (repo / "stable-app.json").read_bytes()
    b = bundle.load(blob, Trust.from_list([keys.load_public(key + ".pub")]))
    assert (b.type, b.version, b.root, b.requires, b.wbits) == ("app", "1.2.0", "app", ">=1.0.0,<2.0.0", 12)
    util = next(e for e in info["files"] if e["path"] == "lib/util.py")
    assert (repo / ("sha256-%s.file" % util["sha256"][:16])).exists()
    zart = repo / ("sha256-%s.zlib" % util["zsha256"][:16])  # named by its own bytes, as every artifact
    assert zart.stat().st_size == util["zsize"] and hashlib.sha256(zart.read_bytes()).hexdigest() == util["zsha256"]
    assert run("verify", str(repo / "stable-app.json"), "--pubkey", key + ".pub", "--json") == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] and rep["type"] == "app" and len(rep["files"]) == 3
    # a changed artifact is caught, as a device would catch it
    art = zart
    art.write_bytes(art.read_bytes()[:-1] + b"\0")
    assert run("verify", str(repo / "stable-app.json"), "--pubkey", key + ".pub") == 1
    assert "zlib" in capsys.readouterr().err


def test_release_app_refuses_what_a_device_would(tmp_path, key, capsys):
    src = app_dir(tmp_path)
    (src / "bad name.py").write_text("x")
    assert run("release-app", str(src), "--key", key, "--version", "1.0.0", "--out", str(tmp_path / "r")) == 1
    assert "bad name.py" in capsys.readouterr().err
    (src / "bad name.py").unlink()
    os.symlink("/etc/hostname", str(src / "link.py"))
    assert run("release-app", str(src), "--key", key, "--version", "1.0.0", "--out", str(tmp_path / "r")) == 1
    assert "symbolic link" in capsys.readouterr().err
    (src / "link.py").unlink()
    os.symlink(str(tmp_path), str(src / "linkdir"))
    assert run("release-app", str(src), "--key", key, "--version", "1.0.0", "--out", str(tmp_path / "r")) == 1
    assert "symbolic link" in capsys.readouterr().err
    (src / "linkdir").unlink()
    assert run("release-app", str(src), "--key", key, "--version", "1.0", "--out", str(tmp_path / "r")) == 1
    assert run("release-app", str(src), "--key", key, "--version", "1.0.0", "--root", "../x", "--out",
               str(tmp_path / "r")) == 1
    assert run("release-app", str(src), "--key", key, "--version", "1.0.0", "--requires-firmware", "1.2",
               "--out", str(tmp_path / "r")) == 1
    with pytest.raises(ToolError):
        app_release.build([("a.py", b"1"), ("A.py", b"2")], "1.0.0", [keys.load_private(key)], str(tmp_path / "r"))
    with pytest.raises(ToolError):
        app_release.build([("f%d" % i, b"") for i in range(65)], "1.0.0", [keys.load_private(key)], str(tmp_path / "r"))
    assert not (tmp_path / "r" / "stable-app.json").exists()


def test_config_document(tmp_path, key, capsys):
    settings = tmp_path / "settings.json"
    settings.write_text('{"interval": 30, "name": "pump-7"}')
    repo = tmp_path / "repo"
    assert run("release-app", "--config", str(settings), "--key", key, "--version", "1.0.0", "--out", str(repo),
               "--config-path", "conf/settings.json") == 0
    b = bundle.load((repo / "stable-config.json").read_bytes(), Trust.from_list([keys.load_public(key + ".pub")]))
    assert b.type == "config" and [f[0] for f in b.files] == ["conf/settings.json"]
    assert run("verify", str(repo / "stable-config.json"), "--pubkey", key + ".pub") == 0
    assert "OK: config 1.0.0" in capsys.readouterr().out
    settings.write_text("not json")
    assert run("release-app", "--config", str(settings), "--key", key, "--version", "1.0.1", "--out", str(repo)) == 1
    assert run("release-app", str(tmp_path), "--config", str(settings), "--key", key, "--version", "1.0.1") == 2


def test_firmware_release_names_its_app(tmp_path, key, capsys):
    src = app_dir(tmp_path)
    repo = tmp_path / "repo"
    assert run("release-app", str(src), "--key", key, "--version", "2.0.0", "--out", str(repo),
               "--requires-firmware", ">=2.0.0") == 0
    fw = tmp_path / "fw.bin"
    fw.write_bytes(images.app_image("2.0.0", size=24 * 1024))
    assert run("release", str(fw), "--key", key, "--version", "2.0.0", "--out", str(repo),
               "--app", str(repo / "stable-app.json")) == 0
    t = Trust.from_list([keys.load_public(key + ".pub")])
    m = manifest.load((repo / "stable.json").read_bytes(), t)
    app_doc = manifest.split((repo / "stable-app.json").read_bytes())[1]
    import hashlib

    assert m.app == {"url": "stable-app.json", "sha256": hashlib.sha256(app_doc).digest(), "version": "2.0.0"}
    assert run("verify", str(repo / "stable.json"), "--pubkey", key + ".pub") == 0
    capsys.readouterr()
    # an app document outside the repository, or not an app document, is refused
    assert run("release", str(fw), "--key", key, "--version", "2.0.1", "--out", str(tmp_path / "other"),
               "--app", str(repo / "stable-app.json")) == 1
    assert run("release", str(fw), "--key", key, "--version", "2.0.1", "--out", str(repo),
               "--app", str(repo / "stable.json")) == 1

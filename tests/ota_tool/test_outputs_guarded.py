"""What ota-tool writes never destroys what the user has (issue 16's review): a key list never goes
over a manifest, a signing key or an image; keygen checks both of its files before writing either;
`-o` never names the command's own input; a release devices would refuse is never published. And
the files ota-tool itself writes are read back by it (inspect of `flash --merge-only` output)."""
import os
import sqlite3

import pytest

from ota_tool import cli, images, keys, release
from ota_tool.errors import ToolError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(capsys, *argv):
    try:
        rc = cli.main([str(a) for a in argv])
    except SystemExit as e:  # argparse: a bad command line
        rc = e.code
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err and "internal error" not in out + err, out + err
    return rc, out, err


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A signing key and a published release 2.0.0 in tmp_path/repo (the working directory)."""
    monkeypatch.chdir(tmp_path)
    key = keys.generate("release.pem")
    (tmp_path / "micropython.bin").write_bytes(images.app_image("2.0.0", size=64 * 1024, seed=2))
    release.build((tmp_path / "micropython.bin").read_bytes(), "2.0.0", [key], "repo")
    return tmp_path


@pytest.mark.parametrize("target, what", [("repo/stable.json", "a signed firmware manifest (version 2.0.0)"),
                                          ("release.pem", "the signing key (--sign-with)"),
                                          ("micropython.bin", "an ESP32 app image")])
def test_keylist_refuses_to_write_over_anything_but_a_key_list(repo, capsys, target, what):
    before = (repo / target).read_bytes()
    rc, out, err = run(capsys, "keylist", target, "--sign-with", "release.pem", "--key", "release.pem.pub")
    assert rc == 1 and what in err and "hint: " in err, err
    assert (repo / target).read_bytes() == before


def test_keylist_replaces_a_key_list_with_a_newer_version(repo, capsys):
    assert run(capsys, "keylist", "repo/keys.json", "--sign-with", "release.pem", "--key", "release.pem.pub")[0] == 0
    rc, out, err = run(capsys, "keylist", "repo/keys.json", "--sign-with", "release.pem", "--key", "release.pem.pub")
    assert rc == 0 and "key list v2" in out, out + err
    (repo / "new.json").write_bytes(b"")  # an empty file (mktemp) is no loss
    assert run(capsys, "keylist", "new.json", "--sign-with", "release.pem", "--key", "release.pem.pub")[0] == 0


def test_keygen_checks_both_files_before_writing_either(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "k.pem.pub").mkdir()
    rc, out, err = run(capsys, "keygen", "k.pem")
    assert rc == 1 and "k.pem.pub is a folder" in err, err
    assert not (tmp_path / "k.pem").exists()  # no orphan private key
    (tmp_path / "k.pem.pub").rmdir()
    (tmp_path / "k.pem.pub").write_text("the public key devices trust today\n")
    rc, out, err = run(capsys, "keygen", "k.pem")
    assert rc == 1 and "k.pem.pub exists" in err and "--force" in err, err
    assert (tmp_path / "k.pem.pub").read_text() == "the public key devices trust today\n"
    assert not (tmp_path / "k.pem").exists()
    assert run(capsys, "keygen", "k.pem", "--force")[0] == 0
    assert (tmp_path / "k.pem.pub").read_text().strip() == keys.public_text(keys.load_private("k.pem"))


@pytest.mark.parametrize("wbits", ["8", "0", "16", "-1"])
def test_release_takes_only_the_zlib_windows_devices_inflate(repo, capsys, wbits):
    before = (repo / "repo" / "stable.json").read_bytes()
    (repo / "v3.bin").write_bytes(images.app_image("3.0.0", size=64 * 1024, seed=3))
    rc, out, err = run(capsys, "release", "v3.bin", "--key", "release.pem", "--version", "3.0.0", "--compress",
                       "--wbits", wbits)
    assert rc == 2 and "9..15" in err, err
    assert (repo / "repo" / "stable.json").read_bytes() == before


def test_release_library_signs_nothing_a_device_refuses(repo):
    """The library's own guard (a caller past the command line): checked with ota.manifest first,
    nothing written, not even the artifacts."""
    before = sorted(os.listdir(repo / "repo"))
    with pytest.raises(ToolError) as e:
        release.build(images.app_image("3.0.0", size=64 * 1024, seed=3), "3.0.0", [keys.load_private("release.pem")],
                      "repo", compress=True, wbits=8)
    assert "9..15" in str(e.value)
    release_doc = {"type": "firmware", "chips": ["esp32"]}  # refused by the device's parser: no version, no image
    with pytest.raises(ToolError) as e:
        release.check_signed(keys.sign(release_doc, [keys.load_private("release.pem")]),
                             [keys.load_private("release.pem")])
    assert "devices would refuse this release (bad_manifest)" in str(e.value)
    assert sorted(os.listdir(repo / "repo")) == before


def test_verify_hint_names_the_key_only_for_key_refusals(repo, capsys):
    doc = {"type": "firmware", "version": "2.0.0"}  # signed by the right key, refused by the parser
    (repo / "repo" / "odd.json").write_bytes(keys.sign(doc, [keys.load_private("release.pem")]))
    rc, out, err = run(capsys, "verify", "repo/odd.json", "--pubkey", "release.pem.pub")
    assert rc == 1 and "bad_manifest" in err and "--pubkey" not in err.split("hint:")[1], err
    other = keys.generate("other.pem")
    assert other
    rc, out, err = run(capsys, "verify", "repo/stable.json", "--pubkey", "other.pem.pub")
    assert rc == 1 and "check --pubkey" in err, err


def test_output_never_overwrites_the_input(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    csv = open(os.path.join(ROOT, "partitions.csv"), "rb").read()
    (tmp_path / "p.csv").write_bytes(csv)
    rc, out, err = run(capsys, "partitions", "p.csv", "-o", "p.csv")
    assert rc == 2 and "is also the input" in err, err
    assert (tmp_path / "p.csv").read_bytes() == csv
    app = images.app_image("2.0.0", size=64 * 1024, seed=2)
    (tmp_path / "micropython.bin").write_bytes(app)
    (tmp_path / "bl.bin").write_bytes(images.bootloader_image())
    for target in ("micropython.bin", "bl.bin", "./micropython.bin"):
        rc, out, err = run(capsys, "flash", "--firmware", "micropython.bin", "--bootloader", "bl.bin", "--merge-only",
                           "-o", target)
        assert rc == 2 and "is also the input" in err, err
    assert (tmp_path / "micropython.bin").read_bytes() == app


def merge_only(d, capsys):
    """full.bin: what `flash --merge-only` writes without --pad (it ends after the app)."""
    (d / "micropython.bin").write_bytes(images.app_image("2.0.0", size=64 * 1024, seed=2))
    (d / "bl.bin").write_bytes(images.bootloader_image())
    assert run(capsys, "flash", "--firmware", "micropython.bin", "--bootloader", "bl.bin", "--merge-only",
               "-o", "full.bin")[0] == 0


def test_inspect_reads_the_merge_only_image_ota_tool_writes(tmp_path, monkeypatch, capsys):
    """Without --pad the image ends after the app: the flash size comes from the bootloader header."""
    monkeypatch.chdir(tmp_path)
    merge_only(tmp_path, capsys)
    size = os.path.getsize("full.bin")
    rc, out, err = run(capsys, "inspect", "full.bin")
    assert rc == 0, out + err
    assert out.splitlines()[0] == ("full.bin: 4 MiB flash (by the bootloader header at 0x1000; the file holds its "
                                   "first %d bytes, the rest is read as erased), chip esp32" % size), out
    assert "ota_0    valid" in out and "version '2.0.0'" in out and "next boot: ota_0" in out, out
    assert os.path.getsize("full.bin") == size  # read, never changed


@pytest.mark.parametrize("data, kind", [(b"", "an empty file"), (os.urandom(252), "binary data"),
                                        (b"\xff" * 4096, "binary data")])
def test_sim_port_refuses_a_file_that_is_not_a_whole_flash(tmp_path, monkeypatch, capsys, data, kind):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "board.bin").write_bytes(data)
    rc, out, err = run(capsys, "sim-port", "--flash", "board.bin", "--fs", "fs")
    assert rc == 1 and ("is %s, not a whole-flash image" % kind) in err and "sim-port --new" in err, err


def test_sim_port_refuses_a_whole_flash_image_cut_short(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    merge_only(tmp_path, capsys)
    rc, out, err = run(capsys, "sim-port", "--flash", "full.bin", "--fs", "fs")
    assert rc == 1 and "shorter than the 4 MiB flash" in err and "--pad" in err, err


def test_fleet_names_a_report_row_it_cannot_read(tmp_path, monkeypatch, capsys):
    from ota_tool import reports

    monkeypatch.chdir(tmp_path)
    reports.ReportStore("r.sqlite").close()  # the schema ota-tool serve makes
    db = sqlite3.connect("r.sqlite")
    db.execute("INSERT INTO reports (received, device_id, event, raw) VALUES ('yesterday', 'd1', 'confirmed', '{}')")
    db.commit()
    db.close()
    rc, out, err = run(capsys, "fleet", "--reports", "r.sqlite")
    assert rc == 1 and "report 1 has received 'yesterday'" in err and "hint: " in err, err

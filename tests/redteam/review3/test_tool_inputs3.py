"""Review 3: ota-tool commands with wrong inputs (run in-process through ota_tool.cli.main)."""
import os

from ota_tool import cli, images, keys
from tests.simhelpers import SMALL


def _tool(*argv):
    return cli.main([str(a) for a in argv])


def test_release_channel_cannot_write_the_manifest_outside_the_repository(tmp_path):
    """README, "Distribution at fleet scale": "a release repository is immutable content-addressed
    artifacts plus one small signed manifest per channel", `release` writes "signed release in a
    repository folder", and --help: "--channel CHANNEL  channel, also the manifest name
    <channel>.json".

    What happens: the channel is used as a file name unchecked. `--channel ../escape` exits 0 and
    writes the signed manifest to ../escape.json, OUTSIDE the repository folder, where it names
    artifacts (sha256-....bin, relative to itself) that are not next to it: a release that no
    device can install and `ota-tool verify` refuses. (`--channel "a b"` likewise gives a manifest
    whose URL the device refuses, bad_url.) Expected: exit 1 with an error, nothing written."""
    key = str(tmp_path / "k.pem")
    keys.generate(key)
    app = tmp_path / "app.bin"
    app.write_bytes(images.app_image("1.0.0", size=SMALL, seed=1))
    repo = tmp_path / "work" / "repo"
    rc = _tool("release", app, "--key", key, "--version", "1.0.0", "-o", repo, "--channel", "../escape")
    escaped = tmp_path / "work" / "escape.json"
    assert not escaped.exists(), "rc=%d: the manifest was written outside the repository: %s" % (rc, escaped)
    assert rc == 1


def test_release_app_refuses_a_changed_app_under_a_published_version(tmp_path):
    """README, host tool table: `release` "refuses ... the version already published (`--replace`
    keeps its stage and artifacts) and an older one (`--allow-older`)"; lib/ota/bundle.py: "A
    document's version must rise ("up_to_date"; "downgrade" unless allow_downgrade)".

    What happens: `ota-tool release-app` signs a CHANGED app under the version already published
    (1.0.0 again, other bytes) and exits 0 without a word: every device that installed the first
    1.0.0 answers up_to_date for ever (Bundle versions compare equal) while new devices get the
    new bytes, two different apps named 1.0.0 in one fleet. Expected: refused (exit 1) as
    `release` refuses it."""
    key = str(tmp_path / "k.pem")
    keys.generate(key)
    src = tmp_path / "app"
    src.mkdir()
    (src / "app.py").write_text("VERSION = 1\n")
    repo = tmp_path / "repo"
    assert _tool("release-app", src, "--key", key, "--version", "1.0.0", "-o", repo) == 0
    (src / "app.py").write_text("VERSION = 2  # a fix\n")
    rc = _tool("release-app", src, "--key", key, "--version", "1.0.0", "-o", repo)
    assert rc == 1, "a changed app was signed again as 1.0.0 (exit %d): devices on 1.0.0 never get it" % rc
    # Fixed: the rule of `release` (ota_tool.release.version_guard), with its two ways through.
    assert _tool("release-app", src, "--key", key, "--version", "1.0.0", "-o", repo, "--replace") == 0
    assert _tool("release-app", src, "--key", key, "--version", "0.9.0", "-o", repo) == 1  # devices: downgrade
    assert _tool("release-app", src, "--key", key, "--version", "0.9.0", "-o", repo, "--allow-older") == 0
    assert _tool("release-app", src, "--key", key, "--version", "1.1.0", "-o", repo) == 0


def test_channel_and_document_names_are_one_file_in_the_repository(tmp_path, capsys):
    key = str(tmp_path / "k.pem")
    keys.generate(key)
    app = tmp_path / "app.bin"
    app.write_bytes(images.app_image("1.0.0", size=SMALL, seed=1))
    src = tmp_path / "app"
    src.mkdir()
    (src / "app.py").write_text("VERSION = 1\n")
    repo = tmp_path / "repo"
    for bad in ("../escape", "a b", ".hidden", "-x", "a/b", "x" * 65, ""):
        assert _tool("release", app, "--key", key, "--version", "1.0.0", "-o", repo, "--channel=" + bad) == 1, bad
        assert _tool("release-app", src, "--key", key, "--version", "1.0.0", "-o", repo, "--channel=" + bad) == 1, bad
        assert "is not a name" in capsys.readouterr().err
    assert _tool("release-app", src, "--key", key, "--version", "1.0.0", "-o", repo, "--name", "../x.json") == 1
    assert not os.path.exists(tmp_path / "x.json") and not os.path.exists(tmp_path / "escape.json")
    assert not repo.exists() or not os.listdir(repo)  # refused before anything was written
    assert _tool("release", app, "--key", key, "--version", "1.0.0", "-o", repo, "--channel", "beta-2.x") == 0
    assert (repo / "beta-2.x.json").exists()

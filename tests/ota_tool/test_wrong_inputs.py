"""Every ota-tool command fed wrong inputs: wrong kinds of files, missing files and folders,
unreachable services, bad values, a closed pipe. The README's promise holds for each: exit 1 with an
`error:` line saying what happened and a `hint:` line (2 for a bad command line), never a traceback,
never an internal error. The catalogue's size and its tracebacks are printed (pytest -s)."""
import json
import os
import subprocess
import sys

import pytest

from ota_tool import cli, images, keys, partitions, release, sim

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP_SIZE = 24 * 1024


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One of each kind of file a user may hand a command by mistake, and a few right ones."""
    d = tmp_path_factory.mktemp("kinds")
    f = {}

    def put(name, data):
        p = d / name
        p.write_bytes(data if isinstance(data, bytes) else data.encode())
        f[name] = str(p)

    app = images.app_image("1.0.0", size=APP_SIZE, seed=3)
    table = partitions.to_binary(partitions.parse_csv(sim.default_partitions_csv()))
    boot = images.bootloader_image()
    put("app.bin", app)
    put("firmware.bin", images.merged_firmware(boot, table, app))
    put("short-firmware.bin", images.merged_firmware(boot, table, app)[:0x9000])
    put("firmware.elf", b"\x7fELF\x02\x01\x01" + bytes(200))
    put("table.bin", table)
    put("empty.bin", b"")
    put("zeros.bin", bytes(4096))
    put("notes.txt", "just some text\n")
    put("settings.json", '{"interval": 60}')
    put("bad.json", '{"interval": ')
    put("list.json", "[1, 2]")
    put("big.bin", images.app_image("9.0.0", size=1700 * 1024, seed=9))
    key = keys.generate(str(d / "release.pem"))
    f["key"] = str(d / "release.pem")
    f["pub"] = str(d / "release.pem.pub")
    repo = d / "repo"
    release.build(app, "1.0.0", [key], str(repo))
    f["repo"] = str(repo)
    f["manifest"] = str(repo / "stable.json")
    broken = d / "broken-repo"
    release.build(app, "1.0.0", [key], str(broken))
    for n in os.listdir(broken):
        if n.endswith(".bin"):
            os.remove(broken / n)
    f["broken_manifest"] = str(broken / "stable.json")
    dev = sim.create(str(d / "device.bin"), app)
    from ota import state

    dev.run(lambda: state.set_json("cur", {"version": "1.0.0", "sha": "\u00e9\xff"}))  # NVS blobs after an update
    f["device"] = dev.path
    f["dir"] = str(d / "a-folder")
    os.mkdir(f["dir"])
    f["empty"] = str(d / "empty-folder")
    os.mkdir(f["empty"])
    f["missing"] = str(d / "no-such-file.bin")
    f["nodir"] = str(d / "no-such-dir" / "out.bin")
    return f


def cases(f):
    """(argv, exit status) — status 1: the operation failed; 2: a bad command line."""
    m, k = f["manifest"], f["key"]
    port = ["--port", f["missing"], "--timeout", "2"]
    return [
        # inspect: only a whole-flash image
        (["inspect", f["app.bin"]], 1), (["inspect", f["firmware.elf"]], 1), (["inspect", f["short-firmware.bin"]], 1),
        (["inspect", f["notes.txt"]], 1), (["inspect", f["missing"]], 1), (["inspect", f["dir"]], 1),
        (["inspect", f["empty.bin"]], 1), (["inspect", f["firmware.bin"], "--json"], 1),
        (["inspect", f["device"]], 0), (["inspect", f["device"], "--json"], 0),  # NVS blobs shown, as text and JSON
        # partitions: a CSV
        (["partitions", f["table.bin"]], 0), (["partitions", f["firmware.elf"]], 1), (["partitions", f["app.bin"]], 1),
        (["partitions", f["missing"]], 1), (["partitions", f["dir"]], 1), (["partitions", f["empty.bin"]], 1),
        (["partitions", os.path.join(ROOT, "partitions.csv"), "-o", f["nodir"]], 1),
        (["partitions", os.path.join(ROOT, "partitions.csv"), "--flash-size", "huge"], 2),
        (["partitions", f["table.bin"], "-o", f["table.bin"]], 2),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--compress", "--wbits", "8", "--out", f["dir"]], 2),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--compress", "--wbits", "16", "--out", f["dir"]], 2),
        # release
        (["release", f["firmware.elf"], "--key", k, "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["firmware.bin"], "--key", k, "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["short-firmware.bin"], "--key", k, "--version", "2.0.0", "--extract-app", "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--extract-app", "--out", f["dir"]], 1),
        (["release", f["table.bin"], "--key", k, "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["notes.txt"], "--key", k, "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["missing"], "--key", k, "--version", "2.0.0"], 1),
        (["release", f["dir"], "--key", k, "--version", "2.0.0"], 1),
        (["release", f["app.bin"], "--key", f["pub"], "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", f["notes.txt"], "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", f["missing"], "--version", "2.0.0", "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "two", "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "1.0.0", "--out", f["repo"]], 1),  # already published
        (["release", f["app.bin"], "--key", k, "--version", "0.9.0", "--out", f["repo"]], 1),  # older
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--percent", "200", "--out", f["dir"]], 2),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--salt", "s", "--out", f["dir"]], 2),
        (["release", f["big.bin"], "--key", k, "--version", "2.0.0", "--out", f["dir"]], 1),  # fits no slot
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--partitions", f["firmware.elf"], "--out",
          f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--out", f["app.bin"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--from", f["firmware.elf"], "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--app", f["manifest"], "--out", f["dir"]], 1),
        (["release", f["app.bin"], "--key", k, "--version", "2.0.0", "--passphrase-env", "OTA_NO_SUCH_VAR",
          "--out", f["dir"]], 1),
        # release-app
        (["release-app", f["missing"], "--key", k, "--version", "1.0.0", "--out", f["dir"]], 1),
        (["release-app", "--config", f["bad.json"], "--key", k, "--version", "1.0.0", "--out", f["dir"]], 1),
        (["release-app", "--config", f["list.json"], "--key", k, "--version", "1.0.0", "--out", f["dir"]], 1),
        (["release-app", "--config", f["app.bin"], "--key", k, "--version", "1.0.0", "--out", f["dir"]], 1),
        (["release-app", f["empty"], "--key", k, "--version", "1.0.0", "--out", f["dir"]], 1),  # nothing to pack
        # verify
        (["verify", f["app.bin"], "--pubkey", f["pub"]], 1), (["verify", f["firmware.elf"], "--pubkey", f["pub"]], 1),
        (["verify", f["missing"], "--pubkey", f["pub"]], 1), (["verify", f["dir"], "--pubkey", f["pub"]], 1),
        (["verify", m, "--pubkey", f["notes.txt"]], 1), (["verify", m, "--pubkey", f["missing"]], 1),
        (["verify", m, "--pubkey", k], 0), (["verify", f["broken_manifest"], "--pubkey", f["pub"]], 1),
        (["verify", m, "--pubkey", f["pub"], "--threshold", "0"], 2), (["verify", m, "--pubkey", f["pub"], "--threshold", "2"], 1),
        # keygen, keylist
        (["keygen", f["nodir"]], 1), (["keygen", k], 1), (["keygen", f["dir"]], 1),
        (["keygen", f["dir"] + "/x.pem", "--passphrase-env", "OTA_NO_SUCH_VAR"], 1),
        (["keylist", f["nodir"], "--sign-with", k, "--key", f["pub"], "--version", "2"], 1),
        (["keylist", f["dir"] + "/keys.json", "--sign-with", f["missing"], "--key", f["pub"], "--version", "2"], 1),
        (["keylist", f["dir"] + "/keys.json", "--sign-with", k, "--key", f["app.bin"], "--version", "2"], 1),
        (["keylist", m, "--sign-with", k, "--key", f["pub"]], 1), (["keylist", k, "--sign-with", k, "--key", f["pub"]], 1),
        (["keylist", f["app.bin"], "--sign-with", k, "--key", f["pub"]], 1), (["keylist", f["dir"], "--sign-with", k, "--key", f["pub"]], 1),
        # rollout, fleet
        (["rollout", f["missing"], "--key", k, "--percent", "10"], 1),
        (["rollout", f["app.bin"], "--key", k, "--percent", "10"], 1),
        (["rollout", m, "--key", f["pub"], "--percent", "10"], 1),
        (["rollout", m, "--key", k, "--percent", "150"], 2),
        (["rollout", m, "--key", k, "--percent", "10", "--reports", f["missing"]], 1),
        (["rollout", m, "--key", k, "--percent", "100"], 0),  # 100 -> 100: nothing to widen
        (["fleet", f["missing"]], 1), (["fleet", "--reports", f["missing"]], 1), (["fleet", "--reports", f["app.bin"]], 1),
        (["fleet", "--reports", f["dir"]], 1), (["fleet", "--reports", f["empty.bin"]], 1), (["fleet"], 1),
        # serve (fails before it serves)
        (["serve", f["missing"]], 1), (["serve", f["app.bin"]], 1), (["serve", f["repo"], "--port", "70000"], 2),
        (["serve", f["repo"], "--tls-dir", f["app.bin"], "--port", "0"], 1),
        (["serve", f["repo"], "--reports", f["dir"], "--port", "0"], 1),
        (["serve", f["repo"], "--mirror", "ftp://x", "--port", "0"], 1),
        # publish: not a folder, bad URL, an endpoint that does not answer
        (["publish", f["missing"], "s3://bucket/p"], 1), (["publish", f["repo"], "http://bucket/p"], 1),
        (["publish", f["repo"], "s3://B!/p"], 1),
        (["publish", f["repo"], "s3://bucket/p", "--endpoint-url", "http://127.0.0.1:9", "--region", "us-east-1"], 1),
        (["publish", f["repo"], "s3://bucket/p", "--pubkey", f["notes.txt"]], 1),
        # notify: a broker that does not answer, wrong URLs and files
        (["notify", "mqtts://127.0.0.1:9", "--channel", "stable", "--timeout", "2"], 1),
        (["notify", "http://x", "--channel", "stable"], 1), (["notify", "mqtts://x", "--channel", "a/b"], 1),
        (["notify", "mqtts://127.0.0.1:9", "--channel", "stable", "--ca", f["missing"]], 1),
        (["notify", "mqtts://127.0.0.1:9", "--channel", "stable", "--ca", f["app.bin"]], 1),
        # flash (no board needed to refuse these)
        (["flash", "--firmware", f["firmware.elf"], "--merge-only", "-o", f["dir"] + "/full.bin"], 1),
        (["flash", "--firmware", f["firmware.bin"], "--merge-only", "-o", f["dir"] + "/full.bin"], 1),
        (["flash", "--firmware", f["missing"], "--merge-only", "-o", f["dir"] + "/full.bin"], 1),
        (["flash", "--firmware", f["app.bin"], "--merge-only"], 1),
        (["flash", "--firmware", f["app.bin"], "--bootloader", f["app.bin"], "--merge-only", "-o", f["nodir"]], 1),
        (["flash", "--firmware", f["app.bin"], "--partitions", f["firmware.elf"], "--merge-only", "-o",
          f["dir"] + "/full.bin"], 1),
        (["flash", "--firmware", f["app.bin"], "--port", f["missing"]], 1),
        # deploy and device: no board on the port, wrong settings files
        (["deploy"] + port, 1), (["deploy", "--config", f["bad.json"]] + port, 1),
        (["deploy", "--config", f["app.bin"]] + port, 1), (["deploy", "--keys", f["app.bin"]] + port, 1),
        (["deploy", "--ca", f["app.bin"]] + port, 1), (["deploy", "--ca", f["missing"]] + port, 1),
        (["deploy", "--wifi", "lab", "--wifi-password-env", "OTA_NO_SUCH_VAR"] + port, 1),
        (["deploy", "--wifi", "x" * 40, "--wifi-password-env", "HOME"] + port, 1),
        (["deploy", "--server", "ftp://x"] + port, 1), (["deploy", "--port", "/dev/null", "--timeout", "1"], 1),
        (["device", "status"] + port, 1), (["device", "update"] + port, 1), (["device", "log"] + port, 1),
        (["device", "config", "get"] + port, 1), (["device", "reset"] + port, 1),
        (["device", "status", "--port", f["dir"], "--timeout", "1"], 1),
        (["device", "status", "--port", "/dev/null", "--timeout", "1"], 1),
        (["device", "status", "--timeout", "0"] + port[:2], 2),
        # sim-port and demo (they fail before they run)
        (["sim-port", "--flash", f["missing"], "--fs", f["dir"]], 1),
        (["sim-port", "--flash", f["app.bin"], "--fs", f["dir"]], 1),
        (["sim-port", "--flash", f["empty.bin"], "--fs", f["dir"]], 1), (["sim-port", "--flash", f["zeros.bin"], "--fs", f["dir"]], 1),
        (["sim-port", "--flash", f["manifest"], "--fs", f["dir"]], 1),
        (["sim-port", "--flash", f["device"], "--fs", f["app.bin"]], 1),
        (["sim-port", "--flash", f["device"], "--fs", f["dir"], "--heap", "lots"], 2),
        (["sim-port", "--flash", f["device"], "--fs", f["dir"], "--new"], 1),
        (["demo", "--workdir", f["app.bin"]], 1), (["demo", "--heap", "lots", "--workdir", f["dir"]], 2),
        (["demo", "--size", "-5", "--workdir", f["dir"]], 2), (["demo", "--size", "100", "--workdir", f["dir"]], 2),
        # bad command lines
        (["no-such-command"], 2), (["inspect"], 2), (["release", f["app.bin"]], 2), (["device"], 2),
        (["rollout", m, "--key", k, "--percent", "ten"], 2),
    ]


def run(argv, capsys):
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own exit (status 2) for a bad command line
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def test_every_command_refuses_wrong_inputs_without_a_traceback(files, capsys, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.delenv("OTA_TOOL_DEBUG", raising=False)
    catalogue = cases(files)
    commands = {argv[0] for argv, _ in catalogue} & set(cli.COMMANDS)
    assert commands == set(cli.COMMANDS), "commands without wrong inputs: %s" % (set(cli.COMMANDS) - commands)
    problems = []
    tracebacks = 0
    for argv, want in catalogue:
        rc, out, err = run(argv, capsys)
        text = out + err
        if "Traceback" in text or "internal error" in text:
            tracebacks += 1
        if rc != want or "Traceback" in text or "internal error" in text or (
                want == 1 and not (("error: " in err and "hint: " in err) or ('"ok": false' in out and '"hint": "' in out))):
            problems.append("%s -> %s (want %s)\n%s" % (" ".join(argv), rc, want, text[-600:]))
    with capsys.disabled():
        print("\nwrong-input catalogue: %d cases over %d commands, %d tracebacks" % (
            len(catalogue), len(commands), tracebacks))
    assert not problems, "\n\n".join(problems)


def test_closed_pipes_end_quietly(files):
    """`ota-tool ... | head`: the reader goes away; no traceback, no 'Broken pipe' noise."""
    for argv in (["inspect", files["device"]], ["--help"], ["release", "--help"],
                 ["partitions", os.path.join(ROOT, "partitions.csv"), "--json"]):
        cmd = "%s -m ota_tool.cli %s | head -c 20 >/dev/null" % (sys.executable, " ".join(argv))
        res = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=60)
        assert "Traceback" not in res.stderr and "Broken pipe" not in res.stderr, (argv, res.stderr)

import json
import subprocess
import sys


from ota_tool import cli

COMMANDS = list(cli.COMMANDS)


def ota_tool(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "ota_tool.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_help_everywhere():
    res = ota_tool("--help")
    assert res.returncode == 0 and "COMMAND" in res.stdout
    for name in COMMANDS:
        res = ota_tool(name, "--help")
        assert res.returncode == 0, (name, res.stderr)
        assert "usage: ota-tool " + name in res.stdout


def test_every_option_has_help_and_ota_tool_alone_shows_it():
    import argparse

    missing = []
    todo = [("ota-tool", cli.build_parser())]
    while todo:
        name, parser = todo.pop()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                todo += [("%s %s" % (name, n), p) for n, p in action.choices.items()]
            elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)) and not action.help:
                missing.append("%s %s" % (name, "/".join(action.option_strings) or action.dest))
    assert not missing, missing
    res = ota_tool()
    assert res.returncode == 0 and "COMMAND" in res.stdout and "sim-port" in res.stdout


def test_usage_error_exit_code():
    assert ota_tool("no-such-command").returncode == 2
    assert ota_tool("inspect").returncode == 2


def test_partitions_command(tmp_path):
    out = tmp_path / "table.bin"
    res = ota_tool("partitions", "partitions.csv", "-o", str(out), "--json", cwd=cli.__file__.rsplit("/tools/", 1)[0])
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [p["name"] for p in data["partitions"]] == ["nvs", "otadata", "phy_init", "ota_0", "ota_1"]
    assert out.read_bytes()[:2] == b"\xaa\x50" and len(out.read_bytes()) == 0xC00


def test_partitions_error_names_row(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("otadata,data,ota,0xd000,0x2000\nota_0,app,ota_0,0x10000,0x100000\nota_1,app,ota_1,0x100000,0x100000\n")
    res = ota_tool("partitions", str(bad))
    assert res.returncode == 1
    assert "row 3 (ota_1) overlaps row 2 (ota_0)" in res.stderr and "hint:" in res.stderr


def test_inspect_missing_file():
    res = ota_tool("inspect", "/nonexistent.bin", "--json")
    assert res.returncode == 1
    assert json.loads(res.stdout)["ok"] is False

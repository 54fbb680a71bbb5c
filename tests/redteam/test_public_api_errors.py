"""Errors out of the public API: "Every refusal is an ota.OTAError with a stable reason code"
(README). ota.config.load() says an unreadable settings file "is an error (a device must not
silently lose its trusted keys)" and raises OTAError("bad_config") for invalid JSON; these cases
feed it a settings file that is not UTF-8 (a flipped bit in flash, a file written by hand).
The agent itself must outlive it (it judges the image on probation and refuses every check with
bad_config), or main.py would stop before the updater runs: Agent() constructs, its check says why."""
import pytest

from ota_tool import devfs, sim

from . import rt

BAD = b'{"source": "https://updates.example/\xff.json"}'
CODE = '''
import ota
for name in ("config.load", "update_now", "Agent"):
    try:
        if name == "config.load":
            import ota.config
            r = ota.config.load()
        elif name == "update_now":
            r = ota.update_now(reboot=False)
        else:
            import ota.agent
            a = ota.agent.Agent()
            r = a.config_error.reason
        print("RESULT", name, "ok", r)
    except ota.OTAError as e:
        print("RESULT", name, "OTAError", e.reason)
    except Exception as e:
        print("RESULT", name, "raised", type(e).__name__)
'''


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    devfs.put(w.dev.path, "ota.json", BAD)
    yield w
    w.close()


def _results(out):
    return {ln.split()[1]: " ".join(ln.split()[2:]) for ln in out.stdout.splitlines() if ln.startswith("RESULT")}


EXPECTED = {"config.load": "OTAError bad_config", "update_now": "ok refused", "Agent": "ok bad_config"}


def test_settings_not_utf8_cpython(world):
    out = world.dev.run_code(CODE)
    assert out.kind == sim.RETURNED, out
    res = _results(out)
    assert res == EXPECTED, res


@pytest.mark.micropython
def test_settings_not_utf8_micropython(world):
    out = world.dev.run_micropython(CODE, heap="256k")
    assert out.kind == sim.RETURNED, (out, out.stderr[-400:])
    res = _results(out)
    assert res == EXPECTED, res

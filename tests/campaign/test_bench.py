"""bench/campaign.py itself (the runner that prints the campaign's tables) stays runnable."""
import contextlib
import importlib.util
import io
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))


def test_runner_quick_network_json(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_campaign", os.path.join(HERE, "..", "..", "bench", "campaign.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        rc = bench.main(["--quick", "--only", "network", "--json", "--workdir", str(tmp_path)])
    figures = json.loads(out.getvalue())
    assert rc == 0 and figures["ok"] is True and figures["mode"] == "quick"
    assert figures["network"]["runs"] == 16 and figures["network"]["wrong_images"] == 0

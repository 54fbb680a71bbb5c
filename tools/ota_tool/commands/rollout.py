"""`ota-tool rollout`: widen, narrow, halt or resume the staged rollout of a published release."""
import json
import os

HELP = "change the rollout percentage of a release, or halt/resume it (signs the manifest again)"
DESCRIPTION = """Change the staged rollout of the release in MANIFEST (e.g. repo/stable.json) and sign it again.
Devices install it only when hash(salt, device id) falls under the percentage, and never while it is
halted: this works with plain static hosting. The manifest is verified with the device's code first
and must be signed by exactly the key(s) given. Widening (a higher percentage, --resume, or a new
salt) is refused when the device reports show a failure + rollback rate above --max-failure-rate, or
fewer than --min-reports devices (default 1) attempted the release, unless --force. Narrowing and --halt always work.
Without a change, shows the current stage and the numbers the gate would use."""


def add_arguments(p):
    from .common import percent

    p.add_argument("manifest", metavar="MANIFEST", help="the signed manifest, e.g. repo/stable.json")
    p.add_argument("--key", action="append", required=True, metavar="KEY.pem",
                   help="the release's signing key (repeat for each signature the manifest carries)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key(s), from this environment variable")
    p.add_argument("--percent", type=percent, metavar="N", help="share of the devices that may install it, 0..100")
    p.add_argument("--salt", metavar="S", help="new salt (reshuffles which devices are in a stage; default: keep)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--halt", action="store_true", help="stop the release: no device starts it (always allowed)")
    g.add_argument("--resume", action="store_true", help="lift a halt (a widening: the gate applies)")
    p.add_argument("--reports", metavar="PATH", help="the reports database (default: MANIFEST's folder/../ota-reports.sqlite)")
    p.add_argument("--max-failure-rate", type=float, default=0.05, metavar="R",
                   help="refuse to widen above this (failed + rolled back) / attempted rate (default 0.05)")
    p.add_argument("--min-reports", type=int, default=1, metavar="N",
                   help="refuse to widen until at least N devices attempted the release (default 1: widening needs "
                        "reports; 0 widens blind)")
    p.add_argument("--force", action="store_true", help="widen even when the reports say not to")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import keys, reports, rollout
    from ..errors import ToolError

    if not 0 <= args.max_failure_rate <= 1:
        raise ToolError("--max-failure-rate must be 0..1 (0.05 is 5%)", "e.g. --max-failure-rate 0.02", exit_code=2)
    if args.min_reports < 0:
        raise ToolError("--min-reports must be 0 or more", "e.g. --min-reports 10", exit_code=2)
    from .common import passphrase as env_passphrase

    passphrase = env_passphrase(args.passphrase_env)
    signers = []
    for path in args.key:
        k = keys.load_private(path, passphrase)
        if keys.key_id(k) not in [keys.key_id(s) for s in signers]:
            signers.append(k)
    if args.reports:
        if not os.path.exists(args.reports):
            raise ToolError("no reports at %s" % args.reports, "check --reports, or leave it out")
        reports_path = args.reports
    else:
        reports_path = reports.default_path(os.path.dirname(os.path.abspath(args.manifest)))
    halt = True if args.halt else (False if args.resume else None)
    res = rollout.change(args.manifest, signers, percent=args.percent, salt=args.salt, halt=halt,
                         reports_path=reports_path, max_failure_rate=args.max_failure_rate,
                         min_reports=args.min_reports, force=args.force)
    if args.json:
        print(json.dumps(dict(res, ok=True), sort_keys=True))
        return 0
    print(describe(res))
    return 0


def _stage(s):
    text = "halted" if s["halted"] else "%d%%" % s["percent"]
    if s["halted"] and s["percent"] != 100:
        text += " (%d%% when resumed)" % s["percent"]
    return text


def describe(res):
    from ..reports import _rate

    b, a, g = res["before"], res["after"], res["gate"]
    lines = []
    if res["written"]:
        lines.append("%s %s: %s -> %s (changed: %s); signed again by %s" % (
            res["manifest"], res["version"], _stage(b), _stage(a), ", ".join(res["changed"]), ", ".join(res["signed_by"])))
    else:
        lines.append("%s %s: %s (nothing changed)" % (res["manifest"], res["version"], _stage(a)))
    if a["salt"]:
        lines.append("salt: %s%s" % (a["salt"], " (was %s)" % b["salt"] if b["salt"] and b["salt"] != a["salt"] else ""))
    lines.append("expected share: %d%% of the eligible devices on channel %s" % (a["effective"], res["channel"]))
    if res["known_devices"]:
        lines.append("  of the %d devices known from the reports (same or unknown channel), %d fall under it" % (
            res["known_devices"], res["selected_devices"]))
    if g["reports"]:
        lines.append("reports for %s: %d attempted, %d confirmed, %d pending, %d failed, %d rolled back: "
                     "failure rate %s (max %s)" % (res["version"], g["attempted"], g["confirmed"], g["pending"],
                                                   g["failed"], g["rolled_back"], _rate(g["failure_rate"]),
                                                   _rate(g["max_failure_rate"])))
    else:
        lines.append("no device reports found: widening was not checked against any")
    if g["forced"]:
        lines.append("WARNING: widened with --force although %s" % g["why"])
    return "\n".join(lines)

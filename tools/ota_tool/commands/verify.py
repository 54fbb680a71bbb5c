import json

HELP = "verify a release (or an app/config bundle) exactly as a device would (same code), and check every artifact"


def add_arguments(p):
    from .common import positive_int

    p.add_argument("manifest", metavar="MANIFEST", help="the signed manifest, e.g. repo/stable.json")
    p.add_argument("--pubkey", action="append", required=True, help="trusted public key: .pub file, base64 text or PEM (repeatable)")
    p.add_argument("--threshold", type=positive_int, default=1, help="signatures required (default 1)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import keys, release

    from .. import app_release, filekinds

    pubs = [keys.load_public(k) for k in args.pubkey]
    blob = app_release.read_document(args.manifest)
    kind = app_release.document_type(blob)
    if kind in ("app", "config"):
        return _bundle(args, app_release.verify(args.manifest, pubs, args.threshold))
    if kind != "firmware":
        filekinds.refuse(args.manifest, "manifest", filekinds.kind(blob[:filekinds.SNIFF], len(blob)))
    report = release.verify(args.manifest, pubs, args.threshold)
    if args.json:
        print(json.dumps(dict(report, ok=True)))
    else:
        print("OK: release %s, channel %s, for %s, signed by %s" % (
            report["version"], report["channel"], "/".join(report["chips"]), ", ".join(report["signed_by"])))
        for a in report["artifacts"]:
            print("  %-6s %-32s %9d bytes  %s" % (a["encoding"], a["url"], a["size"], a["checked"]))
    return 0


def _bundle(args, report):
    if args.json:
        print(json.dumps(dict(report, ok=True)))
    else:
        print("OK: %s %s for /%s%s, signed by %s" % (
            report["type"], report["version"], report["root"],
            ", firmware " + report["requires_firmware"] if report["requires_firmware"] else "", ", ".join(report["signed_by"])))
        for f in report["files"]:
            print("  %-40s %8d bytes  %s%s" % (f["path"], f["size"], f["artifact"], "  (+ zlib %d)" % f["zsize"] if "zsize" in f else ""))
    return 0

"""`ota-tool fleet`: the fleet by release, from the device status reports."""
import json

HELP = "the fleet from the device reports: per release, devices running it, pending, failed, rolled back; and each device"
DESCRIPTION = """Summarise the device status reports that `ota-tool serve` stored: per release, the devices
running it, and of those that attempted it how many are downloading, pending (installed, not yet
confirmed), confirmed, failed, rolled back, with the failure rate (failed + rolled back) / attempted.
A device counts once per release, by its most recent attempt at it (see ota_tool.reports.summarize).
Then the devices, most recently heard from first: id (what `ota-tool notify --device` takes), the
release it runs, its app bundle, its state (latest event) and when it was last heard from."""


def add_arguments(p):
    p.add_argument("release_dir", metavar="RELEASE_DIR", nargs="?",
                   help="the folder `ota-tool serve` serves: its reports are RELEASE_DIR/../ota-reports.sqlite")
    p.add_argument("--reports", metavar="PATH", help="the reports database (instead of RELEASE_DIR)")
    p.add_argument("--release", action="append", metavar="VERSION", help="only this release (repeatable)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import reports
    from ..errors import ToolError

    import os

    if args.reports:
        path = args.reports
    elif args.release_dir:
        if not os.path.isdir(args.release_dir):
            raise ToolError("%s is not a folder" % args.release_dir,
                            "give the folder ota-tool serve serves (its reports are next to it), or --reports PATH")
        path = reports.default_path(args.release_dir)
    else:
        raise ToolError("which reports?", "give RELEASE_DIR or --reports PATH")
    summary = reports.summary_from_path(path, args.release)
    if args.json:
        print(json.dumps(dict(summary, ok=True, path=path), sort_keys=True))
    else:
        print(reports.format_table(summary))
    return 0

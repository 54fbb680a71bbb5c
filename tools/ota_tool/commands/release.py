import json
import os
import sys

HELP = "make a signed release of an app image (micropython.bin) in a repository folder"
DESCRIPTION = (HELP + ". Validates the image (a merged firmware.bin is refused, or taken apart with "
               "--extract-app), checks it fits the OTA slots of the layout, writes content-addressed artifacts "
               "(raw, optionally zlib and delta patches) and then the signed <channel>.json manifest. A release can "
               "start staged (--percent) or halted (--halt): widen it later with ota-tool rollout. Releasing the "
               "version already published needs --replace, an older one --allow-older.")


def add_arguments(p):
    from .common import percent, wbits

    p.add_argument("image", metavar="FIRMWARE.bin", help="the app image (micropython.bin)")
    p.add_argument("--extract-app", action="store_true",
                   help="FIRMWARE.bin is MicroPython's merged firmware.bin (or a whole-flash image): take the app "
                        "out of it with its own partition table, and check it")
    p.add_argument("--key", action="append", required=True, metavar="KEY.pem", help="signing key (repeat for several signatures)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key(s), from this environment variable")
    p.add_argument("--version", required=True, help="release version, MAJOR.MINOR.PATCH[-PRE]")
    p.add_argument("--security-version", type=int, default=0, help="anti-rollback counter (default 0): devices refuse lower ones after confirming this")
    p.add_argument("--out", "-o", default="repo", help="repository folder (default ./repo)")
    p.add_argument("--channel", default="stable", help="channel, also the manifest name <channel>.json (default stable)")
    p.add_argument("--board", default="*", help="board id the image is for (default: any)")
    p.add_argument("--compress", action="store_true", help="also publish a zlib artifact")
    p.add_argument("--wbits", type=wbits, default=12, metavar="9..15",
                   help="zlib window bits for compressed/delta artifacts, 9..15 (default 12: a 4 KiB window on the device)")
    p.add_argument("--from", dest="bases", action="append", default=[], metavar="OLD.bin", help="also publish a delta patch from this older image (repeatable)")
    p.add_argument("--percent", type=percent, metavar="N",
                   help="start staged: only N%% of the devices (0..100) may install it (ota-tool rollout widens it)")
    p.add_argument("--salt", metavar="S", help="with --percent: the salt that picks the devices of a stage (default: random)")
    p.add_argument("--halt", action="store_true", help="publish it halted: no device starts it until ota-tool rollout --resume")
    p.add_argument("--replace", action="store_true",
                   help="release the version that is already published again (its stage and the artifacts that "
                        "still fit the image are kept)")
    p.add_argument("--allow-older", action="store_true",
                   help="publish a version older than the one published (devices install it only with allow_downgrade)")
    p.add_argument("--partitions", metavar="CSV|BIN",
                   help="the devices' partition table, CSV or binary: the image must fit its OTA slots "
                        "(default: partitions.csv)")
    p.add_argument("--requires-micropython", metavar="X.Y.Z", help="devices must run at least this MicroPython version")
    p.add_argument("--requires-idf", metavar="X.Y.Z", help="devices must run at least this ESP-IDF version")
    p.add_argument("--expires-days", type=float, help="manifest expiry (judged only by devices with a trusted clock)")
    p.add_argument("--commit", metavar="REV", help="source revision to record in the manifest's build info")
    p.add_argument("--app", metavar="APP.json", help="the signed app document (ota-tool release-app, in the same --out "
                   "folder) that must come with this firmware: devices stage it first and switch to it at the first boot")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    import time

    from ota.errors import OTAError

    from .. import keys, release
    from ..errors import ToolError
    from ..partitions import PartitionTableError

    from .common import passphrase as env_passphrase

    passphrase = env_passphrase(args.passphrase_env)
    signers = [keys.load_private(k, passphrase) for k in args.key]

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            from ..files import os_error

            raise os_error(e, path)

    def app_image(path):
        from .. import filekinds

        data = read(path)
        got = filekinds.kind(data[:filekinds.SNIFF], len(data))
        if args.extract_app and path == args.image:
            app, where = filekinds.extract_app(data)
            print("%s: %s" % (path, where), file=sys.stderr if args.json else sys.stdout)
            return app
        if got not in ("an ESP32 app image", "binary data") and not got.startswith("an ESP image"):
            # (the device's own check below words what is wrong with an image, or with unknown bytes)
            hint = None
            if "merged" in got or "whole-flash" in got:
                hint = "use micropython.bin from the build folder, or add --extract-app to take the app out of it"
            if hint is None:
                filekinds.refuse(path, "app", got)
            raise ToolError("%s is %s, not an ESP32 app image" % (path, got), hint)
        return data

    layout = None
    if args.partitions:
        from ..flashing import load_table

        layout = load_table(args.partitions)[0]  # CSV or binary, checked

    requires = {}
    if args.requires_micropython:
        requires["micropython"] = args.requires_micropython
    if args.requires_idf:
        requires["idf"] = args.requires_idf
    expires = time.time() + args.expires_days * 86400 if args.expires_days else None
    extra = None
    if args.app:
        from .. import app_release

        extra = {"app": app_release.app_reference(args.app, args.out)}
    try:
        info = release.build(app_image(args.image), args.version, signers, args.out, channel=args.channel,
                             security_version=args.security_version, board=args.board, compress=args.compress,
                             wbits=args.wbits, bases=[app_image(b) for b in args.bases], requires=requires or None,
                             expires=expires, commit=args.commit, extra=extra, percent=args.percent, salt=args.salt,
                             halt=args.halt, replace=args.replace, allow_older=args.allow_older, layout=layout)
    except ToolError:
        raise
    except OTAError as e:  # the device-side checks of the version string, etc.
        raise ToolError(e.message or e.reason, "the device would refuse it too")
    except PartitionTableError as e:
        raise ToolError("partitions.csv: %s" % e, "fix that row")
    for w in info["warnings"]:
        print("warning: " + w, file=sys.stderr)
    if args.json:
        print(json.dumps(dict(info, ok=True)))
    else:
        st = info["stage"]
        print("release %s (%s) -> %s: %s%s" % (
            info["version"], info["chip"], info["manifest"],
            "halted" if st["halted"] else "live to every device" if st["percent"] == 100 and not st["salt"] else
            "live to %d%% of the devices%s" % (st["percent"], " (salt %s)" % st["salt"] if st["salt"] else ""),
            "; replaces the %s published before" % info["replaced"] if info["replaced"] else ""))
        for a in info["artifacts"]:
            print("  %-6s %-32s %9d bytes" % (a["encoding"], a["url"], a["size"]))
        for s in info["skipped_deltas"]:
            print("  delta from %s… not published: %d bytes is not smaller enough than the full image" % (
                s["base_sha256"][:12], s["size"]))
    return 0

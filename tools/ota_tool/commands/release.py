import json
import os
import sys

HELP = "make a signed release of an app image (micropython.bin) in a repository folder"
DESCRIPTION = (HELP + ". Validates the image (refuses a merged firmware.bin), writes content-addressed "
               "artifacts (raw, optionally zlib and delta patches) and then the signed <channel>.json manifest.")


def add_arguments(p):
    p.add_argument("image", metavar="FIRMWARE.bin", help="the app image (micropython.bin)")
    p.add_argument("--key", action="append", required=True, metavar="KEY.pem", help="signing key (repeat for several signatures)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key(s), from this environment variable")
    p.add_argument("--version", required=True, help="release version, MAJOR.MINOR.PATCH[-PRE]")
    p.add_argument("--security-version", type=int, default=0, help="anti-rollback counter (default 0): devices refuse lower ones after confirming this")
    p.add_argument("--out", "-o", default="repo", help="repository folder (default ./repo)")
    p.add_argument("--channel", default="stable", help="channel, also the manifest name <channel>.json (default stable)")
    p.add_argument("--board", default="*", help="board id the image is for (default: any)")
    p.add_argument("--compress", action="store_true", help="also publish a zlib artifact")
    p.add_argument("--wbits", type=int, default=12, help="zlib window bits for compressed/delta artifacts (default 12: 4 KiB on the device)")
    p.add_argument("--from", dest="bases", action="append", default=[], metavar="OLD.bin", help="also publish a delta patch from this older image (repeatable)")
    p.add_argument("--requires-micropython", metavar="X.Y.Z")
    p.add_argument("--requires-idf", metavar="X.Y.Z")
    p.add_argument("--expires-days", type=float, help="manifest expiry (judged only by devices with a trusted clock)")
    p.add_argument("--commit", help="source revision to record")
    p.add_argument("--app", metavar="APP.json", help="the signed app document (ota-tool release-app, in the same --out "
                   "folder) that must come with this firmware: devices stage it first and switch to it at the first boot")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    import time

    from .. import keys, release
    from ..errors import ToolError

    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None
    signers = [keys.load_private(k, passphrase) for k in args.key]

    def read(path):
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise ToolError("cannot read %s: %s" % (path, e.strerror))

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
        info = release.build(read(args.image), args.version, signers, args.out, channel=args.channel,
                             security_version=args.security_version, board=args.board, compress=args.compress,
                             wbits=args.wbits, bases=[read(b) for b in args.bases], requires=requires or None,
                             expires=expires, commit=args.commit, extra=extra)
    except ToolError:
        raise
    except Exception as e:  # OTAError from the device-side checks of the version string, etc.
        raise ToolError(str(e))
    for w in info["warnings"]:
        print("warning: " + w, file=sys.stderr)
    if args.json:
        print(json.dumps(dict(info, ok=True)))
    else:
        print("release %s (%s) -> %s" % (info["version"], info["chip"], info["manifest"]))
        for a in info["artifacts"]:
            print("  %-6s %-32s %9d bytes" % (a["encoding"], a["url"], a["size"]))
        for s in info["skipped_deltas"]:
            print("  delta from %s… not published: %d bytes is not smaller enough than the full image" % (
                s["base_sha256"][:12], s["size"]))
    return 0

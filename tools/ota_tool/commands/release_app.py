import json
import os

HELP = "make a signed app bundle (the Python files under an app root) or a configuration document"
DESCRIPTION = (HELP + ". Writes every file as a content-addressed artifact (sha256-….file, and .zlib with "
               "--compress) and then the signed <channel>-app.json (or <channel>-config.json with --config). "
               "Devices follow it through ota.json's app_source / config_source, download only the files that "
               "changed, and switch the whole tree atomically (lib/ota/bundle.py).")


def add_arguments(p):
    p.add_argument("folder", nargs="?", metavar="DIR", help="the files to pack (their paths below DIR become their "
                   "paths below the app root); hidden files and __pycache__ are left out")
    p.add_argument("--config", metavar="FILE", help="make a configuration document of this JSON settings file instead")
    p.add_argument("--config-path", metavar="PATH", help="its path in the app root (default: the file's name)")
    p.add_argument("--key", action="append", required=True, metavar="KEY.pem", help="signing key (repeat for several signatures)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the key(s), from this environment variable")
    p.add_argument("--version", required=True, help="bundle version, MAJOR.MINOR.PATCH[-PRE]")
    p.add_argument("--root", default="app", help="the app root on the device, one folder name (default app); never "
                   "lib, where ota-tool deploy puts the updater")
    p.add_argument("--compress", action="store_true", help="also publish zlib artifacts (when smaller)")
    p.add_argument("--requires-firmware", metavar="SPEC", help='firmware versions it runs on, e.g. ">=1.2.0" or ">=1.2.0,<2.0.0"')
    p.add_argument("--exclude", action="append", default=[], metavar="PATTERN", help="leave out paths matching this glob (repeatable)")
    p.add_argument("--out", "-o", default="repo", help="repository folder (default ./repo)")
    p.add_argument("--channel", default="stable", help="channel (default stable): the document is <channel>-app.json")
    p.add_argument("--name", help="document file name instead of <channel>-app.json / <channel>-config.json")
    p.add_argument("--replace", action="store_true", help="sign again the version already published under this name "
                   "(devices that installed it keep theirs: release a new version to reach them)")
    p.add_argument("--allow-older", action="store_true", help="publish a version older than the one published "
                   "(devices install it only with allow_downgrade)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import app_release, keys
    from ..errors import ToolError

    if bool(args.folder) == bool(args.config):
        raise ToolError("give either a folder (an app bundle) or --config FILE (a configuration document)", "e.g. ota-tool release-app app/ --key KEY.pem --version 1.0.0", exit_code=2)
    from .common import passphrase as env_passphrase

    passphrase = env_passphrase(args.passphrase_env)
    signers = [keys.load_private(k, passphrase) for k in args.key]
    kw = dict(root=args.root, channel=args.channel, compress=args.compress,
              requires_firmware=args.requires_firmware, name=args.name, replace=args.replace, allow_older=args.allow_older)
    if args.config:
        info = app_release.build_config(args.config, args.version, signers, args.out, path=args.config_path, **kw)
    else:
        info = app_release.build_app(args.folder, args.version, signers, args.out, exclude=args.exclude, **kw)
    if args.json:
        print(json.dumps(dict(info, ok=True)))
    else:
        print("%s %s (/%s, %d files, %d bytes, %d to download) -> %s" % (
            info["type"], info["version"], info["root"], len(info["files"]), info["bytes"], info["download_bytes"],
            info["manifest"]))
        for e in info["files"]:
            print("  %-40s %8d bytes%s" % (e["path"], e["size"], "  zlib %d" % e["zsize"] if "zsize" in e else ""))
    return 0

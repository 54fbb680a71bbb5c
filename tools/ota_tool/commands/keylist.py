import json
import os

HELP = "sign a key list that rotates or revokes the keys devices trust (keys.json next to the manifest)"
DESCRIPTION = (HELP + ". Devices accept it only when it is signed by keys they trust now (as many as "
               "their threshold) and its version is higher than the last one they applied.")


def add_arguments(p):
    p.add_argument("output", metavar="KEYS.json", help="where to write the signed list, e.g. repo/keys.json")
    p.add_argument("--sign-with", action="append", required=True, metavar="KEY.pem",
                   help="private key the devices trust now (repeat to meet their threshold)")
    p.add_argument("--key", action="append", required=True, metavar="PUB[=NAME]",
                   help="a public key to trust from now on (.pub file or base64), optionally named")
    p.add_argument("--revoke", action="append", default=[], metavar="KEY_ID", help="key id no longer trusted")
    p.add_argument("--threshold", type=int, default=1, help="signatures required by devices from now on")
    p.add_argument("--version", type=int, help="list version, higher than the previous list's (default: the list "
                   "at KEYS.json plus one, or 1)")
    p.add_argument("--allow-lower-version", action="store_true",
                   help="write a version not above the list at KEYS.json (devices that applied that one ignore it)")
    p.add_argument("--passphrase-env", metavar="VAR", help="passphrase of the signing key(s), from this environment variable")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import files, keys
    from ..errors import ToolError

    from ..filekinds import check_replaceable

    # only a key list may be replaced (a manifest, a key or an image never): before anything is read
    check_replaceable(args.output, "a key list", keeps=("a signed key list",),
                      protect=dict((k, "the signing key (--sign-with)") for k in args.sign_with))
    passphrase = os.environ.get(args.passphrase_env) if args.passphrase_env else None
    signers = [keys.load_private(k, passphrase) for k in args.sign_with]
    pubs = []
    for spec in args.key:
        path, _, name = spec.partition("=")
        raw = keys.load_public(path)
        pubs.append((name or os.path.basename(path).split(".")[0] or keys.device_trust.key_id(raw), raw))
    before = keys.key_list_version(args.output)
    version = args.version if args.version is not None else (before or 0) + 1
    if before is not None and version <= before and not args.allow_lower_version:
        raise ToolError("%s holds key list version %d: version %d is not newer, devices that applied %d would ignore it"
                        % (args.output, before, version, before),
                        "use --version %d (or leave --version out), or --allow-lower-version to write it anyway"
                        % (before + 1))
    if version < 1:
        raise ToolError("key list version %d: versions start at 1" % version)
    revoked = keys.revocations(args.revoke)
    blob = keys.key_list(pubs, version, signers, args.threshold, revoked)
    files.write_atomic(args.output, blob)  # a server may be serving this folder
    info = {"ok": True, "output": args.output, "version": version, "previous_version": before,
            "keys": [{"name": n, "key_id": keys.device_trust.key_id(r)} for n, r in pubs],
            "revoked": revoked, "signed_by": [keys.key_id(k) for k in signers]}
    if args.json:
        print(json.dumps(info))
    else:
        print("key list v%d -> %s: trust %s%s; signed by %s" % (
            version, args.output, ", ".join("%s (%s)" % (k["name"], k["key_id"]) for k in info["keys"]),
            "; revoke " + ", ".join(revoked) if revoked else "", ", ".join(info["signed_by"])))
    return 0

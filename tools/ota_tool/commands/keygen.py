import json
import os

HELP = "create an Ed25519 release signing key (private PEM 0600 + .pub for the device config)"


def add_arguments(p):
    p.add_argument("key", metavar="KEY.pem", help="private key file to create")
    p.add_argument("--passphrase-env", metavar="VAR", help="encrypt the key with the passphrase in this environment variable")
    p.add_argument("--force", action="store_true", help="overwrite an existing key file")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import keys
    from ..errors import ToolError

    passphrase = None
    if args.passphrase_env:
        passphrase = os.environ.get(args.passphrase_env)
        if not passphrase:
            raise ToolError("environment variable %s is empty" % args.passphrase_env)
    key = keys.generate(args.key, passphrase, args.force)
    info = {"ok": True, "private_key": args.key, "public_key_file": args.key + ".pub",
            "public_key": keys.public_text(key), "key_id": keys.key_id(key)}
    if args.json:
        print(json.dumps(info))
    else:
        print("private key: %s (mode 0600; keep it offline, never on a device)" % args.key)
        print("public key:  %s  (key id %s)" % (info["public_key"], info["key_id"]))
        print("put the public key in the device configuration's trusted keys; it is also in %s" % info["public_key_file"])
    return 0

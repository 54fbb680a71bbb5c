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

    from .common import passphrase as env_passphrase

    passphrase = env_passphrase(args.passphrase_env)
    if args.passphrase_env and not passphrase:
        raise ToolError("the environment variable %s is empty" % args.passphrase_env,
                        "put the passphrase in it, or leave --passphrase-env out for an unencrypted key")
    if os.path.isdir(args.key):
        raise ToolError("%s is a folder" % args.key, "give the key's file name, e.g. %s" % os.path.join(args.key, "release.pem"))
    try:
        key = keys.generate(args.key, passphrase, args.force)
    except OSError as e:
        from ..files import os_error

        raise os_error(e, args.key, "write")
    info = {"ok": True, "private_key": args.key, "public_key_file": args.key + ".pub",
            "public_key": keys.public_text(key), "key_id": keys.key_id(key)}
    if args.json:
        print(json.dumps(info))
    else:
        print("private key: %s (mode 0600; keep it offline, never on a device)" % args.key)
        print("public key:  %s  (key id %s)" % (info["public_key"], info["key_id"]))
        print("put the public key in the device configuration's trusted keys; it is also in %s" % info["public_key_file"])
    return 0

"""`ota-tool`: a thin command line over the host library. One module per command in commands/."""
import argparse
import importlib
import json
import sys

from . import __version__
from .errors import ToolError

# Command name -> module in ota_tool.commands. Each module has HELP, add_arguments(parser), run(args).
COMMANDS = [
    "demo",
    "deploy",
    "device",
    "flash",
    "fleet",
    "inspect",
    "keygen",
    "keylist",
    "notify",
    "partitions",
    "publish",
    "release",
    "release-app",
    "rollout",
    "serve",
    "sim-port",
    "verify",
]

EXIT_OK = 0
EXIT_FAILED = 1  # the operation ran and failed (bad image, refused release, device error...)
EXIT_USAGE = 2  # argparse's own code for a bad command line


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ota-tool",
        description="Signed, fail-safe OTA updates for MicroPython on ESP32: host tool.",
    )
    parser.add_argument("--version", action="version", version="ota-tool " + __version__)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        mod = importlib.import_module("ota_tool.commands." + name.replace("-", "_"))
        p = sub.add_parser(name, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args._run(args) or EXIT_OK
    except ToolError as e:
        if getattr(args, "json", False):
            print(json.dumps({"ok": False, "error": e.message, "hint": e.hint}))
        else:
            print("error: " + e.message, file=sys.stderr)
            if e.hint:
                print("hint: " + e.hint, file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

"""`ota-tool`: a thin command line over the host library. One module per command in commands/."""
import argparse
import importlib
import json
import os
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
    try:
        return _main(argv)
    except BrokenPipeError:
        # The reader went away (ota-tool ... | head): stop quietly. Point stdout at /dev/null so
        # that Python's own flush at exit does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _main(argv):
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:
        parser.print_help()
        return EXIT_OK
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
    except BrokenPipeError:
        raise
    except Exception as e:  # a bug of ours: one line saying so, never a traceback
        if os.environ.get("OTA_TOOL_DEBUG"):
            raise
        print("error: internal error in ota-tool %s: %s: %s" % (args.command, type(e).__name__, e), file=sys.stderr)
        print("hint: this is a bug: run it again with OTA_TOOL_DEBUG=1 for the traceback, and report it",
              file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

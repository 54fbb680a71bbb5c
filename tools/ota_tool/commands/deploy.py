import json
import sys

from ..errors import ToolError

HELP = "copy the device library, boot.py/main.py, config, keys and CA to a MicroPython board (mpremote)"
DESCRIPTION = (
    HELP + ". lib/ota goes to /lib/ota as .mpy compiled for the board's own architecture (asked from the "
    "board) or as .py; --config to /ota.json, --keys to /ota_keys.txt, --ca to /ota_ca.der. Every file "
    "is written under a temporary name and renamed, then hashed on the board and compared.")


def add_arguments(p):
    p.add_argument("--port", "-p", required=True, help="serial port of the board (/dev/ttyUSB0, COM3, a pty)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--mpy", dest="mode", action="store_const", const="mpy",
                      help="send the library compiled with mpy-cross (default: less flash, less RAM to import)")
    mode.add_argument("--py", dest="mode", action="store_const", const="py", help="send the library as source")
    p.set_defaults(mode="mpy")
    p.add_argument("--config", metavar="FILE", help="device settings (JSON, see lib/ota/config.py) to install as ota.json")
    p.add_argument("--keys", nargs="+", default=[], metavar="KEY.pub",
                   help="trusted public keys (from ota-tool keygen), added to the settings' \"keys\" under "
                        "their file name (release.pem.pub -> release); without --config, to the board's ota.json")
    p.add_argument("--ca", metavar="FILE",
                   help="CA certificate of the update server (PEM or DER), written as DER where the settings' "
                        "\"ca\" says (default ota_ca.der)")
    p.add_argument("--board", metavar="NAME",
                   help="the board id releases for this hardware name (ota-tool release --board), stored as the "
                        "settings' \"board\": a device that does not know its board refuses board-specific releases")
    p.add_argument("--no-app", action="store_true", help="do not send boot.py and main.py")
    p.add_argument("--app-dir", metavar="DIR", help="where boot.py and main.py are (default: the project root)")
    p.add_argument("--resume", action="store_true",
                   help="do not soft-reset the board first (as mpremote resume: the REPL keeps its state)")
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout (progress goes to stderr)")


def run(args):
    from .. import deploy, mpdevice, remote

    out = sys.stderr if args.json else sys.stdout
    # Check every local file before touching the board.
    deploy.plan("py", None, args.config, args.keys, args.ca, not args.no_app, args.app_dir, board_config={},
                board=args.board)
    if args.mode == "mpy":
        deploy.mpy_cross_version()
    with mpdevice.Board(args.port, resume=args.resume, baud=args.baud) as board:
        name, version, mpy_word, machine, _ = board.implementation()
        if name != "micropython":
            raise ToolError("the board runs %s, not MicroPython" % name)
        current = remote.read_config(board) if (args.keys or args.ca or args.board) and not args.config else None
        items, arch = deploy.plan(args.mode, mpy_word, args.config, args.keys, args.ca, not args.no_app,
                                  args.app_dir, board_config=current, board=args.board)
        if not args.no_app and not any(i.what == "app" for i in items):
            print("note: no boot.py or main.py in %s: only the library and settings are sent"
                  % (args.app_dir or deploy.project_root()), file=out)
        print("%s: MicroPython %s (%s)%s; sending %d files" % (
            args.port, ".".join(map(str, version)), machine,
            ", .mpy for %s" % (arch or "bytecode only") if args.mode == "mpy" else "", len(items)), file=out)
        report = deploy.deploy(board, items, log=out)
    ota = report["ota"]
    print("verified %d files (%d bytes) by SHA-256 on the board%s" % (
        len(report["files"]), report["bytes"],
        "; removed " + ", ".join(report["removed"]) if report["removed"] else ""), file=out)
    print("the board imports ota %s from %s" % (ota.get("version"), ota.get("file")), file=out)
    if ota.get("warning"):
        print("warning: " + ota["warning"], file=out)
    if args.json:
        print(json.dumps(dict(report, ok=True, port=args.port, mode=args.mode, arch=arch)))
    return 0

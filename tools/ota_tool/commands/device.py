import argparse
import json
import sys

from ..errors import ToolError

FAILED = ("failed", "refused")  # what ota.update_now() returns when the check did not succeed

HELP = "talk to the ota library on a board over its REPL: status, update, log, config get|set|unset"
DESCRIPTION = (
    "Run the device library on a board through mpremote. status: ota.status() (slots, states, versions, "
    "rollback support). update: ota.update_now(), when the installed library has the update agent. "
    "log: the file ota.log on the board. config: read or edit ota.json on the board (written to "
    "ota.json.tmp, then renamed).")


def _common():
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--port", "-p", required=True, help="serial port of the board (/dev/ttyUSB0, COM3, a pty)")
    p.add_argument("--resume", action="store_true",
                   help="do not soft-reset the board first (as mpremote resume: the REPL keeps its state)")
    p.add_argument("--baud", type=int, default=115200, help="serial baud rate (default 115200)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def add_arguments(p):
    common = _common()
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("status", parents=[common], help="print ota.status()", description="print ota.status() of the board")
    sub.add_parser("update", parents=[common], help="run ota.update_now() on the board",
                   description="check for an update and install it now (ota.update_now()), output streamed")
    lg = sub.add_parser("log", parents=[common], help="print the board's ota.log", description="print ota.log from the board")
    lg.add_argument("--lines", "-n", type=int, metavar="N", help="only the last N lines")
    cfg = sub.add_parser("config", parents=[common], help="get, set or unset keys of ota.json on the board",
                         description="read or edit ota.json on the board. KEY may be dotted (keys.release). VALUE is "
                                     "parsed as JSON when it can be (3600, true, [\"a\"]), else taken as a string.")
    cfg.add_argument("op", choices=["get", "set", "unset"])
    cfg.add_argument("key", nargs="?", metavar="KEY")
    cfg.add_argument("value", nargs="?", metavar="VALUE")
    cfg.add_argument("--string", action="store_true", help="take VALUE as a string even if it parses as JSON")


def run(args):
    from .. import mpdevice, remote

    with mpdevice.Board(args.port, resume=args.resume, baud=args.baud) as board:
        if args.action == "status":
            st = remote.status(board)
            print(json.dumps(st) if args.json else remote.format_status(st))
            return 0
        if args.action == "update":
            return _update(board, args)
        if args.action == "log":
            text = remote.read_log(board)
            if text is not None and args.lines:
                text = "\n".join(text.splitlines()[-args.lines:]) + "\n"
            if args.json:
                print(json.dumps({"ok": True, "log": text}))
            elif text is None:
                print("no %s on the board (nothing logged yet, or the library does not log)" % remote.LOG_PATH,
                      file=sys.stderr)
            else:
                sys.stdout.write(text)
            return 0
        return _config(board, args)


def _update(board, args):
    from .. import remote

    if not remote.has_update_now(board):
        raise ToolError("the ota library on the board has no update_now(): the update agent is not installed",
                        "deploy a library with the agent (ota-tool deploy), or install an image by hand with "
                        "ota.install_image()")
    from ..mpdevice import RESULT

    out = sys.stderr if args.json else sys.stdout
    held = bytearray()

    def stream(b):
        # The board's output, line by line, without the line that carries the result.
        held.extend(b.replace(b"\x04", b""))
        while b"\n" in held:
            i = held.index(b"\n") + 1
            line = bytes(held[:i])
            del held[:i]
            if not line.startswith(RESULT.encode()):
                out.write(line.decode(errors="replace"))
        out.flush()

    kind, value = remote.update_now(board, stream)
    if held and not held.startswith(RESULT.encode()):
        out.write(held.decode(errors="replace") + "\n")
    if kind == "reset":
        print("\nthe board reset during the update (to boot the new image): check it with "
              "ota-tool device status once it is back", file=out)
    failed = value in FAILED
    if args.json:
        print(json.dumps({"ok": not failed, "outcome": kind, "result": value}))
    elif kind == "done":
        print("update_now() returned: %s" % json.dumps(value))
    return 1 if failed else 0


def _config(board, args):
    from .. import remote

    doc = remote.read_config(board)
    if args.op == "get":
        value = doc if args.key is None else remote.get_path(doc, args.key)
        if args.json or not isinstance(value, str):
            print(json.dumps(value, indent=None if args.json else 2, sort_keys=True))
        else:
            print(value)
        return 0
    if not args.key:
        raise ToolError("config %s needs a KEY" % args.op)
    if args.op == "set":
        if args.value is None:
            raise ToolError("config set needs a VALUE", "e.g. ota-tool device config set interval 3600 --port PORT")
        remote.set_path(doc, args.key, remote.parse_value(args.value, args.string))
    else:
        remote.unset_path(doc, args.key)
    remote.write_config(board, doc)
    if args.json:
        print(json.dumps({"ok": True, "config": doc}))
    else:
        print("%s: %s %s" % (remote.CONFIG_PATH, args.key, "= " + json.dumps(remote.get_path(doc, args.key))
                             if args.op == "set" else "removed"))
    return 0

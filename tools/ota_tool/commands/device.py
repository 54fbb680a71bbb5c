import argparse
import json
import sys

from ..errors import ToolError

HELP = "talk to the ota library on a board over its REPL: status, update, log, config get|set|unset, reset"
DESCRIPTION = (
    "Run the device library on a board through its REPL, as mpremote does: connecting interrupts the "
    "running program (main.py) with Ctrl-C and soft-resets the board (--resume: not); the board is then "
    "left at its REPL (`device reset` starts main.py again). status: slots, versions, device id, app "
    "bundle. update: one update check and install now, with the board's progress, and what happened. "
    "log: the board's audit log. config: read or edit ota.json on the board. reset: machine.reset().")


def _common():
    from ..ports import add_port_arguments
    from .common import seconds

    p = argparse.ArgumentParser(add_help=False)
    add_port_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="do not soft-reset the board first (as mpremote resume: the REPL keeps its state)")
    p.add_argument("--timeout", type=seconds, default=30, metavar="SECONDS",
                   help="give up when the board has not answered in this many seconds, connecting or in a step, "
                        "whatever it prints meanwhile (a step that streams progress, as an update does, only "
                        "must not fall silent this long) (default 30)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    return p


def add_arguments(p):
    from .common import positive_int, seconds_or_zero

    common = _common()
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    sub.add_parser("status", parents=[common], help="slots, states, versions, device id and app bundle of the board",
                   description="ota.status() of the board, with its device id and app bundle version")
    up = sub.add_parser("update", parents=[common], help="check for an update and install it now",
                        description="One update check on the board with its settings, as its agent makes it: the "
                                    "board's progress while it downloads, then what happened (the reason and a hint "
                                    "when it did not install). After an install the board resets: the command "
                                    "follows it until main.py reports the new image confirmed or rolled back.")
    up.add_argument("--wait", type=seconds_or_zero, default=180, metavar="SECONDS",
                    help="after an install, how long to wait for the board to confirm or roll back (default 180; "
                         "0: do not wait)")
    up.add_argument("--no-network-check", action="store_true",
                    help="install even without wifi.json (for apps that join the network themselves)")
    lg = sub.add_parser("log", parents=[common], help="the board's audit log (ota.log), one line per record",
                        description="The board's audit log: ota.log.1 then ota.log, one readable line per record "
                                    "(time, event, fields); --json: a JSON list of the records.")
    lg.add_argument("--lines", "-n", type=positive_int, metavar="N", help="only the last N records")
    cfg = sub.add_parser("config", parents=[common], help="get, set or unset keys of ota.json on the board",
                         description="read or edit ota.json on the board. KEY may be dotted (keys.release). VALUE is "
                                     "parsed as JSON when it can be (3600, true, [\"a\"]), else taken as a string.")
    cfg.add_argument("op", choices=["get", "set", "unset"], help="get (KEY optional: all), set KEY VALUE, unset KEY")
    cfg.add_argument("key", nargs="?", metavar="KEY", help="setting name, dotted for nested ones (keys.release)")
    cfg.add_argument("value", nargs="?", metavar="VALUE", help="new value (set)")
    cfg.add_argument("--string", action="store_true", help="take VALUE as a string even if it parses as JSON")
    sub.add_parser("reset", parents=[common], help="reset the board (machine.reset()): it boots and runs main.py",
                   description="machine.reset() on the board: the bootloader runs (a pending image is rolled "
                               "back), then boot.py and main.py.")


def run(args):
    from .. import mpdevice

    with mpdevice.Board(args.port, resume=args.resume, baud=args.baud, timeout=args.timeout) as board:
        if args.action == "status":
            return _status(board, args)
        if args.action == "update":
            return _update(board, args)
        if args.action == "log":
            return _log(board, args)
        if args.action == "reset":
            return _reset(board, args)
        return _config(board, args)


def _status(board, args):
    from .. import remote

    st = remote.status(board)
    print(json.dumps(st) if args.json else remote.format_status(st))
    return 0


def _log(board, args):
    from .. import remote

    records = remote.read_log(board)
    if records is not None and args.lines:
        records = records[-args.lines:]
    if args.json:
        print(json.dumps(records or []))
    elif records is None:
        print("no %s on the board (nothing logged yet, or the library does not log)" % remote.LOG_PATH,
              file=sys.stderr)
    else:
        for rec in records:
            print(remote.format_record(rec))
    return 0


def _reset(board, args):
    board.t.exec_raw_no_follow("import machine\nmachine.reset()")
    board.t.in_raw_repl = False  # it is gone: nothing to leave
    if args.json:
        print(json.dumps({"ok": True, "port": board.port}))
    else:
        print("%s: reset; the board boots and runs main.py" % board.port)
    return 0


class _Progress:
    """The board's download progress: a bar on a terminal, else a line at every quarter."""

    def __init__(self, out, what):
        self.out = out
        self.what = what
        self.bar = None
        self.step = -1

    def __call__(self, done, total):
        if self.out.isatty():
            if self.bar is None:
                from tqdm import tqdm

                self.bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=self.what(),
                                file=self.out, leave=True, dynamic_ncols=True)
            self.bar.update(done - self.bar.n)
            return
        quarter = done * 4 // total if total else 4
        if quarter != self.step:
            self.step = quarter
            self.out.write("%s: %3d%% (%d of %d bytes)\n" % (self.what(), done * 100 // total if total else 100,
                                                           done, total))
            self.out.flush()

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _update(board, args):
    from .. import remote

    if not remote.has_update_now(board):
        raise ToolError("the ota library on the board has no update agent",
                        "deploy a library with the agent (ota-tool deploy), or install an image by hand with "
                        "ota.install_image()")
    out = sys.stderr if args.json else sys.stdout
    result = remote.UpdateRun()

    def what():
        return "downloading %s" % (result.last("downloading")[1].get("target_version") or "the release")

    def on_line(line):
        out.write("board: %s\n" % line)
        out.flush()

    progress = _Progress(out, what)
    try:
        remote.update_now(board, on_line, progress, network_check=not args.no_network_check, run=result)
    finally:
        progress.close()
    summary = {"ok": True, "port": board.port, "result": result.result, "reset": result.reset,
               "events": result.events}
    ev, fields = result.last("installed", "refused", "failed", "not_now", "up_to_date")
    if result.reset or ev == "installed":
        return _installed(board, args, result, fields, summary, out)
    if ev in ("refused", "failed"):
        reason = fields.get("reason") or "unknown"
        target = fields.get("target_version")
        what_failed = ("the board refused release %s" % target if target else "the board refused the update") \
            if ev == "refused" else ("the update to %s failed" % target if target else "the update check failed")
        return _failed(args, summary, "%s: %s (reason %s)" % (what_failed, fields.get("message") or reason, reason),
                       reason)
    if ev == "not_now":
        why = fields.get("reason")
        return _failed(args, summary, "the board will not update now (reason %s)" % why, why,
                       {"power": "the board reports too little power (power_ok)",
                        "heap": "free heap is below the settings' min_free_heap",
                        "window": "outside the settings' update window (UTC hours)",
                        "clock": "an update window needs a set clock (NTP)"}.get(why))
    if result.result == "up_to_date" or ev == "up_to_date":
        if args.json:
            print(json.dumps(summary))
        else:
            print("up to date: no release to install for this board")
        return 0
    return _failed(args, summary, "the update check ended with %r" % result.result, None)


def _failed(args, summary, message, reason, hint=None):
    from ..reasons import hint as hint_for

    summary.update(ok=False, error=message, reason=reason)
    raise ToolError(message, hint or hint_for(reason))


def _installed(board, args, run, fields, summary, out):
    """After an install the board resets: follow it until main.py says how the boot went, then
    read its status and log to say what happened."""
    from .. import mpdevice, remote

    is_app = bool(fields.get("app"))
    if is_app:
        what = "app bundle %s" % fields.get("app_version")
        print("installed %s%s; the board resets to run it, on probation until its self-test passes" % (
            what, " (%s)" % fields["message"] if fields.get("message") else ""), file=out)
    else:
        what = "release %s" % fields.get("target_version")
        print("installed %s (%s artifact, %s bytes downloaded); the board resets to boot it, on probation until it "
              "passes its self-test and reaches the update server" % (
                  what, fields.get("message") or "?", fields.get("bytes", "?")), file=out)
    summary["installed"] = fields
    if not run.reset or args.wait == 0:
        if args.json:
            print(json.dumps(summary))
        return 0
    def on_line(text):
        out.write("board: %s\n" % text)
        out.flush()

    line = remote.follow_reboot(board, run, args.wait, on_line)
    if line is None:
        summary["followed"] = False
        if args.json:
            print(json.dumps(summary))
        else:
            print("the board reset; it did not report its boot within %g s (is main.py ours?): check it with "
                  "ota-tool device status" % args.wait)
        return 0
    board.close()
    with mpdevice.Board(board.port, resume=True, baud=args.baud, timeout=args.timeout) as again:
        st = remote.status(again)
        records = remote.read_log(again) or []
    summary["status"] = st
    target = fields.get("app_version") if is_app else fields.get("target_version")
    now = st.get("app_version") if is_app else st.get("version")
    if now == target:
        summary["outcome"] = "confirmed"
        if args.json:
            print(json.dumps(summary))
        else:
            print("%s confirmed itself: the board runs it (%s)" % (what, st.get("running")))
        return 0
    back = [r for r in records if r.get("event") == "rolled_back" and
            (r.get("app_version") if is_app else r.get("target_version")) == target]
    why = back[-1].get("reason") if back else "it is not running it (%s runs %s)" % (st.get("running"), now)
    summary["outcome"] = "rolled_back" if back else "not_running"
    summary.update(ok=False, error="%s was rolled back: %s" % (what, why))
    if args.json:
        print(json.dumps(summary))
        return 1
    raise ToolError("%s was rolled back: %s; the board runs %s again" % (what, why, now or st.get("running")),
                    "the board's log has the details (ota-tool device log); fix the release and publish a new "
                    "version (ota-tool rollout MANIFEST --key KEY.pem --halt stops it for the fleet)")


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
        raise ToolError("config %s needs a KEY" % args.op, "e.g. ota-tool device config %s interval" % args.op, exit_code=2)
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

"""OTA operations on a board over its REPL (an mpdevice.Board): status, update, log, config."""
import json

from .deploy import CONFIG_PATH
from .errors import ToolError

LOG_PATH = "ota.log"
# What a board prints when it resets: the ESP32 ROM's "rst:0xc (SW_CPU_RESET),boot:0x13 ...", or
# the simulated board's bridge (ota_tool.simport).
RESET_MARKS = (b"rst:0x", b"espsim: reset")


class _BoardReset(Exception):
    pass


STATUS_CODE = """import ota, binascii, machine
result = ota.status()
try:
    import ota.config
    result["device_id"] = ota.config.load().get("device_id")
except Exception:
    pass
result["device_id"] = result.get("device_id") or binascii.hexlify(machine.unique_id()).decode()
try:
    from ota import apptree
    result["app_version"] = apptree.journal().get("v")
except ImportError:
    result["app_version"] = None
"""


def status(board):
    """ota.status() as the board reports it (a dict), with its device id and app bundle version."""
    try:
        return board.call(STATUS_CODE)
    except ToolError as e:
        if "ImportError" in e.message or "no module named 'ota'" in e.message:
            raise ToolError("the board has no ota library", "install it: ota-tool deploy --port PORT")
        raise


def running_image(st):
    """The app descriptor of the running slot (a dict, {} if unknown)."""
    for s in st.get("slots", []):
        if s.get("running"):
            return s.get("image") or {}
    return {}


def format_status(st):
    img = running_image(st)
    lines = ["device id:      %s" % st.get("device_id", "?"),
             "running:        %s%s" % (st.get("running"), " (on probation: waiting for confirmation)"
                                       if st.get("pending_verify") else ""),
             "release:        %s" % (st.get("version") or "unknown (not installed over the air; image says %s)"
                                     % (img.get("version") or "nothing")),
             "app bundle:     %s" % (st.get("app_version") or "none (no signed app installed)"),
             "boots next:     %s" % st.get("boot"),
             "rollback:       %s" % st.get("rollback"),
             "security count: %s" % st.get("security_counter")]
    if st.get("pending_release"):
        lines.append("pending:        %s" % st["pending_release"].get("version"))
    lines.append("next update to: %s" % (st.get("next_update") or "nowhere (no second OTA slot)"))
    lines.append("slots:")
    for s in st.get("slots", []):
        img = s.get("image") or {}
        lines.append("  %-8s %-15s %-12s %s%s" % (
            s.get("label"), s.get("state"), img.get("version") or ("-" if img else "(empty)"), img.get("project", ""),
            "  <- running" if s.get("running") else ""))
    return "\n".join(lines)


def has_update_now(board):
    return board.call("import ota\nresult = callable(getattr(ota, 'update_now', None))")


# One update check on the board, as main.py's agent makes it (ota.wifi joins the network, the
# settings must survive the reboot), reporting on the serial line: "P done total" (download
# progress), "E [event, fields]" (each audit log record), "R result" (what check_now returned).
UPDATE_CODE = """import json, ota.agent
_M = %(marker)r
def _p(done, total, _l=[-1]):
    pc = done * 100 // total if total else 100
    if pc != _l[0]:
        _l[0] = pc
        print(_M + "P %%d %%d" %% (done, total))
class _A(ota.agent.Agent):
    def log(self, event, **fields):
        ota.agent.Agent.log(self, event, **fields)
        print(_M + "E " + json.dumps([event, fields]))
_kw = {"progress": _p}
try:
    from ota import wifi
    _kw["connect"] = wifi.connect
    if %(check)r:
        _kw["network_saved"] = wifi.saved
except ImportError:
    pass
try:
    _a = _A(**_kw)
except TypeError:
    _a = _A()
print(_M + "R " + json.dumps(_a.check_now()))
"""


class UpdateRun:
    """What the board said during one update: events, progress, the result or a reset."""

    def __init__(self):
        self.events = []  # [event, fields] in order
        self.result = None
        self.reset = False
        self.unread = b""  # the start of the line that showed the reset

    def last(self, *names):
        for ev, fields in reversed(self.events):
            if not names or ev in names:
                return ev, fields
        return None, {}


def update_now(board, on_line, on_progress, network_check=True, run=None):
    """Run one update check on the board. on_line(text): every other line it prints;
    on_progress(done, total). Returns the UpdateRun (`run`, filled in as the board reports)."""
    from .mpdevice import RESULT

    run = run if run is not None else UpdateRun()
    held = bytearray()
    seen = bytearray()

    def consume(b):
        seen.extend(b)
        del seen[:-64]
        held.extend(b.replace(b"\x04", b""))
        while b"\n" in held:
            i = held.index(b"\n") + 1
            line = bytes(held[:i]).decode(errors="replace").rstrip("\r\n")
            del held[:i]
            _take(run, line, on_line, on_progress)
        if any(m in seen for m in RESET_MARKS):
            raise _BoardReset()

    code = UPDATE_CODE % {"marker": RESULT, "check": bool(network_check)}
    try:
        board.exec(code, stream=consume)
    except _BoardReset:
        run.reset = True
        run.unread, held[:] = bytes(held), b""
    except ToolError as e:
        if "stopped answering" not in e.message:
            raise
        run.reset = True  # the board went quiet under it: a reset without a word (a real board's USB)
    if held:
        _take(run, bytes(held).decode(errors="replace").rstrip("\r\n"), on_line, on_progress)
    if run.result is None and not run.reset:
        run.reset = True  # check_now() always prints its result when it returns
    return run


def _take(run, line, on_line, on_progress):
    from .mpdevice import RESULT

    if not line.startswith(RESULT):
        if line.strip() and not any(m.decode() in line for m in RESET_MARKS):
            on_line(line)
        return
    kind, _, rest = line[len(RESULT):].partition(" ")
    try:
        if kind == "P":
            done, total = rest.split()
            on_progress(int(done), int(total))
        elif kind == "E":
            run.events.append(json.loads(rest))
        elif kind == "R":
            run.result = json.loads(rest)
    except ValueError:
        on_line(line)


def follow_reboot(board, run, wait, on_line):
    """After the reset of `run` (an UpdateRun): wait (at most `wait` s) for main.py's "ota: boot:"
    line, passing the lines before it (the bootloader, the self-test, a rollback) to on_line.
    Returns it or None."""
    line = board.read_output([b"ota: boot:"], wait, on_line, start=run.unread)
    return None if line is None else line.decode(errors="replace")


def read_log(board):
    """The board's audit log (ota.log after ota.log.1) as a list of records (dicts), oldest
    first; None when there is none. Lines that are not JSON come back as {"text": line}."""
    old = board.read(LOG_PATH + ".1")
    new = board.read(LOG_PATH)
    if old is None and new is None:
        return None
    out = []
    for data in (old, new):
        for line in (data or b"").decode(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except ValueError:
                rec = None
            out.append(rec if isinstance(rec, dict) else {"text": line})
    return out


def format_record(rec):
    """One audit log record as a line a person reads."""
    import time

    if "text" in rec and "event" not in rec:
        return rec["text"]
    t = rec.get("t")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t)) if isinstance(t, int) else (
        "clock unset, t+%.1fs" % (rec["ticks"] / 1000) if isinstance(rec.get("ticks"), int) else "?")
    rest = []
    for k in sorted(rec):
        if k in ("t", "ticks", "event", "message"):
            continue
        rest.append("%s=%s" % (k, rec[k]))
    msg = rec.get("message")
    return "%-19s  %-14s %s%s" % (when, rec.get("event", "?"), " ".join(rest), ("  " + msg) if msg else "")


def read_config(board):
    data = board.read(CONFIG_PATH)
    if data is None:
        return {}
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ToolError("%s on the board is not valid JSON (%s)" % (CONFIG_PATH, e),
                        "replace it: ota-tool deploy --port PORT --config FILE --no-app")
    if not isinstance(doc, dict):
        raise ToolError("%s on the board does not hold a JSON object" % CONFIG_PATH, "replace it: ota-tool deploy --port PORT --config FILE --no-app")
    return doc


def write_config(board, doc):
    """Write ota.json (NAME.tmp, then rename) and check it arrived. The settings are checked
    first with the device's own ota.config.check_value."""
    import hashlib

    from .deploy import check_config

    data = check_config(doc)
    board.write(CONFIG_PATH, data)
    got = board.sha256([CONFIG_PATH])[CONFIG_PATH]
    if got != hashlib.sha256(data).hexdigest():
        raise ToolError("%s on the board differs from what was written" % CONFIG_PATH, "run the command again")
    return data


def parse_value(text, as_string=False):
    """VALUE on the command line: JSON if it parses (3600, true, [..], {..}, "x"), else a string."""
    if as_string:
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def get_path(doc, key):
    cur = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            raise ToolError("%s has no %r" % (CONFIG_PATH, key), "list it all: ota-tool device config get")
        cur = cur[part]
    return cur


def set_path(doc, key, value):
    parts = key.split(".")
    cur = doc
    for part in parts[:-1]:
        nxt = cur.get(part)
        if nxt is None:
            nxt = cur[part] = {}
        if not isinstance(nxt, dict):
            raise ToolError("%s: %r is not an object" % (CONFIG_PATH, part), "list it all: ota-tool device config get")
        cur = nxt
    cur[parts[-1]] = value


def unset_path(doc, key):
    parts = key.split(".")
    parent = get_path(doc, ".".join(parts[:-1])) if len(parts) > 1 else doc
    if not isinstance(parent, dict) or parts[-1] not in parent:
        raise ToolError("%s has no %r" % (CONFIG_PATH, key), "list it all: ota-tool device config get")
    del parent[parts[-1]]

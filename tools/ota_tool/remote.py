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


def status(board):
    """ota.status() as the board reports it (a dict)."""
    try:
        return board.call("import ota\nresult = ota.status()")
    except ToolError as e:
        if "ImportError" in e.message or "no module named 'ota'" in e.message:
            raise ToolError("the board has no ota library", "install it: ota-tool deploy --port PORT")
        raise


def format_status(st):
    lines = ["running:        %s%s" % (st.get("running"), " (waiting for confirmation)" if st.get("pending_verify") else ""),
             "boots next:     %s" % st.get("boot"),
             "release:        %s" % (st.get("version") or "unknown (not installed over the air)"),
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


def update_now(board, stream):
    """Run ota.update_now() on the board, its output streamed to `stream` (bytes callable).
    Returns ("done", value) or ("reset", None) when the board reset during the update."""
    from .mpdevice import RESULT

    seen = bytearray()

    def consume(b):
        seen.extend(b)
        del seen[:-4096]
        stream(b)
        if any(m in seen for m in RESET_MARKS):
            raise _BoardReset()

    code = ("import ota, json\nr = ota.update_now()\ntry:\n s = json.dumps(r)\nexcept Exception:\n s = json.dumps(repr(r))\n"
            "print(%r + s)" % RESULT)
    try:
        out = board.exec(code, timeout=600, stream=consume)
    except _BoardReset:
        return "reset", None
    except ToolError as e:
        if "stopped answering" in e.message:
            return "reset", None
        raise
    for line in out.splitlines()[::-1]:
        if line.startswith(RESULT):
            return "done", json.loads(line[len(RESULT):])
    text = bytes(seen).decode(errors="replace")
    for line in text.splitlines()[::-1]:
        if line.startswith(RESULT):
            return "done", json.loads(line[len(RESULT):])
    # update_now() did not return (its result line always follows a return): the board went
    # down under it, as the simulated board's raw REPL reports a reset.
    return "reset", None


def read_log(board):
    data = board.read(LOG_PATH)
    return None if data is None else data.decode(errors="replace")


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
        raise ToolError("%s on the board does not hold a JSON object" % CONFIG_PATH)
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
            raise ToolError("%s: %r is not an object" % (CONFIG_PATH, part))
        cur = nxt
    cur[parts[-1]] = value


def unset_path(doc, key):
    parts = key.split(".")
    parent = get_path(doc, ".".join(parts[:-1])) if len(parts) > 1 else doc
    if not isinstance(parent, dict) or parts[-1] not in parent:
        raise ToolError("%s has no %r" % (CONFIG_PATH, key))
    del parent[parts[-1]]

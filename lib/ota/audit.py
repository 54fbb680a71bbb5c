# The audit log: one JSON line per update attempt or boot decision, appended to a size-capped
# file that rotates to <name>.1. Lines are written whole (littlefs commits a file's new content at
# close), so a power cut loses at most the line being written.
import json

from .compat import fs, ticks_ms, unix_time

_CLOCK_SET = 1704067200  # 2024-01-01: earlier means the clock was never set


def trusted_time():
    """Unix time if the clock looks set (NTP or RTC), else None."""
    t = unix_time()
    return t if t >= _CLOCK_SET else None


def append(path, max_bytes, event, **fields):
    """Append one record; never raises (an audit log must not stop an update or a rollback)."""
    if not path:
        return
    rec = {"t": trusted_time(), "ticks": ticks_ms(), "event": event}
    for k in fields:
        if fields[k] is not None:
            rec[k] = fields[k]
    line = json.dumps(rec) + "\n"
    try:
        try:
            size = fs.stat(path)
        except OSError:
            size = 0
        if size and size + len(line) > max_bytes:
            fs.rename(path, path + ".1")
        with fs.open(path, "a") as f:
            f.write(line)
    except OSError as e:
        print("ota: audit log not written: %s" % e)


def read(path, max_lines=50):
    """The last records (older file first), as dicts; unreadable lines are skipped."""
    out = []
    for name in (path + ".1", path):
        try:
            with fs.open(name, "r") as f:
                while True:
                    line = f.readline()
                    if not line:
                        break
                    try:
                        out.append(json.loads(line))
                    except ValueError:
                        pass
        except OSError:
            pass
    return out[-max_lines:]

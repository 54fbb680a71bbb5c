"""A MicroPython board over its REPL (mpremote's serial transport, used as a library).

Runs code in the raw REPL, copies files in small chunks (written to NAME.tmp, then renamed, so an
interrupted copy never leaves a half file under the real name) and hashes files on the board
with its own hashlib, reading a small buffer at a time.

Device paths are relative to the board's working directory: "/" on an ESP32, the folder that
plays the board's filesystem on the simulated board (ota_tool.simport).
"""
import contextlib
import json
import sys
import time

from .errors import ToolError

CHUNK = 1024  # bytes per write command (base64 on the wire): little heap on the board, few round trips
RESULT = "@@OTA@@"  # marks the one line of JSON a helper prints, among anything else printed


def _transport_class():
    from mpremote.transport import TransportError
    from mpremote.transport_serial import SerialTransport

    class Transport(SerialTransport):
        """mpremote's serial transport, bounded in time. mpremote (1.29, transport_serial.py,
        read_until) checks its overall timeout only while no byte arrives, so a board that never
        stops printing (a boot loop's banner) held `enter_raw_repl` for ever; and it prints what it
        read to stdout when the REPL does not answer (b'' before a --json document)."""

        deadline = None  # time.monotonic() by which the board must have answered (None: only silence counts)

        def read_until(self, min_num_bytes, ending, timeout=10, data_consumer=None, timeout_overall=None):
            data = b""
            start = last = time.monotonic()
            ends = [t for t in (self.deadline, start + timeout_overall if timeout_overall is not None else None)
                    if t is not None]
            end = min(ends) if ends else None
            while not data.endswith(ending):
                now = time.monotonic()
                if end is not None and now >= end:
                    break
                new = self.serial.read(1) if self.is_pty or self.serial.in_waiting else b""
                if new:
                    if data_consumer:
                        data_consumer(new)
                        data = new
                    else:
                        data += new
                    last = now
                elif timeout is not None and now >= last + timeout:
                    break
                else:
                    time.sleep(0.01)
            return data

        def enter_raw_repl(self, soft_reset=True, timeout_overall=10):
            # mpremote's sequence (Ctrl-C, Ctrl-A, Ctrl-D for a soft reset), within one deadline
            self.deadline = time.monotonic() + timeout_overall
            try:
                self.serial.write(b"\r\x03")
                while time.monotonic() < self.deadline and self.serial.in_waiting:
                    self.serial.read(self.serial.in_waiting)  # what a running program printed
                self.serial.write(b"\r\x01")
                steps = [b"raw REPL; CTRL-B to exit\r\n>", b"soft reboot\r\n"] if soft_reset else []
                for ending in steps + [b"raw REPL; CTRL-B to exit\r\n"]:
                    data = self.read_until(1, ending)
                    if not data.endswith(ending):
                        text = data.decode(errors="replace")
                        # the last whole line (the deadline may cut the one being printed)
                        last = [ln for ln in text[:text.rfind("\n") + 1 or None].splitlines() if ln.strip()]
                        raise TransportError("no raw REPL within %g s%s" % (
                            timeout_overall, "; it printed: %r" % last[-1][-100:] if last else ", nothing printed"))
                    if soft_reset and ending == steps[0]:
                        self.serial.write(b"\x04")  # Ctrl-D: soft reset
            finally:
                self.deadline = None
            self.in_raw_repl = True

    return Transport


def _open(name, baud):
    """(Transport, path) of the first port `name` stands for that opens."""
    from mpremote.transport import TransportError

    from .ports import candidates

    SerialTransport = _transport_class()

    errors = []
    for path in candidates(name):
        try:
            # a read timeout, so that waiting for a silent board can end (on a pty mpremote reads
            # without checking what is waiting: with no timeout a read would block for ever)
            return SerialTransport(path, baudrate=baud, timeout=0.2), path
        except (TransportError, OSError, ValueError) as e:
            errors.append("%s: %s" % (path, " ".join(str(e).split())))
    raise ToolError("cannot open %s" % "; ".join(errors), _hint(name))


def _hint(port):
    return ("is the board running MicroPython, and nothing else (a serial monitor, another mpremote) "
            "using %s?" % port)


class DeviceError(ToolError):
    """Code run on the board raised: `message` carries MicroPython's traceback text."""


class Board:
    """A board's REPL. `port`: a name ota_tool.ports understands (auto, u0, a path...). Connecting
    interrupts a running program as mpremote does (Ctrl-C, then the raw REPL; a soft reset unless
    `resume`). `timeout`: seconds the board has to answer, connecting or running a step, before
    the command gives up (a step that streams output, such as an update, may run longer)."""

    def __init__(self, port="auto", resume=False, baud=115200, transport=None, timeout=30):
        from mpremote.transport import TransportError

        self.timeout = timeout
        if transport is None:
            transport, port = _open(port, baud)
        self.port = port
        self.t = transport
        try:
            self.t.enter_raw_repl(soft_reset=not resume, timeout_overall=timeout)
        except (TransportError, OSError) as e:
            try:
                self.t.close()
            except OSError:
                pass
            if isinstance(e, OSError) and not isinstance(e, TransportError):
                raise ToolError("lost the board on %s while connecting: %s" % (port, e.strerror or " ".join(str(e).split())),
                                "is it still plugged in? plug it in again and run the command again")
            hint = _hint(port)
            if "it printed" in str(e):
                hint = ("the board prints but no REPL answers: if that is a boot banner again and again (ets ..., "
                        "rst:...), it is in a boot loop: flash it by cable (ota-tool flash); else " + hint)
            raise ToolError("no MicroPython REPL answers on %s (%s)" % (port, " ".join(str(e).split())), hint)

    def close(self):
        try:
            if self.t.in_raw_repl:
                self.t.exit_raw_repl()
        except Exception:
            pass
        try:
            self.t.close()
        except Exception:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def exec(self, code, timeout=None, stream=None):
        """Run `code` on the board; returns what it printed (str). Raises DeviceError with the
        board's traceback if it raised. stream: a callable given output bytes as they come.
        timeout: seconds of silence before giving up (default: the board's)."""
        from mpremote.transport import TransportError

        wait = max(timeout or 0, self.timeout)
        # a step whose output nobody streams must be answered in `wait`, however much the board
        # prints meanwhile; a streamed step (an update's progress) only must not fall silent
        self.t.deadline = None if stream else time.monotonic() + wait
        try:
            with contextlib.redirect_stdout(sys.stderr):  # mpremote prints what it could not parse
                self.t.exec_raw_no_follow(code)
                out, err = self.t.follow(wait, stream)
        except TransportError as e:
            raise ToolError("the board on %s stopped answering: %s" % (self.port, e),
                            "it may have reset or crashed; run the command again")
        except OSError as e:  # the port itself is gone (EIO: unplugged, or the board's USB reset)
            raise ToolError("lost the board on %s: %s" % (self.port, e.strerror or " ".join(str(e).split())),
                            "is it still plugged in? plug it in again and run the command again")
        finally:
            self.t.deadline = None
        if err:
            err = err.decode(errors="replace").strip()
            raise DeviceError("the board raised: %s" % err.splitlines()[-1], err)
        return out.decode(errors="replace")

    def call(self, code, timeout=None):
        """Run `code`, which sets a variable `result`; returns it (through JSON)."""
        out = self.exec(code + "\nimport json\nprint(%r + json.dumps(result))" % RESULT, timeout)
        for line in out.splitlines()[::-1]:
            if line.startswith(RESULT):
                return json.loads(line[len(RESULT):])
        raise ToolError("unexpected answer from the board: %r" % out[-200:], "run the command again; if it persists, reset the board (ota-tool device reset)")

    def implementation(self):
        """(name, version tuple, _mpy or None, machine, path list)."""
        return self.call("import sys\nresult = [sys.implementation.name, list(sys.implementation.version[:3]), "
                         "getattr(sys.implementation, '_mpy', None), getattr(sys.implementation, '_machine', ''), "
                         "sys.path]")

    def makedirs(self, path):
        if not path:
            return
        self.exec("import os\np = ''\nfor d in %r.split('/'):\n p = p + d if not p else p + '/' + d\n"
                  " try:\n  os.mkdir(p)\n except OSError:\n  pass" % path)

    def write(self, path, data, progress=None):
        """Write `data` to `path` on the board: into path.tmp, then renamed over path."""
        import base64

        tmp = path + ".tmp"
        self.exec("from binascii import a2b_base64 as d\nf = open(%r, 'wb')\nw = f.write" % tmp)
        done = 0
        for i in range(0, len(data), CHUNK):
            chunk = data[i:i + CHUNK]
            self.exec("w(d(%r))" % base64.b64encode(chunk).decode())  # 4/3 of the bytes on the wire
            done += len(chunk)
            if progress:
                progress(done, len(data))
        if not data and progress:
            progress(0, 0)
        self.exec("f.close()\nimport os\nos.rename(%r, %r)" % (tmp, path))

    def read(self, path, limit=1 << 20):
        """The bytes of `path` on the board, or None if it does not exist."""
        self.exec("import os\ntry:\n f = open(%r, 'rb')\nexcept OSError:\n f = None" % path)
        if self.call("result = f is not None") is False:
            return None
        data = bytearray()
        self.exec("import binascii")
        while len(data) < limit:
            chunk = self.call("result = binascii.hexlify(f.read(%d)).decode()" % CHUNK)
            if not chunk:
                break
            data += bytes.fromhex(chunk)
        self.exec("f.close()")
        return bytes(data)

    def remove(self, path):
        self.exec("import os\ntry:\n os.remove(%r)\nexcept OSError:\n pass" % path)

    def listdir(self, path):
        """Names in `path`, or None if it is not a folder."""
        return self.call("import os\ntry:\n result = os.listdir(%r)\nexcept OSError:\n result = None" % path)

    def walk(self, path):
        """Every file under the folder `path` (recursively), or [] if there is no such folder."""
        code = ("import os\nresult = []\ntodo = [%r]\nwhile todo:\n d = todo.pop()\n try:\n  ents = list(os.ilistdir(d))\n"
                " except OSError:\n  continue\n for e in ents:\n  p = d + '/' + e[0]\n"
                "  if e[1] & 0x4000:\n   todo.append(p)\n  else:\n   result.append(p)" % path)
        return sorted(self.call(code))

    def sha256(self, paths):
        """{path: hex SHA-256 or None if missing}, hashed on the board 256 bytes at a time."""
        code = ("import hashlib, binascii\nresult = {}\nbuf = bytearray(256)\nmv = memoryview(buf)\n"
                "for p in %r:\n"
                " try:\n  f = open(p, 'rb')\n except OSError:\n  result[p] = None\n  continue\n"
                " h = hashlib.sha256()\n"
                " while True:\n  n = f.readinto(buf)\n  if not n:\n   break\n  h.update(mv[:n])\n"
                " f.close()\n result[p] = binascii.hexlify(h.digest()).decode()" % (list(paths),))
        return self.call(code, timeout=120)

    def read_output(self, until, timeout, on_line=None, start=b""):
        """Read what the board prints (outside any command: e.g. while it reboots) until a line
        starting with one of `until` (bytes) is complete, or `timeout` seconds pass. Returns that
        line (bytes) or None. on_line(text): every line before it. start: what was read already."""
        import time

        seen = bytearray(start)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                data = self.t.serial.read(256)
            except OSError:
                return None
            if not data:
                continue
            seen.extend(data)
            while b"\n" in seen:
                i = seen.index(b"\n")
                line = bytes(seen[:i]).strip(b"\r")
                del seen[:i + 1]
                if line.startswith(tuple(until)):
                    return line
                if on_line is not None and line.strip():
                    on_line(line.decode(errors="replace"))
        return None


def progress_printer(name, stream=sys.stderr):
    """A progress callback printing one updating line per file."""
    state = {"last": -1}
    live = hasattr(stream, "isatty") and stream.isatty()

    def show(done, total):
        pct = 100 if total == 0 else done * 100 // total
        if pct == state["last"] or not (live or done >= total):
            return
        state["last"] = pct
        stream.write("%s  %-30s %7d bytes %3d%%%s" % ("\r" if live else "", name, total, pct,
                                                      "\n" if done >= total else ""))
        stream.flush()

    return show

# The chip over a socket: the device process (MicroPython, heap-limited) holds only this small
# client; the simulated board, its flash and its power-cut clock live in the host process.
#
# (The host side is espsim.rpc_host.)
# Request:  one text line "op arg ...\n", then, for "write" and "set_blob", the payload bytes.
# Response: one text line "OK [value]", "ERR <esp_err>" or "CUT" (power failed during the
#           operation), then, for "read", "get_blob", "partitions", "flags" and "idf_info", the
#           payload.
# A call cut short on the device (Ctrl-C from mpremote lands between bytecodes, so between the
# request and the end of its response) leaves the stream out of step: the next call first
# resynchronises (empty lines to fill a payload the host may still wait for, then "sync N" until
# the host's "SYNC N").
from .chip import PowerCut


class RemoteChip:
    def __init__(self, port):
        import socket

        s = socket.socket()
        s.connect(socket.getaddrinfo("127.0.0.1", port)[0][-1])
        s.setsockopt(6, 1, 1)  # IPPROTO_TCP, TCP_NODELAY: one request is a line plus a payload
        self._s = s
        self._parts = None
        self._busy = False  # a call started and its response (with any payload) not read to the end
        self._syncs = 0

    def _read_exact(self, buf):
        mv = memoryview(buf)
        got = 0
        while got < len(buf):
            n = self._s.readinto(mv[got:])
            if not n:
                raise OSError("simulator connection lost")
            got += n
        self._busy = False

    def _resync(self):
        self._syncs += 1
        self._s.write(b"\n" * 4100)  # more than any payload the host may be reading (4 KiB blocks)
        self._s.write(("sync %d\n" % self._syncs).encode())
        want = ("SYNC %d\n" % self._syncs).encode()
        while True:
            line = self._s.readline()
            if not line:
                raise OSError("simulator connection lost")
            if line.endswith(want):
                break
        self._busy = False

    def _call(self, line, payload=None):
        if self._s is None:  # power is gone: code still unwinding (a `with` closing a file) does nothing
            raise PowerCut("power is off")
        if self._busy:
            self._resync()
        self._busy = True
        self._s.write(line.encode() + b"\n")
        if payload is not None:
            self._s.write(payload)
        head = self._s.readline()
        if head.startswith(b"CUT"):
            self._s = None
            raise PowerCut("power cut (host)")
        parts = head.split()
        if not parts:
            raise OSError("simulator connection lost")
        if parts[0] == b"ERR":
            self._busy = False
            return int(parts[1]), None
        op = line.split(" ", 1)[0]
        if not (op in ("read", "partitions", "flags", "idf_info") or line.startswith("nvs get_blob")):
            self._busy = False  # else a payload follows: _read_exact ends the call
        return 0, parts[1] if len(parts) > 1 else None

    def _payload(self, n):
        buf = bytearray(n)
        self._read_exact(buf)
        return buf

    def partitions(self):
        if self._parts is None:
            import json

            _, n = self._call("partitions")
            self._parts = [tuple(p) for p in json.loads(self._payload(int(n)))]
        return self._parts

    def running(self):
        return int(self._call("running")[1])

    def boot_partition(self):
        return int(self._call("boot_partition")[1])

    def next_update(self, offset):
        return int(self._call("next_update %d" % offset)[1])

    def read(self, addr, buf):
        self._call("read %d %d" % (addr, len(buf)))
        self._read_exact(buf)

    def erase(self, addr, n):
        self._call("erase %d %d" % (addr, n))

    def write(self, addr, data):
        self._call("write %d %d" % (addr, len(data)), data)

    def set_boot(self, offset):
        return self._call("set_boot %d" % offset)[0]

    def mark_valid(self):
        return self._call("mark_valid")[0]

    def nvs(self, op, ns, key, value=None):
        if op == "set_blob":
            return self._call("nvs set_blob %s %s %d" % (ns, key, len(value)), value)[0], None
        if op == "set_i32":
            return self._call("nvs set_i32 %s %s %d" % (ns, key, value))[0], None
        err, v = self._call("nvs %s %s %s" % (op, ns, key))
        if err:
            return err, None
        if op == "get_i32":
            return 0, int(v)
        if op == "get_blob":
            return 0, bytes(self._payload(int(v)))
        return 0, None

    def firmware_flags(self):
        import json

        _, n = self._call("flags")
        return json.loads(self._payload(int(n)))

    def mac(self):
        return self._call("mac")[1].decode()

    def idf_heap_info(self):
        import json

        _, n = self._call("idf_info")
        return [tuple(r) for r in json.loads(self._payload(int(n)))]

    def idf_charge(self, kind):
        err, v = self._call("idf_charge " + kind)
        return None if err else v.decode()

    def idf_release(self, token):
        self._call("idf_release " + token)

    def idf_held(self, kind):
        return int(self._call("idf_held " + kind)[1])

    def idf_peak(self, n):
        return not self._call("idf_peak %d" % n)[0]

    def micropython(self):
        return self._call("micropython")[1].decode()

    def reset_cause(self):
        return int(self._call("reset_cause")[1])

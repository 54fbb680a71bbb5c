# The simulated LAN's time server: a small SNTP server (RFC 4330) on a host UDP port, answering from
# the host clock. The fake `ntptime` on a simulated board sends its queries here (espsim.modules
# ntptime); a test can stop it (no time server reachable) or skew it.
import socket
import struct
import threading
import time

NTP_DELTA = 2208988800  # 1900-01-01 to 1970-01-01, seconds
ENV = "ESPSIM_NTP"  # "127.0.0.1:PORT" of the LAN's time server, or "off"


def ntp_stamp(t):
    whole = int(t)
    return struct.pack("!II", (whole + NTP_DELTA) & 0xFFFFFFFF, int((t - whole) * 2**32) & 0xFFFFFFFF)


class Server:
    def __init__(self, skew=0.0, host="127.0.0.1"):
        self.skew = skew  # seconds added to the host clock in answers
        self.mute = False  # True: requests are read and dropped (a server that is down)
        self.answered = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.address = "%s:%d" % self.sock.getsockname()
        self._stop = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop:
            try:
                req, peer = self.sock.recvfrom(512)
            except socket.timeout:
                continue
            except OSError:
                return
            if self.mute or len(req) < 48:
                continue
            mode = req[0] & 7
            if mode != 3:  # only client requests are answered
                continue
            version = (req[0] >> 3) & 7
            now = time.time() + self.skew
            # LI 0, the client's version, mode 4 (server); stratum 2; poll 6; precision 2^-20
            head = struct.pack("!BBbb", (version << 3) | 4, 2, 6, -20)
            out = head + struct.pack("!II", 0, 0) + b"LOCL" + ntp_stamp(now) + req[40:48] + ntp_stamp(now) + ntp_stamp(time.time() + self.skew)
            try:
                self.sock.sendto(out, peer)
                self.answered += 1
            except OSError:
                pass

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self.sock.close()


_lan = []


def lan():
    """The host's shared LAN time server (started on first use): its "host:port"."""
    if not _lan:
        _lan.append(Server())
    return _lan[0].address

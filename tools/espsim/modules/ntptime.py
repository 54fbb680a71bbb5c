# Stand-in for micropython-lib's `ntptime` (micropython/net/ntptime/ntptime.py, frozen in the ESP32
# firmware) on a simulated board: the same SNTP query (48 bytes, first byte 0x23), the same
# `host` and `timeout` settings, the same conversion (timestamps before 2024 are taken as past the
# 2036 wrap) and the same settime() through machine.RTC().datetime(). What differs is the network:
# the simulated LAN has one time server, whatever `host` names (espsim.sntp; the ESPSIM_NTP
# environment variable holds its "host:port", or "off" for a LAN without one). Errors take the
# ESP32's forms: a query nobody answers raises OSError(116) (newlib's ETIMEDOUT) after `timeout`.
import os
import socket
import struct
import sys
from time import gmtime

host = "pool.ntp.org"
timeout = 1

_ETIMEDOUT_ESP32 = 116
_EAI_FAIL = -202  # what lwIP's getaddrinfo failure gives on the ESP32 port (modsocket.c)


def _server():
    where = os.getenv("ESPSIM_NTP")
    if where is None and sys.implementation.name != "micropython":
        from espsim import sntp

        where = sntp.lan()
    if not where or where == "off":
        return None
    h, p = where.rsplit(":", 1)
    return h, int(p)


def time():
    if not host:
        raise OSError(_EAI_FAIL)
    query = bytearray(48)
    query[0] = 0x23
    server = _server()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        if server is not None:
            s.sendto(query, socket.getaddrinfo(server[0], server[1])[0][-1])
        try:
            msg = s.recv(48)  # nobody there: this waits out the timeout, as on the board
        except OSError:
            raise OSError(_ETIMEDOUT_ESP32)
    finally:
        s.close()
    val = struct.unpack("!I", msg[40:44])[0]
    if val < 3913056000:  # 2024-01-01 as an NTP timestamp: earlier means past the 2036 wrap
        val += 0x100000000
    return val - (3155673600 if gmtime(0)[0] == 2000 else 2208988800)


def settime():
    t = time()
    import machine

    tm = gmtime(t)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6] + 1, tm[3], tm[4], tm[5], 0))

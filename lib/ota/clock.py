# The wall clock. After power-on an ESP32's RTC reads 2000-01-01 until something sets it
# (ports/esp32/machine_rtc.c reads gettimeofday), and MicroPython's mbedTLS checks certificate dates
# against it (CONFIG_MBEDTLS_HAVE_TIME_DATE, ports/esp32/main.c platform_mbedtls_time): until the
# clock is set every TLS handshake is refused. The agent sets it by NTP before its first connection.
#
# NTP is not authenticated: a network attacker can move the clock. What rests on it is certificate
# validity (expiry), the update window and log times; never signature trust (ota.trust).
from .compat import sleep_ms, unix_time
from .errors import OTAError

SET_AFTER = 1704067200  # 2024-01-01: a clock reading earlier was never set
MAX_SERVERS = 4


def is_set():
    return unix_time() >= SET_AFTER


def now():
    """Unix time when the clock is set, else None."""
    t = unix_time()
    return t if t >= SET_AFTER else None


def ensure(servers, tries=2, timeout_s=1):
    """Set the clock by NTP (micropython-lib's `ntptime`, frozen in the ESP32 firmware) unless it
    is set: each of `servers` in turn, `tries` rounds 1 s apart at most. Returns True when it was
    set now, False when it was set already. Raises OTAError("clock_unset") when no server gave a
    plausible time: the caller must not count that against a release (it is the network's fault)."""
    if is_set():
        return False
    if not servers:
        raise OTAError("clock_unset", "the clock is not set and no NTP server is configured (setting 'ntp')")
    import ntptime

    why = "no answer"
    for attempt in range(tries):
        for host in servers[:MAX_SERVERS]:
            ntptime.host = host
            ntptime.timeout = timeout_s
            try:
                ntptime.settime()
            except (OSError, IndexError, ValueError, OverflowError) as e:  # IndexError: a short answer
                why = "%s: %r" % (host, e)
                continue
            if is_set():
                return True
            why = "%s: answered a time before 2024" % host
        if attempt + 1 < tries:
            sleep_ms(1000)
    raise OTAError("clock_unset", "the clock is not set and NTP failed (%s)" % why)

# Stand-in for the parts of MicroPython's `machine` module the OTA library uses, on a simulated chip
# (ports/esp32/modmachine.c, machine_rtc.c).
import sys

from espsim import chip as _chip

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5

_MICROPYTHON = sys.implementation.name == "micropython"


class Reset(BaseException):
    """machine.reset() on the simulator: the harness reboots the board (BaseException, so device
    code's `except Exception` cannot swallow it)."""


class DeepSleep(BaseException):
    """machine.deepsleep(ms) on the simulator: the harness wakes the board through the bootloader's
    deep-sleep path (espsim.bootloader: the app that ran before, no app selection). `ms`: the
    timer, or None (no timer: woken by a pin)."""

    def __init__(self, ms):
        super().__init__("machine.deepsleep(%r)" % (ms,))
        self.ms = ms


def reset():
    raise Reset("machine.reset()")


def soft_reset():
    raise Reset("machine.soft_reset()")


def deepsleep(ms=None):
    # machine_sleep_helper: a deep sleep never returns; the chip wakes through the ROM and the
    # 2nd-stage bootloader, with RTC memory and the RTC kept.
    raise DeepSleep(ms)


def reset_cause():
    # mp_machine_reset_cause: ESP_RST_POWERON -> PWRON_RESET, ESP_RST_SW -> HARD_RESET (an
    # esp_restart(), i.e. machine.reset()), ESP_RST_DEEPSLEEP -> DEEPSLEEP_RESET
    return _chip.get().reset_cause()


def unique_id():
    return bytes([int(x, 16) for x in _chip.get().mac().split(":")])


def freq():
    return 240000000


# --- the RTC. machine_rtc.c: datetime() reads and sets gettimeofday(), which ESP-IDF keeps through
# resets and deep sleep and starts at 2000-01-01 at power-on. Tuples are (year, month, day,
# weekday, hours, minutes, seconds, subseconds), weekday 0 = Monday.
#
# Where the RTC lives on the simulator: under CPython, in the simulated board (espsim.board); under
# the MicroPython unix port, in the process clock, which the harness starts at the board's time
# with libfaketime and which this module moves through the file ESPSIM_RTC_FILE names (so that the
# port's own time.time() and mbedTLS's certificate date check see the same clock as on a chip).
_EPOCH_2000 = 946684800


def _days_before_year(y):
    y -= 1
    return y * 365 + y // 4 - y // 100 + y // 400


def _unix(y, mo, d, h, mi, s):
    days = _days_before_year(y) - _days_before_year(1970)
    mdays = (31, 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    for m in range(mo - 1):
        days += mdays[m]
    return ((days + d - 1) * 24 + h) * 3600 + mi * 60 + s


def _now():
    if _MICROPYTHON:
        import time

        t = time.time()
        return t + (_EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0)
    if _chip.current is None:
        import time

        return time.time()  # no board attached (host-side use of the device library)
    return _chip.get().rtc_now()


def _set(t):
    if _MICROPYTHON:
        import os
        import time

        path = os.getenv("ESPSIM_RTC_FILE")
        if not path:
            raise OSError(1, "the simulated RTC is not settable here (no ESPSIM_RTC_FILE)")
        host = time.time() + (_EPOCH_2000 if time.gmtime(0)[0] == 2000 else 0) - _faked_offset(path)
        with open(path, "w") as f:
            f.write("%+d\n" % int(t - host))  # libfaketime: the offset, in seconds
        return
    _chip.get().rtc_set(t)


def _faked_offset(path):
    try:
        with open(path) as f:
            return int(f.read().strip() or "0")
    except (OSError, ValueError):
        return 0


class RTC:
    def datetime(self, dt=None):
        if dt is None:
            import time

            t = _now()
            whole = int(t)
            y, mo, d, h, mi, s, wd = _gmtime(whole)
            return (y, mo, d, wd, h, mi, s, int((t - whole) * 1000000))
        _set(_unix(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]) + dt[7] / 1000000)

    def init(self, dt):
        # machine_rtc_init: the tuple without the weekday (hour at index 3)
        _set(_unix(dt[0], dt[1], dt[2], dt[3], dt[4], dt[5]))


def _gmtime(t):
    days, rem = divmod(t, 86400)
    h, rem = divmod(rem, 3600)
    mi, s = divmod(rem, 60)
    wd = (days + 3) % 7  # 1970-01-01 was a Thursday
    y = 1970
    while True:
        n = 366 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 365
        if days < n:
            break
        days -= n
        y += 1
    mdays = (31, 29 if n == 366 else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
    mo = 1
    for m in mdays:
        if days < m:
            break
        days -= m
        mo += 1
    return y, mo, days + 1, h, mi, s, wd

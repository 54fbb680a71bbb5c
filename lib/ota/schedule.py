# When to check next, with no synced clock (ticks only): the interval with random jitter, so a
# fleet that powered up together spreads out; after failures an exponentially growing, capped,
# randomised delay; a server's Retry-After is a floor, itself capped by the settings' retry_max
# (a server must not be able to put a device to sleep for years). All in milliseconds.
from .compat import ticks_diff, ticks_ms, urandom

_MAX_DIGITS = 12  # delta-seconds longer than this are absurd anyway: retry_max caps them
MAX_DELAY = 30 * 86400  # seconds: no setting (nor a config document that sets one) sleeps longer
_MONTHS = b"JanFebMarAprMayJunJulAugSepOctNovDec"


def _rand():
    b = urandom(4)
    return (b[0] | (b[1] << 8) | (b[2] << 16) | ((b[3] & 0x3F) << 24)) / float(1 << 30)  # 0 <= x < 1


def next_delay(cfg, failures=0, retry_after=None):
    """Milliseconds until the next check."""
    if failures:
        cap = min(cfg["retry"] * (1 << min(failures - 1, 20)), cfg["retry_max"])
        delay = cap * (0.5 + 0.5 * _rand())  # "equal jitter": at least half the backoff
    else:
        j = cfg["jitter"]
        delay = cfg["interval"] * (1 - j + 2 * j * _rand())
    if retry_after and retry_after > 0:
        delay = max(delay, min(retry_after, cfg["retry_max"]))
    return int(min(delay, MAX_DELAY) * 1000)


def retry_after(value, date=None, now=None):
    """The seconds a server asked to wait: `value` is a Retry-After header (bytes), delta-seconds
    or an HTTP-date, the latter judged against the response's Date header (`date`, bytes), else
    the trusted clock (`now`, Unix time). None when it asks for nothing usable (malformed, in the
    past, no way to tell). Not bounded here: next_delay() caps it at retry_max."""
    if not value:
        return None
    v = value.strip()
    if v and v.isdigit():
        return int(v) if len(v) <= _MAX_DIGITS else 10 ** _MAX_DIGITS
    t = http_date(v)
    ref = http_date(date) if date else None
    if ref is None:
        ref = now
    if t is None or ref is None or t <= ref:
        return None
    return t - ref


def _num(b, lo, hi):
    # Decimal digits only, in lo..hi; -1 otherwise.
    if not b or len(b) > 4 or not b.isdigit():
        return -1
    n = int(b)
    return n if lo <= n <= hi else -1


def http_date(b):
    """Unix time of an HTTP-date (bytes; RFC 9110 5.6.7: IMF-fixdate "Sun, 06 Nov 1994 08:49:37
    GMT", or the obsolete RFC 850 "Sunday, 06-Nov-94 08:49:37 GMT" and asctime "Sun Nov  6
    08:49:37 1994" forms a recipient must accept); None if it is not one."""
    p = b.split() if b and len(b) <= 64 else []
    if len(p) == 6 and p[0][-1:] == b"," and p[5] == b"GMT":  # IMF-fixdate
        day, mon, year, hms = p[1], p[2], _num(p[3], 1900, 9999), p[4]
    elif len(p) == 4 and p[0][-1:] == b"," and p[3] == b"GMT":  # RFC 850: two-digit year
        d = p[1].split(b"-")
        if len(d) != 3 or len(d[2]) != 2:
            return None
        day, mon, hms = d[0], d[1], p[2]
        year = _num(d[2], 0, 99)
        year = -1 if year < 0 else year + (2000 if year < 70 else 1900)
    elif len(p) == 5:  # asctime
        day, mon, hms, year = p[2], p[1], p[3], _num(p[4], 1900, 9999)
    else:
        return None
    m = _MONTHS.find(mon) if len(mon) == 3 else -1
    day = _num(day, 1, 31)
    t = hms.split(b":")
    if m < 0 or m % 3 or year < 0 or day < 0 or len(t) != 3:
        return None
    hh, mm, ss = _num(t[0], 0, 23), _num(t[1], 0, 59), _num(t[2], 0, 60)
    if hh < 0 or mm < 0 or ss < 0:
        return None
    # days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil)
    mo = m // 3 + 1
    y = year - (mo <= 2)
    era = y // 400
    yoe = y - era * 400
    doe = yoe * 365 + yoe // 4 - yoe // 100 + (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5 + day - 1
    return (era * 146097 + doe - 719468) * 86400 + hh * 3600 + mm * 60 + ss


class Timer:
    """A deadline in ticks that survives ticks_ms() wrapping (sleep in chunks, count down)."""

    _CHUNK = 3600000  # well inside half the ticks period on every port

    def __init__(self, delay_ms):
        self.left = delay_ms
        self.mark = ticks_ms()

    def remaining(self):
        now = ticks_ms()
        self.left -= max(0, ticks_diff(now, self.mark))
        self.mark = now
        return max(0, self.left)

    def chunk(self):
        return min(self.remaining(), self._CHUNK)

    def expire(self):
        self.left = 0



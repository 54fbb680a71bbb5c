# When to check next, with no synced clock (ticks only): the interval with random jitter, so a
# fleet that powered up together spreads out; after failures an exponentially growing, capped,
# randomised delay; a server's Retry-After is a floor. All in milliseconds.
from .compat import ticks_diff, ticks_ms, urandom


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
    if retry_after:
        delay = max(delay, retry_after)
    return int(delay * 1000)


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



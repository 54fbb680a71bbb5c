# SPI NOR flash over a file, with the semantics that make update code fail in the field:
# an erase sets a 4 KiB sector to 0xFF, a program can only clear bits (1 -> 0), and power can
# vanish during any erase or program, leaving what a real chip would leave.
SECTOR = 4096
PAGE = 256  # SPI flash programs at most one 256-byte page per command


from .chip import PowerCut  # noqa: F401 (re-exported: flash operations raise it)


class FlashError(Exception):
    pass


CUT_BEFORE = "before"  # the operation never started
CUT_TORN = "torn"  # the operation was interrupted half-way


class Flash:
    def __init__(self, path, cut_at=None, cut_mode=CUT_BEFORE, log=None, timing=None):
        self.path = path
        self.f = open(path, "r+b")
        self.f.seek(0, 2)
        self.size = self.f.tell()
        self.ops = 0  # erase/program operations performed so far (the power-cut clock)
        self.cut_at = cut_at  # the operation index at which power fails, or None
        self.cut_mode = cut_mode
        self.log = log  # a list to append (kind, addr, length) to, or None
        self.timing = timing  # an espsim.flashtiming.FlashTiming to charge, or None
        # Page-sized scratch space, so simulating the flash costs no heap per operation
        # (under MicroPython it shares the heap with the device code being measured).
        self._page = bytearray(PAGE)
        self._pmv = memoryview(self._page)
        self._ff = memoryview(b"\xff" * PAGE)

    def close(self):
        if self.f:
            self.f.close()
            self.f = None

    def _check(self, addr, n):
        if addr < 0 or n < 0 or addr + n > self.size:
            raise FlashError("flash access 0x%x+0x%x outside 0x%x bytes" % (addr, n, self.size))

    def _tick(self, kind, addr, n):
        # Returns True when this operation is the one power fails in.
        if self.cut_at is not None and self.ops > self.cut_at:
            # Power is gone for good: code still unwinding (a `with` closing a file) writes nothing.
            raise PowerCut("power is off: %s at 0x%x never happens" % (kind, addr))
        if self.log is not None:
            self.log.append((kind, addr, n))
        i = self.ops
        self.ops += 1
        return self.cut_at is not None and i == self.cut_at

    def read(self, addr, n):
        self._check(addr, n)
        if self.timing is not None:
            self.timing.read(n)
        self.f.seek(addr)
        return self.f.read(n)

    def readinto(self, addr, buf):
        self._check(addr, len(buf))
        if self.timing is not None:
            self.timing.read(len(buf))
        self.f.seek(addr)
        n = self.f.readinto(buf)
        if n != len(buf):
            raise FlashError("short read at 0x%x" % addr)

    def erase(self, addr, n):
        if addr % SECTOR or n % SECTOR:
            raise FlashError("erase 0x%x+0x%x not sector aligned" % (addr, n))
        self._check(addr, n)
        for a in range(addr, addr + n, SECTOR):
            if self._tick("erase", a, SECTOR):
                if self.cut_mode == CUT_TORN:
                    # A sector erased part-way: model it as its first half erased.
                    self._fill_ff(a, SECTOR // 2)
                raise PowerCut("power cut while erasing 0x%x" % a)
            if self.timing is not None:
                self.timing.erase(1)
            self._fill_ff(a, SECTOR)

    def _fill_ff(self, addr, n):
        self.f.seek(addr)
        for _ in range(n // PAGE):
            self.f.write(self._ff)
        self.f.flush()

    def write(self, addr, data):
        """Program `data` at addr: bits can only go from 1 to 0 (AND with what is there)."""
        n = len(data)
        self._check(addr, n)
        cut = self._tick("write", addr, n)
        if cut:
            if self.cut_mode != CUT_TORN:
                raise PowerCut("power cut before programming 0x%x" % addr)
            n = n // 2  # programmed part-way
        if self.timing is not None:
            self.timing.program(addr, n)
        src = memoryview(data)
        done = 0
        while done < n:
            k = min(PAGE, n - done)
            page = self._pmv[:k]
            self.f.seek(addr + done)
            self.f.readinto(page)
            chunk = src[done:done + k]
            if page == self._ff[:k]:
                out = chunk  # programming erased flash: the data lands as is
            else:
                for i in range(k):
                    page[i] &= chunk[i]
                out = page
            self.f.seek(addr + done)
            self.f.write(out)
            done += k
        self.f.flush()
        if cut:
            raise PowerCut("power cut while programming 0x%x" % addr)


def create(path, size=4 * 1024 * 1024):
    """A new, fully erased flash image file."""
    if size % SECTOR:
        raise FlashError("flash size must be a multiple of 4096")
    ff = b"\xff" * SECTOR
    with open(path, "wb") as f:
        for _ in range(size // SECTOR):
            f.write(ff)

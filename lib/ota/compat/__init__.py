# Every difference between CPython and MicroPython that the device code meets lives in this
# package, so no other module tests which interpreter it runs on (REFERENCE.md §6):
#   compat          constants, ticks, time, heap, the fast byte loops of the image check and patch
#   compat.net      sockets and TLS            (imported only by http.py)
#   compat.decompress  zlib/gzip decompression (imported only by inflate.py)
#   compat.viper    MicroPython-only @viper loops (a plain twin of each lives here)
# Kept in several modules so a device that only installs full images never loads the rest.
import sys

# The running port's errno values: the ESP32 port's are newlib's (ETIMEDOUT 116, EHOSTUNREACH 118,
# ENOTCONN 128), the unix port's and CPython's the host's (Linux: 110, 113, 107). Imported by
# name on purpose: mpy-cross folds `errno.ETIMEDOUT` into the COMPILING host's value
# (MICROPY_COMP_MODULE_CONST), which a .mpy would then carry to the ESP32.
from errno import ENOMEM, ETIMEDOUT  # noqa: F401

MICROPYTHON = sys.implementation.name == "micropython"

if MICROPYTHON:
    from micropython import const  # noqa: F401

    try:
        from .viper import add_bytes, xor_fold  # noqa: F401
    except (SyntaxError, ValueError, ImportError, NotImplementedError):
        # No native emitter in this firmware (RISC-V chips, ESP32-C3/C6, before MicroPython 1.24:
        # MICROPY_EMIT_RV32): "invalid micropython decorator", or a .mpy of another architecture.
        # The plain loops are slower, not wrong.
        def xor_fold(buf, start, end, acc):
            for i in range(start, end):
                acc ^= buf[i]
            return acc

        def add_bytes(dst, dst_off, src, src_off, n):
            for i in range(n):
                dst[dst_off + i] = (dst[dst_off + i] + src[src_off + i]) & 0xFF

    import gc
    import time as _time

    ticks_ms = _time.ticks_ms
    ticks_diff = _time.ticks_diff
    ticks_add = _time.ticks_add
    sleep_ms = _time.sleep_ms

    def mem_free():
        return gc.mem_free()

    def collect():
        gc.collect()

    # Ports built with a 2000-01-01 epoch (the ESP32 among them) report seconds since then.
    _EPOCH_OFFSET = 946684800 if _time.gmtime(0)[0] == 2000 else 0

    def unix_time():
        return int(_time.time()) + _EPOCH_OFFSET  # the unix port's time() is a float

else:
    import time as _time

    def const(x):
        return x

    def xor_fold(buf, start, end, acc):
        # XOR of buf[start:end] into acc (the ESP image checksum); reduce runs in C here.
        from functools import reduce
        from operator import xor
        return reduce(xor, memoryview(buf)[start:end], acc)

    def ticks_ms():
        return int(_time.monotonic() * 1000) & 0x3FFFFFFF  # pyright: ignore[reportAttributeAccessIssue] (CPython)

    def ticks_diff(a, b):
        # Same wrap-around arithmetic as MicroPython's ticks (30-bit period).
        d = (a - b) & 0x3FFFFFFF
        return d - 0x40000000 if d & 0x20000000 else d

    def ticks_add(a, delta):
        return (a + delta) & 0x3FFFFFFF

    def sleep_ms(ms):
        _time.sleep(ms / 1000)

    def mem_free():
        return None  # CPython has no fixed heap to report

    def collect():
        pass

    def unix_time():
        # CPython has no RTC of its own: on a simulated board (espsim gives CPython a `machine`
        # module) the board's RTC, which reads 2000-01-01 after power-on until it is set, as on a
        # chip; elsewhere the host's clock.
        try:
            import machine
        except ImportError:
            return int(_time.time())
        import calendar

        y, mo, d, _, h, mi, s, _ = machine.RTC().datetime()
        return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))


def c_heap_largest():
    """Largest free block of the ESP-IDF heap (esp32.idf_heap_info), where TLS buffers, sockets and
    NVS handles live on an ESP32, outside the GC heap; None where there is none to ask."""
    try:
        import esp32

        regions = esp32.idf_heap_info(esp32.HEAP_DATA)
    except (ImportError, AttributeError, RuntimeError):  # RuntimeError: espsim with no board attached
        return None
    best = 0
    for r in regions:
        if r[2] > best:
            best = r[2]
    return best


def urandom(n):
    import os
    return os.urandom(n)


def hexlify(data):
    import binascii
    return binascii.hexlify(data).decode()


# --- delta (used by ota/delta.py)
# add_bytes(dst, dst_off, src, src_off, n): dst[dst_off + i] = (dst[dst_off + i] + src[src_off + i])
# mod 256 for i < n, in place: the inner loop of a bsdiff patch (new = diff + old).
if not MICROPYTHON:

    def add_bytes(dst, dst_off, src, src_off, n):
        # Bytewise addition without carries between bytes, on whole runs as big integers (SWAR):
        # add the low 7 bits of each byte, then XOR the top bits back in.
        if n <= 0:
            return
        a = int.from_bytes(dst[dst_off : dst_off + n], "little")
        b = int.from_bytes(src[src_off : src_off + n], "little")
        low7 = int.from_bytes(b"\x7f" * n, "little")
        top = int.from_bytes(b"\x80" * n, "little")
        r = ((a & low7) + (b & low7)) ^ ((a ^ b) & top)
        dst[dst_off : dst_off + n] = r.to_bytes(n, "little")

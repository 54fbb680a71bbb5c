# MicroPython-only fast loops (@micropython.viper), imported by ota.compat on MicroPython only;
# each has a plain-Python twin in ota/compat/__init__.py for CPython.
import micropython


@micropython.viper
def xor_fold(buf, start: int, end: int, acc: int) -> int:
    p = ptr8(buf)  # noqa: F821 - viper builtin
    i = start
    while i < end:
        acc ^= p[i]
        i += 1
    return acc


@micropython.viper
def add_bytes(dst, dst_off: int, src, src_off: int, n: int):
    # bsdiff's inner loop: dst[i] = (dst[i] + src[i]) mod 256; a ptr8 store keeps the low byte.
    d = ptr8(dst)  # noqa: F821 - viper builtin
    s = ptr8(src)  # noqa: F821 - viper builtin
    i = 0
    while i < n:
        d[dst_off + i] = d[dst_off + i] + s[src_off + i]
        i += 1

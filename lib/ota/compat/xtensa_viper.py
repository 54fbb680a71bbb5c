# The viper loops of ota/compat/xtensa.py (MicroPython only; their plain twins are xtensa_py.py).
import micropython

# 0x1000000 below is xtensa.BIAS (map shifts are stored + BIAS)


@micropython.viper
def code_rules(src, s0: int, dst, d0: int, a: int, b: int, sf: int, se: int, va: int,
               ms, md, nm: int, ps, pe, np: int, entry) -> int:
    s = ptr8(src)  # noqa: F821 - viper builtins
    d = ptr8(dst)  # noqa: F821
    m_s = ptr32(ms)  # noqa: F821
    m_d = ptr32(md)  # noqa: F821
    p_s = ptr32(ps)  # noqa: F821
    p_e = ptr32(pe)  # noqa: F821
    q = a - 4
    if q < sf:
        q = sf
    end = b
    if end > se - 3:
        end = se - 3
    prev1 = 0  # an instruction was found at q - 1 / q - 2
    prev2 = 0
    kp = 0  # first pool ending after pc
    km = 0  # map piece of pc
    done = 0
    while q < end:
        pc = va + q - sf
        while kp < np and p_e[kp] <= pc:
            kp += 1
        while km < nm and m_s[km] <= pc:
            km += 1
        dpc = 0
        if km > 0:
            dpc = m_d[km - 1] - 0x1000000
        found = 0
        put = 0
        x = 0
        y = 0
        z = 0
        inpool = 0
        if kp < np:
            if p_s[kp] <= pc + 2:
                inpool = 1
        b0 = s[q - s0]
        if inpool == 0 and (b0 & 0x0F == 5) and (b0 & 0x30 != 0):
            off = (b0 >> 6) | (s[q + 1 - s0] << 2) | (s[q + 2 - s0] << 10)
            if off & 0x20000:
                off -= 0x40000
            t = (pc & (-4)) + (off << 2) + 4
            lo = 0
            hi = nm
            while lo < hi:
                mid = (lo + hi) >> 1
                if m_s[mid] <= t:
                    lo = mid + 1
                else:
                    hi = mid
            dt = 0
            if lo > 0:
                dt = m_d[lo - 1] - 0x1000000
            if dt != dpc and int(entry(t)):
                found = 1
                if prev1 == 0 and prev2 == 0:
                    off = (t + dt) - ((pc + dpc) & (-4)) - 4
                    if (off & 3) == 0 and -0x80000 <= off and off < 0x80000:
                        off = (off >> 2) & 0x3FFFF
                        x = (b0 & 0x3F) | ((off & 3) << 6)
                        y = (off >> 2) & 0xFF
                        z = off >> 10
                        put = 1
        elif inpool == 0 and (b0 & 0x0F == 1):
            lit = ((pc + 3) & (-4)) + (((s[q + 1 - s0] | (s[q + 2 - s0] << 8)) - 0x10000) << 2)
            lo = 0
            hi = np
            while lo < hi:
                mid = (lo + hi) >> 1
                if p_s[mid] <= lit:
                    lo = mid + 1
                else:
                    hi = mid
            if lo > 0 and lit < p_e[lo - 1]:
                lo = 0
                hi = nm
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if m_s[mid] <= lit:
                        lo = mid + 1
                    else:
                        hi = mid
                dl = 0
                if lo > 0:
                    dl = m_d[lo - 1] - 0x1000000
                if dl != dpc:
                    found = 1
                    if prev1 == 0 and prev2 == 0:
                        off = (lit + dl) - ((pc + dpc + 3) & (-4))
                        if (off & 3) == 0 and -0x40000 <= off and off < 0:
                            off = (off >> 2) & 0xFFFF
                            x = b0
                            y = off & 0xFF
                            z = off >> 8
                            put = 1
        if put:
            # the instruction's three bytes, those of them inside [a, b)
            if a <= q and q < b:
                d[q - d0] = x
            if a <= q + 1 and q + 1 < b:
                d[q + 1 - d0] = y
            if a <= q + 2 and q + 2 < b:
                d[q + 2 - d0] = z
            done += 1
        prev2 = prev1
        prev1 = found
        q += 1
    return done

@micropython.viper
def word_rules(src, s0: int, dst, d0: int, a: int, b: int, sf: int, se: int, va: int,
               ms, md, nm: int, rl, rh, nr: int, ps, pe, np: int, pooled: int) -> int:
    s = ptr8(src)  # noqa: F821
    d = ptr8(dst)  # noqa: F821
    m_s = ptr32(ms)  # noqa: F821
    m_d = ptr32(md)  # noqa: F821
    r_l = ptr32(rl)  # noqa: F821
    r_h = ptr32(rh)  # noqa: F821
    p_s = ptr32(ps)  # noqa: F821
    p_e = ptr32(pe)  # noqa: F821
    q = a - 3
    if q < sf:
        q = sf
    q += (sf - va - q) & 3  # the first aligned address
    kp = 0
    done = 0
    while q < b and q + 4 <= se:
        w = va + q - sf
        ok = 1
        if pooled:
            while kp < np and p_e[kp] < w + 4:
                kp += 1
            ok = 0
            if kp < np and p_s[kp] <= w:
                ok = 1
        if ok:
            i = q - s0
            v = s[i] | (s[i + 1] << 8) | (s[i + 2] << 16) | (s[i + 3] << 24)
            r = 0
            ok = 0
            while r < nr:
                if r_l[r] <= v and v < r_h[r]:
                    ok = 1
                r += 1
            if ok:
                lo = 0
                hi = nm
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if m_s[mid] <= v:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo > 0 and m_d[lo - 1] != 0x1000000:
                    v += m_d[lo - 1] - 0x1000000
                    j = 0
                    while j < 4:
                        if a <= q + j and q + j < b:
                            d[q + j - d0] = v >> (8 * j)
                        j += 1
                    done += 1
        q += 4
    return done

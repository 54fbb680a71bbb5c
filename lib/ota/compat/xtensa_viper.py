# The viper loops of ota/compat/xtensa.py (MicroPython only; their plain twins are xtensa_py.py).
# 0x1000000 below is xtensa.BIAS (map shifts are stored + BIAS).
import micropython


@micropython.viper
def code_rules(buf, d0: int, n: int, ctx, a: int, b: int, sf: int, se: int, va: int,
               ms, md, nm: int, ps, pe, np: int, entry) -> int:
    s = ptr8(buf)  # noqa: F821 - viper builtins
    c = ptr8(ctx)  # noqa: F821
    m_s = ptr32(ms)  # noqa: F821
    m_d = ptr32(md)  # noqa: F821
    p_s = ptr32(ps)  # noqa: F821
    p_e = ptr32(pe)  # noqa: F821
    q0 = a - 4
    if q0 < sf:
        q0 = sf
    end = b
    if end > se - 3:
        end = se - 3
    if q0 >= end:
        return 0
    hi = d0 + n
    prev1 = 0  # an instruction was found at q - 1 / q - 2
    prev2 = 0
    kp = 0  # first pool ending after pc
    km = 0  # map piece of pc
    done = 0
    b0 = 0
    b1 = 0
    b2 = 0
    q = q0 - 2  # two rounds only fetch: b0, b1, b2 are the ORIGINAL bytes at q, q+1, q+2
    while q < end:
        i = q + 2  # the byte at file offset q + 2: before d0 and after hi it is in ctx
        if i < d0:
            v = c[i - d0 + 4]
        elif i < hi:
            v = s[i - d0]
        else:
            v = c[i - hi + 4]
        b0 = b1
        b1 = b2
        b2 = v
        if q < q0:
            q += 1
            continue
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
        # the address the instruction refers to: a CALL's target, or an L32R's literal if it
        # lies in a listed pool; then its shift, where it differs from the instruction's own
        kind = 0
        t = 0
        if inpool == 0 and (b0 & 0x0F == 5) and (b0 & 0x30 != 0):
            off = (b0 >> 6) | (b1 << 2) | (b2 << 10)
            if off & 0x20000:
                off -= 0x40000
            t = (pc & (-4)) + (off << 2) + 4
            kind = 1
        elif inpool == 0 and (b0 & 0x0F == 1):
            t = ((pc + 3) & (-4)) + (((b1 | (b2 << 8)) - 0x10000) << 2)
            lo = 0
            hi2 = np
            while lo < hi2:
                mid = (lo + hi2) >> 1
                if p_s[mid] <= t:
                    lo = mid + 1
                else:
                    hi2 = mid
            if lo > 0 and t < p_e[lo - 1]:
                kind = 2
        dt = dpc
        if kind:
            lo = 0
            hi2 = nm
            while lo < hi2:
                mid = (lo + hi2) >> 1
                if m_s[mid] <= t:
                    lo = mid + 1
                else:
                    hi2 = mid
            dt = 0
            if lo > 0:
                dt = m_d[lo - 1] - 0x1000000
        if dt != dpc and (kind == 2 or int(entry(t))):
            found = 1
            if prev1 == 0 and prev2 == 0:
                if kind == 1:
                    off = (t + dt) - ((pc + dpc) & (-4)) - 4
                    if (off & 3) == 0 and -0x80000 <= off and off < 0x80000:
                        off = (off >> 2) & 0x3FFFF
                        x = (b0 & 0x3F) | ((off & 3) << 6)
                        y = (off >> 2) & 0xFF
                        z = off >> 10
                        put = 1
                else:
                    off = (t + dt) - ((pc + dpc + 3) & (-4))
                    if (off & 3) == 0 and -0x40000 <= off and off < 0:
                        off = (off >> 2) & 0xFFFF
                        x = b0
                        y = off & 0xFF
                        z = off >> 8
                        put = 1
        if put:
            # the instruction's three bytes, those of them inside [a, b); the loop has already
            # fetched the originals of q + 1 and q + 2
            if a <= q and q < b:
                s[q - d0] = x
            if a <= q + 1 and q + 1 < b:
                s[q + 1 - d0] = y
            if a <= q + 2 and q + 2 < b:
                s[q + 2 - d0] = z
            done += 1
        prev2 = prev1
        prev1 = found
        q += 1
    return done


@micropython.viper
def word_rules(buf, d0: int, n: int, ctx, a: int, b: int, sf: int, se: int, va: int,
               ms, md, nm: int, rl, rh, nr: int, ps, pe, np: int, pooled: int) -> int:
    s = ptr8(buf)  # noqa: F821
    c = ptr8(ctx)  # noqa: F821
    m_s = ptr32(ms)  # noqa: F821
    m_d = ptr32(md)  # noqa: F821
    r_l = ptr32(rl)  # noqa: F821
    r_h = ptr32(rh)  # noqa: F821
    p_s = ptr32(ps)  # noqa: F821
    p_e = ptr32(pe)  # noqa: F821
    hi = d0 + n
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
            v = 0
            j = 0
            while j < 4:
                i = q + j
                if i < d0:
                    x = c[i - d0 + 4]
                elif i < hi:
                    x = s[i - d0]
                else:
                    x = c[i - hi + 4]
                v |= x << (8 * j)
                j += 1
            r = 0
            ok = 0
            while r < nr:
                if r_l[r] <= v and v < r_h[r]:
                    ok = 1
                r += 1
            if ok:
                lo = 0
                hi2 = nm
                while lo < hi2:
                    mid = (lo + hi2) >> 1
                    if m_s[mid] <= v:
                        lo = mid + 1
                    else:
                        hi2 = mid
                if lo > 0 and m_d[lo - 1] != 0x1000000:
                    v += m_d[lo - 1] - 0x1000000
                    j = 0
                    while j < 4:
                        if a <= q + j and q + j < b:
                            s[q + j - d0] = v >> (8 * j)
                        j += 1
                    done += 1
        q += 4
    return done

# Ed25519 signature verification (RFC 8032), verify only, in plain Python: MicroPython exposes
# no signature check (REFERENCE §9). verify(public_key, message, signature) -> bool.
#
# What is accepted is exactly what OpenSSL (the `cryptography` package) accepts; the tests
# compare the two case by case:
# - S must be below the group order L, else False;
# - the equation is the cofactorless [S]B == R + [k]A, k = SHA-512(R || A || M) mod L;
# - R is compared by encoding: an R that is not the canonical encoding of a point (y >= p, x = 0
#   with the sign bit set, off the curve) never matches;
# - A is decoded the way OpenSSL decodes it: y is taken mod p (so a y >= p key is accepted and
#   hashed as given) and x = 0 with the sign bit set is accepted; off the curve is False;
# - small-order and mixed-order A and R get no special treatment, as in OpenSSL. With a
#   small-order A anyone can forge, but A is the provisioned trusted key, never chosen by the
#   sender of an update; rejecting more than the signer's library would only add a way for
#   good signatures to fail.
# Variable time: verification handles public data only.
#
# Speed. MicroPython sends every int operation through the allocator, so operations are
# counted, not multiplications. Doublings dominate, so their number is halved, after Pornin
# ("Optimized lattice basis reduction in dimension 2, and fast Schnorr and EdDSA signature
# verification", 2020): with k1 = k * k2 mod 8L, where 8L is the order of the whole curve group,
# k1 and k2 about 128 bits and k2 odd with |k2| < L,
#     [k2]([S]B - [k]A - R) = [k2 S mod L]B - [k1]A - [k2]R,
# and the left side is the identity exactly when [S]B - [k]A == R, torsion included (an odd k2
# below L kills no point but the identity). Here the split comes from stopping the extended
# Euclidean algorithm halfway. The right side is one pass of ~130 doublings over four NAF
# scalars: k1 against odd multiples of A, k2 against those of R (both built per call), and the
# two 128-bit halves of k2 S mod L against odd multiples of B and of [2**128]B stored below.
# Extended coordinates; a product is folded once (2**255 = 19 mod p) when it only feeds
# additions before the next product, and reduced with % when it is kept as a coordinate, which
# bounds sizes.
from .compat import const
from .sha512 import sha512

_P = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFED)
_MASK = const(0x7FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)
_L = const(0x1000000000000000000000000000000014DEF9DEA2F79CD65812631A5CF5D3ED)
_L8 = const(0x80000000000000000000000000000000A6F7CEF517BCE6B2C09318D2E7AE9F68)
_HALF = const(0x100000000000000000000000000000000)  # 2**128
_LOW128 = const(0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF)
_D = const(0x52036CEE2B6FFE738CC740797779E89800700A4D4141D8AB75EB4DCA135978A3)
_D2 = const(0x2406D9DC56DFFCE7198E80F2EEF3D13000E0149A8283B156EBD69B9426B2F159)
_SQRT_M1 = const(0x2B8324804FC1DF0B2B4D00993DFBD7A72F431806AD2FE478C4EE1B274A0EA0B0)
_W_POINT = const(4)  # NAF width for k1, k2: 4 odd multiples of A and of R per call
_W_BASE = const(5)  # NAF width for the halves of k2 S: 8 odd multiples of B, of [2**128]B

# [1]B, [3]B, ... [15]B, then the same multiples of [2**128]B, each as y + x, y - x,
# 2*d*x*y (mod p), 32 bytes little-endian apiece (tests/ota/test_ed25519.py recomputes them).
_BASE_ODD = (
    b"\x85\x3b\x8c\xf5\xc6\x93\xbc\x2f\x19\x0e\x8c\xfb\xc6\x2d\x93\xcf"
    b"\xc2\x42\x3d\x64\x98\x48\x0b\x27\x65\xba\xd4\x33\x3a\x9d\xcf\x07"
    b"\x3e\x91\x40\xd7\x05\x39\x10\x9d\xb3\xbe\x40\xd1\x05\x9f\x39\xfd"
    b"\x09\x8a\x8f\x68\x34\x84\xc1\xa5\x67\x12\xf8\x98\x92\x2f\xfd\x44"
    b"\x68\xaa\x7a\x87\x05\x12\xc9\xab\x9e\xc4\xaa\xcc\x23\xe8\xd9\x26"
    b"\x8c\x59\x43\xdd\xcb\x7d\x1b\x5a\xa8\x65\x0c\x9f\x68\x7b\x11\x6f"
    b"\x30\x97\xee\x4c\xa8\xb0\x25\xaf\x8a\x4b\x86\xe8\x30\x84\x5a\x02"
    b"\x32\x67\x01\x9f\x02\x50\x1b\xc1\xf4\xf8\x80\x9a\x1b\x4e\x16\x7a"
    b"\x65\xd2\xfc\xa4\xe8\x1f\x61\x56\x7d\xba\xc1\xe5\xfd\x53\xd3\x3b"
    b"\xbd\xd6\x4b\x21\x1a\xf3\x31\x81\x62\xda\x5b\x55\x87\x15\xb9\x2a"
    b"\x89\xd8\xd0\x0d\x3f\x93\xae\x14\x62\xda\x35\x1c\x22\x23\x94\x58"
    b"\x4c\xdb\xf2\x8c\x45\xe5\x70\xd1\xc6\xb4\xb9\x12\xaf\x26\x28\x5a"
    b"\x33\xbb\xa5\x08\x44\xbc\x12\xa2\x02\xed\x5e\xc7\xc3\x48\x50\x8d"
    b"\x44\xec\xbf\x5a\x0c\xeb\x1b\xdd\xeb\x06\xe2\x46\xf1\xcc\x45\x29"
    b"\xba\xd6\x47\xa4\xc3\x82\x91\x7f\xb7\x29\x27\x4b\xd1\x14\x00\xd5"
    b"\x87\xa0\x64\xb8\x1c\xf1\x3c\xe3\xf3\x55\x1b\xeb\x73\x7e\x4a\x15"
    b"\x85\x82\x2a\x81\xf1\xdb\xbb\xbc\xfc\xd1\xbd\xd0\x07\x08\x0e\x27"
    b"\x2d\xa7\xbd\x1b\x0b\x67\x1b\xb4\x9a\xb6\x3b\x6b\x69\xbe\xaa\x43"
    b"\xbf\xa3\x4e\x94\xd0\x5c\x1a\x6b\xd2\xc0\x9d\xb3\x3a\x35\x70\x74"
    b"\x49\x2e\x54\x28\x82\x52\xb2\x71\x7e\x92\x3c\x28\x69\xea\x1b\x46"
    b"\xb1\x21\x32\xaa\x9a\x2c\x6f\xba\xa7\x23\xba\x3b\x53\x21\xa0\x6c"
    b"\x3a\x2c\x19\x92\x4f\x76\xea\x9d\xe0\x17\x53\x2e\x5d\xdd\x6e\x1d"
    b"\xa2\xb3\xb8\x01\xc8\x6d\x83\xf1\x9a\xa4\x3e\x05\x47\x5f\x03\xb3"
    b"\xf3\xad\x77\x58\xba\x41\x9c\x52\xa7\x90\x0f\x6a\x1c\xbb\x9f\x7a"
    b"\x2f\x63\xa8\xa6\x8a\x67\x2e\x9b\xc5\x46\xbc\x51\x6f\x9e\x50\xa6"
    b"\xb5\xf5\x86\xc6\xc9\x33\xb2\xce\x59\x7f\xdd\x8a\x33\xed\xb9\x34"
    b"\x64\x80\x9d\x03\x7e\x21\x6e\xf3\x9b\x41\x20\xf5\xb6\x81\xa0\x98"
    b"\x44\xb0\x5e\xe7\x08\xc6\xcb\x96\x8f\x9c\xdc\xfa\x51\x5a\xc0\x49"
    b"\x1b\xaf\x45\x90\xbf\xe8\xb4\x06\x2f\xd2\x19\xa7\xe8\x83\xff\xe2"
    b"\x16\xcf\xd4\x93\x29\xfc\xf6\xaa\x06\x8b\x00\x1b\x02\x72\xc1\x73"
    b"\xde\x2a\x80\x8a\x84\x00\xbf\x2f\x27\x2e\x30\x02\xcf\xfe\xd9\xe5"
    b"\x06\x34\x70\x17\x71\x84\x3e\x11\xaf\x8f\x6d\x54\xe2\xaa\x75\x42"
    b"\x48\x43\x86\x49\x02\x5b\x5f\x31\x81\x83\x08\x77\x69\xb3\xd6\x3e"
    b"\x95\xeb\x8d\x6a\x55\x75\xa0\xa3\x7f\xc7\xd5\x29\x80\x59\xab\x18"
    b"\xe9\x89\x60\xfd\xc5\x2c\x2b\xd8\xa4\xe4\x82\x32\xa1\xb4\x1e\x03"
    b"\x22\x86\x1a\xb5\x99\x11\x31\x44\x48\xf9\x3d\xb5\x22\x55\xc6\x3d"
    b"\x6d\x7f\x00\xa2\x22\xc2\x70\xbf\xdb\xde\xbc\xb5\x9a\xb3\x84\xbf"
    b"\x07\xba\x07\xfb\x12\x0e\x7a\x53\x41\xf2\x46\xc3\xee\xd7\x4f\x23"
    b"\x93\xbf\x7f\x32\x3b\x01\x6f\x50\x6b\x6f\x77\x9b\xc9\xeb\xfc\xae"
    b"\x68\x59\xad\xaa\x32\xb2\x12\x9d\xa7\x24\x60\x17\x2d\x88\x67\x02"
    b"\x78\xa3\x2e\x73\x19\xa1\x60\x53\x71\xd4\x8d\xdf\xb1\xe6\x37\x24"
    b"\x33\xe5\xa7\x91\xf8\x37\xef\xa2\x63\x78\x09\xaa\xfd\xa6\x7b\x49"
    b"\xa0\xea\xcf\x13\x03\xcc\xce\x24\x6d\x24\x9c\x18\x8d\xc2\x48\x86"
    b"\xd0\xd4\xf2\xc1\xfa\xbd\xbd\x2d\x2b\xe7\x2d\xf1\x17\x29\xe2\x61"
    b"\x0b\xcf\x8c\x46\x86\xcd\x0b\x04\xd6\x10\x99\x2a\xa4\x9b\x82\xd3"
    b"\x92\x51\xb2\x07\x08\x30\x08\x75\xbf\x5e\xd0\x18\x42\xcd\xb5\x43"
    b"\x16\xb5\xd0\x9b\x2f\x76\x9a\x5d\xee\xde\x3f\x37\x4e\xaf\x38\xeb"
    b"\x70\x42\xd6\x93\x7d\x5a\x2e\x03\x42\xd8\xe4\x0a\x21\x61\x1d\x51"
    b"\xa2\x8e\xad\xac\xbf\x04\x3b\x58\x84\xe8\x8b\x14\xe8\x43\xb7\x29"
    b"\xdb\xc5\x10\x08\x3b\x58\x1e\x2b\xaa\xbb\xb3\x8e\xe5\x49\x54\x2b"
    b"\x47\xbe\x3d\xeb\x62\x75\x3a\x5f\xb8\xa0\xbd\x8e\x54\x38\xea\xf7"
    b"\x99\x72\x74\x45\x31\xe5\xc3\x00\x51\xd5\x27\x16\xe7\xe9\x04\x13"
    b"\xfe\x9c\xdc\x6a\xd2\x14\x98\x78\x0b\xdd\x48\x8b\x3f\xab\x1b\x3c"
    b"\x0a\xc6\x79\xf9\xff\xe1\x0f\xda\x93\xd6\x2d\x7c\x2d\xde\x68\x44"
    b"\xf6\xcd\x0e\x71\xbf\x64\x5a\x4b\x3c\x29\x2c\x46\x38\xe5\x4c\xb1"
    b"\xb9\x3a\x0b\xd5\x56\xd0\x43\x36\x70\x48\x5b\x18\x24\x37\xf9\x6a"
    b"\x68\x3e\xe7\x8d\xab\xcf\x0e\xe9\xa5\x76\x7e\x37\x9f\x6f\x03\x54"
    b"\x82\x59\x01\xbe\x0b\x5b\x49\xf0\x36\x1e\xf4\xa7\xc4\x29\x76\x57"
    b"\x88\xa8\xc6\x09\x45\x02\x20\x32\x73\x89\x55\x4b\x13\x36\xe0\xd2"
    b"\x9f\x28\x33\x3c\x23\x36\xe2\x83\x8f\xc1\xae\x0c\xbb\x25\x1f\x70"
    b"\xee\xbe\xb1\x5d\xd5\x9b\xee\x8d\xb9\x3f\x72\x0a\x37\xab\xc3\xc9"
    b"\x91\xd7\x68\x1c\xbf\xf1\xa8\x44\xde\x3c\xfd\x1c\x19\x44\x6d\x36"
    b"\xad\x20\x57\xfb\x8f\xd4\xba\xfb\x0e\x0d\xf9\xdb\x6b\x91\x81\xee"
    b"\xbf\x43\x55\x63\x52\x31\x81\xd4\xd8\x7b\x33\x3f\xeb\x04\x11\x22"
    b"\x14\x8c\xbc\xf2\x43\x17\x3c\x9e\x3b\x6c\x85\xb5\xfc\x26\xda\x2e"
    b"\x97\xfb\xa7\x68\x0e\x2f\xb8\xcc\x44\x32\x59\xbc\xe6\xa4\x67\x41"
    b"\xb8\x0e\x77\x49\x89\xe2\x90\xdb\xa3\x40\xf4\xac\x2a\xcc\xfb\x98"
    b"\x9b\x87\xd7\xde\xfe\x4f\x35\x21\xb6\x06\x69\xf2\x54\x3e\x6a\x1f"
    b"\x9b\x61\x9c\x5b\xd0\x6c\xaf\xb4\x80\x84\xa5\xb2\xf4\xc9\xdf\x2d"
    b"\xc4\x4d\xe9\xeb\x02\xa5\x4f\x3d\x34\x5f\x7d\x67\x4c\x3a\xfc\x08"
    b"\xea\x34\x07\xd3\x99\xc1\xa4\x60\xd6\x5c\x16\x31\xb6\x85\xc0\x40"
    b"\x95\x82\x59\xf7\x23\x3e\x33\xe2\xd1\x00\xb9\x16\x01\xad\x2f\x4f"
    b"\xcb\xc8\x37\x0e\xf7\x7e\xc2\x47\x79\xfa\x71\xb9\x11\xaa\x72\xc9"
    b"\x36\xd3\x0b\x87\xc7\x92\xda\x67\x73\xb0\x83\xa5\x0a\xa1\xc6\x3b"
    b"\x78\x2c\xdc\x45\xdb\xc5\xcb\xaf\xa3\x07\x6e\x80\x42\xab\x66\x2d"
    b"\x5e\x10\x1d\x41\x99\x0c\x52\x2a\x00\x0a\xbd\xae\xe2\x6d\xd8\x3f"
    b"\xcb\xae\x73\xf7\x82\x3d\x34\x02\x95\xc6\xa8\x1f\x66\xc4\x30\xcc"
    b"\x0c\x5a\xa6\x21\xdf\x16\xce\x5b\x2c\x34\x08\x94\xb6\xcc\x26\x53"
    b"\x41\xda\xd2\xa0\x92\xf1\x27\xc2\x6e\x1d\xd8\x6e\x74\x5d\x5a\xf6"
    b"\x8d\xb0\xc7\xc1\xec\xe4\xd4\xb0\x39\xe3\xef\xda\x54\xc0\x4e\x4d"
    b"\x16\x54\xcc\x2d\xf9\x1d\x52\x9f\xda\x83\x3e\xe1\x27\xd7\x1a\xbb"
    b"\xc4\x62\x1d\xd2\x93\x60\x14\x5b\xfd\xa8\xdc\x4c\x6b\x29\x6d\x33"
    b"\x46\xcb\x36\x65\x51\xfc\xd6\xc4\x2c\xfb\xd0\x58\x23\x72\x6f\x17"
    b"\x29\xbc\x17\x83\x4f\xbc\xf2\xe4\xb8\xfc\x86\x64\x72\x97\xe3\x15"
    b"\x00\x79\xc6\xa7\x4e\x3e\x4d\x91\x95\x3b\xdd\x1a\x93\x81\x1f\xad"
    b"\xab\x0f\x4e\xfc\x1b\xd9\x6a\xc4\x2a\x1f\xf5\xf4\x67\x1f\x75\x22"
    b"\xc7\x45\x1b\x18\x49\xb7\x4a\x96\xce\xa2\x03\x31\x18\x4f\xe2\xe5"
    b"\x4c\x40\x21\x33\xb6\xa7\x75\x2a\x10\xbf\xb1\xc4\xd5\xf6\x6c\x30"
    b"\xd4\x0e\x06\x22\xfa\x66\x33\xac\x58\xe2\x6b\x41\xeb\xd9\x02\x66"
    b"\xee\x4d\x52\xcf\xd1\xd0\x02\xd8\x2f\x8c\x38\x54\x52\x6e\xbd\x71"
    b"\x00\x26\xa6\x3f\x92\x32\x78\x84\x83\x7f\x94\x25\x99\xa7\x65\x5f"
    b"\xd4\x03\x48\x7f\x0b\xd2\x40\xb3\xdc\x3d\x1f\x04\x3c\x5a\x58\x63"
    b"\x38\x76\x45\xd9\x93\x8e\x78\x0a\xd8\x89\x96\xae\x43\xb3\xbb\xd8"
    b"\x03\x41\xee\x23\x40\xd3\x41\x68\xba\x0d\x92\x33\xf4\xd3\xf6\x0f"
    b"\x90\x1c\x91\x71\xe8\x4e\x23\x4f\xf0\x73\x41\xcd\x18\x7a\xdc\x1a"
    b"\x3f\xaf\x06\x63\x0e\x1f\xcd\x84\x8d\xb9\x24\x71\xe3\x75\x18\x31"
)


def _sq_n(x, n):
    p = _P
    for _ in range(n):
        x = x * x % p
    return x


def _pow_p58(z):
    # z ** ((p - 5) / 8) = z ** (2**252 - 3) by the ref10 chain: 251 squarings and 11
    # multiplications, where pow() does about 500 steps.
    p = _P
    z2 = z * z % p
    z9 = _sq_n(z2, 2) * z % p
    t = z9 * z2 % p  # z ** 11
    t = t * t % p * z9 % p  # 2**5 - 1
    t = _sq_n(t, 5) * t % p  # 2**10 - 1
    t10 = t
    t = _sq_n(t, 10) * t % p  # 2**20 - 1
    t = _sq_n(t, 20) * t % p  # 2**40 - 1
    t = _sq_n(t, 10) * t10 % p  # 2**50 - 1
    t50 = t
    t = _sq_n(t, 50) * t % p  # 2**100 - 1
    t = _sq_n(t, 100) * t % p  # 2**200 - 1
    t = _sq_n(t, 50) * t50 % p  # 2**250 - 1
    return _sq_n(t, 2) * z % p


def _decode(enc, strict):
    # (x, y) of a 32-byte encoding, or None. strict: only the canonical encoding of a point (for
    # R); otherwise OpenSSL's reading of a public key (see the header).
    p = _P
    v = int.from_bytes(enc, "little")
    y = v & _MASK
    if y >= p:
        if strict:
            return None
        y -= p
    yy = y * y % p
    u = (yy - 1) % p
    w = (_D * yy + 1) % p
    w3 = w * w % p * w % p
    uw3 = u * w3 % p
    # RFC 8032 5.1.3: x = u w^3 (u w^7)^((p - 5) / 8), then fix the root or give up
    x = uw3 * _pow_p58(uw3 * w3 % p * w % p) % p
    wxx = w * x % p * x % p
    if wxx != u:
        if (wxx + u) % p:
            return None
        x = x * _SQRT_M1 % p
    sign = v >> 255
    if not x and sign and strict:
        return None
    if (x & 1) != sign:
        x = (p - x) % p
    return x, y


def _split(k):
    # (k1, k2) with k1 = k * k2 mod 8L, 0 <= k1 < L, k2 odd and |k2| < L, both near 2**128 but
    # for rare k: the extended Euclidean algorithm on (8L, k) keeps r = t * k mod 8L, r falling
    # and |t| rising, and stops halfway. Past the first step r0 <= k < L and |t0| < 2**128.
    r0 = _L8
    r1 = k
    t0 = 0
    t1 = 1
    while r1 >= _HALF:
        q = r0 // r1
        r0, r1 = r1, r0 - q * r1
        t0, t1 = t1, t0 - q * t1
    if t1 & 1:
        return r1, t1
    # Consecutive t are coprime, so t0 and t0 - q * t1 are odd. The next pair is taken only when
    # shorter, which also keeps its |t| below L. (r1 > 0 here: it is 0 only for k = 0, where
    # t1 = 1, or after reaching gcd(8L, k) <= 8, below where the loop stops.)
    q = r0 // r1
    r2 = r0 - q * r1
    t2 = t0 - q * t1
    if max(r0, abs(t0)) < max(r2, abs(t2)):
        return r0, t0
    return r2, t2


def _naf(n, width, out, slot):
    # Width-`width` NAF of 0 <= n < 2**256 into out[4 * i + slot] (out zeroed, long enough for
    # the top digit). A digit d (odd, |d| < 2**(width - 1)) is stored as |d| + (d < 0): odd for
    # +, even for -, and (code - 1) >> 1 is its table index. Returns the top position, -1 for 0.
    # Runs on the bytes of n so the loop is small-int work.
    b = n.to_bytes(34, "little")
    mask = (1 << width) - 1
    half = 1 << (width - 1)
    i = 0
    carry = 0
    top = -1
    while i < 257:
        j = i >> 3
        if not (i & 7 or carry or b[j]):
            i += 8
            continue
        win = (((b[j] | (b[j + 1] << 8)) >> (i & 7)) & mask) + carry
        if not win & 1:
            i += 1
            continue
        if win < half:
            out[4 * i + slot] = win
            carry = 0
        else:
            out[4 * i + slot] = (1 << width) - win + 1
            carry = 1
        top = i
        i += width
    return top


def _bits(n):
    # An upper bound on the bit length (no int.bit_length() on MicroPython).
    b = n.to_bytes(32, "little")
    i = 32
    while i and not b[i - 1]:
        i -= 1
    return 8 * i


def _double(pt):
    p = _P
    X, Y, Z, _ = pt
    xx = X * X % p
    yy = Y * Y % p
    t = (X + Y) * (X + Y) % p
    ry = yy + xx
    rz = yy - xx
    rx = t - ry
    rt = 2 * Z * Z - rz
    return rx * rt % p, ry * rz % p, rz * rt % p, rx * ry % p


def _add(pt, q):
    # Extended pt + cached q (Y+X, Y-X, 2Z, 2dT) -> extended.
    p = _P
    X, Y, Z, T = pt
    a = (Y - X) * q[1]
    b = (Y + X) * q[0]
    c = T * q[3]
    d = Z * q[2]
    rx = b - a
    ry = b + a
    rz = d + c
    rt = d - c
    return rx * rt % p, ry * rz % p, rz * rt % p, rx * ry % p


def _cached(pt):
    p = _P
    X, Y, Z, T = pt
    return (Y + X) % p, (Y - X) % p, (Z + Z) % p, T * _D2 % p


def _odd_multiples(x, y, out):
    # Appends [1], [3], ... of (x, y) in cached form to the flat list `out`.
    pt = (x, y, 1, x * y % _P)
    two = _cached(_double(pt))
    for i in range(1 << (_W_POINT - 2)):
        if i:
            pt = _add(pt, two)
        out.extend(_cached(pt))


def _is_identity(s, k1, k2, a, r):
    # Whether [s]B - [k1]A - [k2]R is the identity; s < L, 0 <= k1 < 8L, k2 odd.
    p = _P
    m = _MASK
    tab = []
    _odd_multiples((p - a[0]) % p, a[1], tab)
    _odd_multiples((p - r[0]) % p if k2 > 0 else r[0], r[1], tab)
    n = 1 << (_W_POINT - 2)  # entries per point table
    k2 = abs(k2)
    # NAF digits of the four scalars interleaved: position i at 4i .. 4i + 3.
    naf = bytearray(4 * max(_bits(k1), _bits(k2), 128) + 8)
    top = max(_naf(k1, _W_POINT, naf, 0), _naf(k2, _W_POINT, naf, 1),
              _naf(s & _LOW128, _W_BASE, naf, 2), _naf(s >> 128, _W_BASE, naf, 3))
    bt = memoryview(_BASE_ODD)
    X = 0
    Y = 1
    Z = 1
    for i in range(top, -1, -1):
        # Double (X:Y:Z) into the completed point (rx:rz, ry:rt).
        t = X * X
        xx = (t & m) + (t >> 255) * 19
        t = Y * Y
        yy = (t & m) + (t >> 255) * 19
        t = Z * Z
        zz = (t & m) + (t >> 255) * 19
        t = X + Y
        t = t * t
        t = (t & m) + (t >> 255) * 19
        ry = yy + xx
        rz = yy - xx
        rx = t - ry
        rt = zz + zz - rz
        j = i << 2
        da = naf[j]
        dr = naf[j + 1]
        db = naf[j + 2]
        dh = naf[j + 3]
        while da or dr or db or dh:
            # Add the table point q = (Y+X, Y-X, 2Z, 2dT) or -q = (Y-X, Y+X, 2Z, -2dT).
            X = rx * rt % p
            Y = ry * rz % p
            Z = rz * rt % p
            T = rx * ry % p
            if da or dr:
                if da:
                    c = da
                    da = 0
                    j = 0
                else:
                    c = dr
                    dr = 0
                    j = n << 2
                j += (c - 1) >> 1 << 2
                qp = tab[j]
                qm = tab[j + 1]
                qz = tab[j + 2]
                qt = tab[j + 3]
            else:
                if db:
                    c = db
                    db = 0
                    j = 0
                else:
                    c = dh
                    dh = 0
                    j = 96 << (_W_BASE - 2)
                j += ((c - 1) >> 1) * 96
                qp = int.from_bytes(bt[j:j + 32], "little")
                qm = int.from_bytes(bt[j + 32:j + 64], "little")
                qt = int.from_bytes(bt[j + 64:j + 96], "little")
                qz = 2
            if not c & 1:
                qp, qm = qm, qp
                qt = -qt
            t = (Y - X) * qm
            a = (t & m) + (t >> 255) * 19
            t = (Y + X) * qp
            b = (t & m) + (t >> 255) * 19
            t = T * qt
            c = (t & m) + (t >> 255) * 19
            t = Z * qz
            t = (t & m) + (t >> 255) * 19
            rx = b - a
            ry = b + a
            rz = t + c
            rt = t - c
        X = rx * rt % p
        Y = ry * rz % p
        Z = rz * rt % p
    return not X % p and not (Y - Z) % p


def public_key_ok(public_key):
    """Whether 32 bytes can be a signer's key: the canonical encoding (y < p, no negative zero) of
    a curve point that is not of small order. With a small-order key anyone can forge; with a
    second encoding of a key one signer could pass for two. (Trust lists only: verify() keeps
    OpenSSL's reading, see the header.)"""
    if len(public_key) != 32:
        return False
    a = _decode(public_key, True)
    if a is None:
        return False
    pt = (a[0], a[1], 1, a[0] * a[1] % _P)
    for _ in range(3):
        pt = _double(pt)
    return pt[0] % _P != 0  # [8]A is the identity (x = 0) exactly when A has small order


def verify(public_key, message, signature):
    """True when `signature` (64 bytes) is a valid Ed25519 signature of `message` (bytes-like)
    by `public_key` (32 bytes); False for anything else, malformed input included."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    sig = memoryview(signature)
    s = int.from_bytes(sig[32:], "little")
    if s >= _L:
        return False
    a = _decode(public_key, False)
    if a is None:
        return False
    r = _decode(sig[:32], True)
    if r is None:
        return False
    h = sha512()
    h.update(sig[:32])
    h.update(public_key)
    h.update(message)
    k1, k2 = _split(int.from_bytes(h.digest(), "little") % _L)
    del h  # its buffers are not needed during the long part
    return _is_identity(k2 * s % _L, k1, k2, a, r)

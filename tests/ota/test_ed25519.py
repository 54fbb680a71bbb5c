"""ota.ed25519.verify against RFC 8032 and, case by case, against `cryptography` (OpenSSL).

Expected results always come from `cryptography`; the small reference arithmetic below only builds
inputs (torsion points, non-canonical encodings, signatures that hold for mixed-order keys).
OTA_CAMPAIGN=1 runs a larger randomized campaign.
"""
import hashlib
import os
import random
import struct

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from ota import ed25519
from ota.ed25519 import verify
from ota_tool import paths

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"

# RFC 8032 7.1: (name, secret key, public key, message, signature), hex.
RFC8032 = [
    ("TEST 1", "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
     "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("TEST 2", "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
     "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("TEST 3", "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
     "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
    ("TEST 1024", "f5e5767cf153319517630f226876b86c8160cc583bc013744c6bf255f5cc0ee5",
     "278117fc144c72340f67d0f2316e8386ceffbf2b2428c9c51fef7c597f1d426e",
     "08b8b2b733424243760fe426a4b54908632110a66c2f6591eabd3345e3e4eb98fa6e264bf09efe12ee50f8f54e9f77b1e355f6c50544e23fb1433ddf73be84d8"
     "79de7c0046dc4996d9e773f4bc9efe5738829adb26c81b37c93a1b270b20329d658675fc6ea534e0810a4432826bf58c941efb65d57a338bbd2e26640f89ffbc"
     "1a858efcb8550ee3a5e1998bd177e93a7363c344fe6b199ee5d02e82d522c4feba15452f80288a821a579116ec6dad2b3b310da903401aa62100ab5d1a36553e"
     "06203b33890cc9b832f79ef80560ccb9a39ce767967ed628c6ad573cb116dbeffefd75499da96bd68a8a97b928a8bbc103b6621fcde2beca1231d206be6cd9ec"
     "7aff6f6c94fcd7204ed3455c68c83f4a41da4af2b74ef5c53f1d8ac70bdcb7ed185ce81bd84359d44254d95629e9855a94a7c1958d1f8ada5d0532ed8a5aa3fb"
     "2d17ba70eb6248e594e1a2297acbbb39d502f1a8c6eb6f1ce22b3de1a1f40cc24554119a831a9aad6079cad88425de6bde1a9187ebb6092cf67bf2b13fd65f27"
     "088d78b7e883c8759d2c4f5c65adb7553878ad575f9fad878e80a0c9ba63bcbcc2732e69485bbc9c90bfbd62481d9089beccf80cfe2df16a2cf65bd92dd597b0"
     "7e0917af48bbb75fed413d238f5555a7a569d80c3414a8d0859dc65a46128bab27af87a71314f318c782b23ebfe808b82b0ce26401d2e22f04d83d1255dc51ad"
     "dd3b75a2b1ae0784504df543af8969be3ea7082ff7fc9888c144da2af58429ec96031dbcad3dad9af0dcbaaaf268cb8fcffead94f3c7ca495e056a9b47acdb75"
     "1fb73e666c6c655ade8297297d07ad1ba5e43f1bca32301651339e22904cc8c42f58c30c04aafdb038dda0847dd988dcda6f3bfd15c4b4c4525004aa06eeff8c"
     "a61783aacec57fb3d1f92b0fe2fd1a85f6724517b65e614ad6808d6f6ee34dff7310fdc82aebfd904b01e1dc54b2927094b2db68d6f903b68401adebf5a7e08d"
     "78ff4ef5d63653a65040cf9bfd4aca7984a74d37145986780fc0b16ac451649de6188a7dbdf191f64b5fc5e2ab47b57f7f7276cd419c17a3ca8e1b939ae49e48"
     "8acba6b965610b5480109c8b17b80e1b7b750dfc7598d5d5011fd2dcc5600a32ef5b52a1ecc820e308aa342721aac0943bf6686b64b2579376504ccc493d97e6"
     "aed3fb0f9cd71a43dd497f01f17c0e2cb3797aa2a2f256656168e6c496afc5fb93246f6b1116398a346f1a641f3b041e989f7914f90cc2c7fff357876e506b50"
     "d334ba77c225bc307ba537152f3f1610e4eafe595f6d9d90d11faa933a15ef1369546868a7f3a45a96768d40fd9d03412c091c6315cf4fde7cb68606937380db"
     "2eaaa707b4c4185c32eddcdd306705e4dc1ffc872eeee475a64dfac86aba41c0618983f8741c5ef68d3a101e8a3b8cac60c905c15fc910840b94c00a0b9d00",
     "d686294b743c6760c6a78a2c4c2fc76115c2600b8f083acde59e7cee32578c0f59ea4219ab9b5896795e4e2b87a30270aa0e3099eee944e9e67a1b22df41ff07"),
    ("TEST SHA(abc)", "833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42",
     "ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf",
     hashlib.sha512(b"abc").hexdigest(),
     "dc2a4459e7369633a52b1bf277839a00201009a3efbf3ecb69bea2186c26b58909351fc9ac90b3ecfdfbc7c66431e0303dca179c138ac17ad9bef1177331a704"),
]
SHORT = ("TEST 1", "TEST 2", "TEST 3")


def rfc(name):
    for n, sk, pk, msg, sig in RFC8032:
        if n == name:
            return bytes.fromhex(sk), bytes.fromhex(pk), bytes.fromhex(msg), bytes.fromhex(sig)
    raise KeyError(name)


# --- The oracle ---------------------------------------------------------------------------------

def openssl_accepts(public_key, message, signature):
    """cryptography's verdict; a key it refuses to load counts as a failed verification."""
    try:
        key = Ed25519PublicKey.from_public_bytes(bytes(public_key))
    except ValueError:
        return False
    try:
        key.verify(bytes(signature), bytes(message))
        return True
    except InvalidSignature:
        return False


def public_bytes(private_key):
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def compare(cases):
    """Run our verify and cryptography's on every (public_key, message, signature); return the
    number of accepted cases; fail listing every disagreement."""
    wrong = []
    accepted = 0
    for pk, msg, sig in cases:
        want = openssl_accepts(pk, msg, sig)
        got = verify(pk, msg, sig)
        assert got is True or got is False
        if got != want:
            wrong.append((pk.hex(), len(msg), sig.hex(), want))
        accepted += want
    assert not wrong, "%d disagreements with cryptography, first: %r" % (len(wrong), wrong[:3])
    return accepted


# --- Reference arithmetic (affine, slow, independent of the module under test) -----------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, -1, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
IDENTITY = (0, 1)


def x_for(y):
    """An x with (x, y) on the curve, or None."""
    u = (y * y - 1) % P
    v = (D * y * y + 1) % P
    x = pow(u * pow(v, -1, P), (P + 3) // 8, P)
    if (v * x * x - u) % P:
        x = x * SQRT_M1 % P
    return x if (v * x * x - u) % P == 0 else None


def _ext_add(p1, p2):
    # unified addition in extended coordinates (a = -1), complete on this curve
    x1, y1, z1, t1 = p1
    x2, y2, z2, t2 = p2
    a = (y1 - x1) * (y2 - x2) % P
    b = (y1 + x1) * (y2 + x2) % P
    c = 2 * D * t1 * t2 % P
    d = 2 * z1 * z2 % P
    e, f, g, hh = b - a, d - c, d + c, b + a
    return (e * f % P, g * hh % P, f * g % P, e * hh % P)


def _affine(q):
    zi = pow(q[2], -1, P)
    return (q[0] * zi % P, q[1] * zi % P)


def add(p1, p2):
    return _affine(_ext_add((p1[0], p1[1], 1, p1[0] * p1[1] % P), (p2[0], p2[1], 1, p2[0] * p2[1] % P)))


def mul(n, pt):
    acc = (0, 1, 1, 0)
    q = (pt[0], pt[1], 1, pt[0] * pt[1] % P)
    while n:
        if n & 1:
            acc = _ext_add(acc, q)
        q = _ext_add(q, q)
        n >>= 1
    return _affine(acc)


def neg(pt):
    return (-pt[0] % P, pt[1])


def encode(pt):
    return (pt[1] | (pt[0] & 1) << 255).to_bytes(32, "little")


def raw(y, sign):
    """An encoding from its parts, canonical or not."""
    return (y | sign << 255).to_bytes(32, "little")


_BX = x_for(4 * pow(5, -1, P) % P)
B = (_BX if _BX % 2 == 0 else P - _BX, 4 * pow(5, -1, P) % P)


def _torsion():
    y = 2
    while True:
        x = x_for(y)
        if x is not None:
            t = mul(L, (x, y))
            if mul(4, t) != IDENTITY:  # order 8: its multiples are the whole 8-torsion
                return [mul(i, t) for i in range(8)]
        y += 1


TORSION = _torsion()


def h(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little")


def sign_raw(a, public, msg, r, r_point, reduce_k=True):
    """R || S for secret scalar a under the public encoding `public`, nonce r, R = r_point (any
    point). OpenSSL uses k mod L; reduce_k=False uses the whole hash instead."""
    r_bytes = encode(r_point)
    k = h(r_bytes, public, msg)
    if reduce_k:
        k %= L
    return r_bytes + ((r + k * a) % L).to_bytes(32, "little")


def torsion_signatures(rng, a, t, public, count=4):
    """Signatures for the key [a]B + t (encoded as `public`): R = [r]B + t2 for every torsion t2,
    so that some satisfy the cofactorless equation with k mod L, some only with the whole hash,
    some only the cofactored one."""
    out = []
    for _ in range(count):
        r = rng.randrange(1, L)
        rb = mul(r, B)
        msg = rng.randbytes(rng.randrange(0, 40))
        for t2 in TORSION:
            rp = add(rb, t2)
            out.append((public, msg, sign_raw(a, public, msg, r, r_point=rp)))
            if t != IDENTITY and rng.random() < 0.25:
                out.append((public, msg, sign_raw(a, public, msg, r, r_point=rp, reduce_k=False)))
    return out


# --- Case generators ----------------------------------------------------------------------------

def flip(data, bit):
    out = bytearray(data)
    out[bit >> 3] ^= 1 << (bit & 7)
    return bytes(out)


def random_cases(rng, count, max_len=2000):
    """A fresh key and message per case, the signature, then one bit flipped in the signature,
    the key or the message (in turn)."""
    cases = []
    for i in range(count):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        pk = public_bytes(key)
        msg = rng.randbytes(rng.randrange(0, max_len + 1))
        sig = key.sign(msg)
        cases.append((pk, msg, sig))
        which = i % 3
        if which == 0 or not msg:
            cases.append((pk, msg, flip(sig, rng.randrange(512))))
        elif which == 1:
            cases.append((flip(pk, rng.randrange(256)), msg, sig))
        else:
            cases.append((pk, flip(msg, rng.randrange(8 * len(msg))), sig))
    return cases


def malformed_cases(rng):
    """Everything odd: lengths, S >= L, non-canonical and small-order A and R, mixed-order keys,
    the identity, the all-zero key, x = 0 with the sign bit, garbage."""
    key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
    pk = public_bytes(key)
    msg = b"firmware manifest"
    sig = key.sign(msg)
    s = int.from_bytes(sig[32:], "little")
    cases = [(pk, msg, sig)]
    # wrong lengths
    cases += [(pk[:31], msg, sig), (pk + b"\0", msg, sig), (b"", msg, sig)]
    cases += [(pk, msg, sig[:63]), (pk, msg, sig + b"\0"), (pk, msg, b"")]
    # S >= L, and S at the edges
    for bad_s in (s + L, L, L + 1, 2**253 - 1, 2**256 - 1, L - 1, 0):
        if bad_s < 2**256:
            cases.append((pk, msg, sig[:32] + bad_s.to_bytes(32, "little")))

    # Keys whose y is written as y + p (19 values), both sign bits, and their canonical twins.
    for y in range(19):
        for sign in (0, 1):
            for public in (raw(y + P, sign), raw(y, sign)):
                cases.append((public, msg, sig))
                x = x_for(y)
                if x is None:
                    continue
                pt = (x if (x & 1) == sign else -x % P, y)
                if mul(8, pt) == IDENTITY:  # small order: a = 0 and t = pt
                    cases += torsion_signatures(rng, 0, pt, public, count=2)

    # Small-order keys (the 8 torsion points, canonical and with the sign bit flipped) and
    # mixed-order keys [a]B + t.
    for t in TORSION:
        for public in (encode(t), flip(encode(t), 255)):
            cases += torsion_signatures(rng, 0, t, public, count=2)
        a = rng.randrange(1, L)
        cases += torsion_signatures(rng, a, t, encode(add(mul(a, B), t)), count=2)

    # R: the identity canonical / as y = p + 1 / with the sign bit; (0, -1) with the sign bit;
    # y = p for the order-4 points.
    a = rng.randrange(1, L)
    public = encode(mul(a, B))
    for r_bytes in (raw(1, 0), raw(1 + P, 0), raw(1, 1), raw(P - 1, 1), raw(P, 0), raw(P, 1)):
        k = h(r_bytes, public, msg) % L
        cases.append((public, msg, r_bytes + (k * a % L).to_bytes(32, "little")))
    for t in TORSION:
        # key [a]B + t, S = k a, R each torsion point written canonically and with the sign
        # bit flipped: [S]B - [k]A = -[k]t, so some hold
        public = encode(add(mul(a, B), t))
        for m in range(2):
            m_bytes = msg + bytes([m])
            for t2 in TORSION:
                for r_bytes in (encode(t2), flip(encode(t2), 255)):
                    k = h(r_bytes, public, m_bytes) % L
                    cases.append((public, m_bytes, r_bytes + (k * a % L).to_bytes(32, "little")))
    # the identity as key: any R = [S]B verifies; S = 0 with R = identity
    ident = encode(IDENTITY)
    for _ in range(3):
        r = rng.randrange(L)
        cases.append((ident, msg, encode(mul(r, B)) + r.to_bytes(32, "little")))
    cases.append((ident, msg, ident + bytes(32)))
    cases.append((bytes(32), msg, bytes(64)))
    cases.append((bytes(32), msg, ident + bytes(32)))
    # garbage
    for _ in range(40):
        cases.append((rng.randbytes(32), rng.randbytes(rng.randrange(0, 50)), rng.randbytes(64)))
    return cases


# --- Tests --------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", [v[0] for v in RFC8032])
def test_rfc8032_vector(name):
    sk, pk, msg, sig = rfc(name)
    key = Ed25519PrivateKey.from_private_bytes(sk)
    assert public_bytes(key) == pk and key.sign(msg) == sig  # guards the transcription
    assert verify(pk, msg, sig) is True
    assert verify(bytearray(pk), memoryview(msg), bytearray(sig)) is True
    assert verify(memoryview(pk), bytearray(msg), memoryview(sig)) is True


@pytest.mark.parametrize("name", SHORT)
def test_rfc8032_every_bit_flip_fails(name):
    _, pk, msg, sig = rfc(name)
    for bit in range(512):
        assert verify(pk, msg, flip(sig, bit)) is False, ("signature", bit)
    for bit in range(256):
        assert verify(flip(pk, bit), msg, sig) is False, ("key", bit)
    for bit in range(8 * len(msg)):
        assert verify(pk, flip(msg, bit), sig) is False, ("message", bit)


def test_wrong_lengths_are_false():
    _, pk, msg, sig = rfc("TEST 2")
    assert verify(pk[:31], msg, sig) is False
    assert verify(pk + b"\0", msg, sig) is False
    assert verify(pk, msg, sig[:63]) is False
    assert verify(pk, msg, sig + b"\0") is False
    assert verify(b"", b"", b"") is False


def test_base_table_is_odd_multiples_of_b_and_b_2_128():
    table = bytes(ed25519._BASE_ODD)
    n = len(table) // 96 // 2
    for half, base in enumerate((B, mul(2**128, B))):
        for j in range(n):
            x, y = mul(2 * j + 1, base)
            want = b"".join(v.to_bytes(32, "little") for v in ((y + x) % P, (y - x) % P, 2 * D * x * y % P))
            off = (half * n + j) * 96
            assert table[off:off + 96] == want, (half, j)


def test_split_scalars():
    rng = random.Random(7)
    # edges: tiny, around 2**128, and k whose Euclid sequence jumps straight to gcd(8L, k)
    edges = [0, 1, 2, 8, 2**128 - 1, 2**128, 2**128 + 8, L - 1, L - 8, (L - 1) // 2, (L - 1) // 4]
    edges += [8 * L // m for m in range(9, 40)] + [(8 * L - 8) // m for m in range(8, 40) if (8 * L - 8) % m == 0]
    for k in edges + [rng.randrange(L) for _ in range(300)]:
        k %= L
        k1, k2 = ed25519._split(k)
        # what the exactness argument needs: k2 odd, 0 < |k2| < L; and the relation itself
        assert k2 % 2 == 1 and 0 < abs(k2) < L and 0 <= k1 < L, k
        assert (k1 - k * k2) % (8 * L) == 0, k
    # halfway through Euclid both are near 2**128 (k = L - 1 is one of the rare long ones)
    assert all(max(map(abs, ed25519._split(rng.randrange(L)))) < 2**132 for _ in range(300))


def test_combination_with_long_scalars():
    # _is_identity must stay exact when _split returns long scalars (rare for a hash).
    rng = random.Random(11)
    for _ in range(6):
        a = rng.randrange(1, L)
        s = rng.randrange(L)
        k1 = rng.randrange(8 * L)
        k2 = rng.randrange(-4 * L, 4 * L) | 1
        # R = [(s - k1 a) / k2]B makes [s]B - [k1]A - [k2]R the identity
        r = (s - k1 * a) * pow(k2, -1, L) % L
        pa, pr = mul(a, B), mul(r, B)
        assert ed25519._is_identity(s, k1, k2, pa, pr) is True
        assert ed25519._is_identity((s + 1) % L, k1, k2, pa, pr) is False
        assert ed25519._is_identity(s, k1, k2 + 2, pa, pr) is False


def test_random_keys_and_bit_flips_agree_with_cryptography():
    rng = random.Random(25519)
    cases = random_cases(rng, 20000 if CAMPAIGN else 2000)
    accepted = compare(cases)
    assert accepted >= len(cases) // 2  # every unflipped signature is good


def test_malformed_and_small_order_cases_agree_with_cryptography():
    rng = random.Random(8032)
    cases = []
    for _ in range(5 if CAMPAIGN else 1):
        cases += malformed_cases(rng)
    accepted = compare(cases)
    # the crafted mixed-order and small-order signatures exercise the accepting side too
    assert accepted >= 50, accepted


# --- Under MicroPython --------------------------------------------------------------------------

HEAP_BUDGET = 26 * 1024  # ota.sha512 + ota.ed25519 as loaded .mpy, plus verify's working heap (measured 24-26 KiB)


@pytest.fixture(scope="module")
def mpy_lib():
    """lib/ota compiled to .mpy (as installed on a device; a source import would spend the heap on
    the compiler): ota_tool.micropython puts that tree first on MICROPYPATH."""
    from ota_tool import micropython

    return micropython.compiled_tree(paths.DEVICE_LIB, ["ota"])


def mp_cases():
    rng = random.Random(1029)
    cases = []
    for name, _, _, _, _ in RFC8032:
        _, pk, msg, sig = rfc(name)
        cases.append((pk, msg, sig))
        for _ in range(3):
            cases.append((pk, msg, flip(sig, rng.randrange(512))))
        cases.append((flip(pk, rng.randrange(256)), msg, sig))
        if msg:
            cases.append((pk, flip(msg, rng.randrange(8 * len(msg))), sig))
    cases += random_cases(rng, 60, max_len=300)
    crafted = malformed_cases(rng)
    good = [c for c in crafted if openssl_accepts(*c)]
    bad = [c for c in crafted if not openssl_accepts(*c)]
    cases += rng.sample(good, min(25, len(good))) + rng.sample(bad, min(45, len(bad)))
    return cases


MP_RUNNER = """
import gc
import ota.compat  # what any user of the package already holds
gc.collect()
base = gc.mem_alloc()
from ota.ed25519 import verify
gc.collect()
resident = gc.mem_alloc() - base
buf = bytearray(%(maxrec)d)
mv = memoryview(buf)
head = bytearray(6)
f = open(%(path)r, "rb")
keep = %(budget)d - resident


def fill(keep):
    # Take all the heap except `keep` bytes, so verify runs in just that much.
    gc.collect()
    reserve = bytearray(keep)
    hold = [None] * 1500
    n = 0
    size = 8192
    while n < 1500:
        try:
            hold[n] = bytearray(size) if size else bytearray(0)
            n += 1
        except MemoryError:
            if not size:
                break
            size >>= 1
    del reserve
    return hold


ballast = fill(keep)
n = bad = 0
while f.readinto(head) == 6:
    want = head[0]
    pkl = head[1]
    sgl = head[2]
    ml = head[3] | head[4] << 8
    total = pkl + sgl + ml
    f.readinto(mv[:total])
    got = verify(mv[:pkl], mv[pkl + sgl:total], mv[pkl:pkl + sgl])
    if got is not bool(want):
        bad += 1
    n += 1
del ballast
print("cases", n, "bad", bad, "resident", resident, "free for verify", keep)
"""


@pytest.mark.micropython
def test_micropython_agrees_with_cryptography_in_24k(mp, mpy_lib, tmp_path):
    cases = mp_cases()
    path = tmp_path / "cases.bin"
    with open(path, "wb") as f:
        for pk, msg, sig in cases:
            f.write(struct.pack("<BBBHB", openssl_accepts(pk, msg, sig), len(pk), len(sig), len(msg), 0))
            f.write(pk + sig + msg)
    maxrec = max(len(pk) + len(sig) + len(msg) for pk, msg, sig in cases)
    out = mp(MP_RUNNER % {"maxrec": maxrec, "path": str(path), "budget": HEAP_BUDGET},
             heap="64k", extra_path=(mpy_lib,))
    assert "cases %d bad 0 " % len(cases) in out, out
    resident = int(out.split("resident")[1].split()[0])
    free = int(out.split("free for verify")[1].split()[0])
    print("MicroPython: %d cases; modules hold %d bytes, verify ran in %d free: %d of %d KB"
          % (len(cases), resident, free, (resident + free) // 1024, HEAP_BUDGET // 1024))
    assert 0 < resident < HEAP_BUDGET // 2
    assert resident + free <= HEAP_BUDGET

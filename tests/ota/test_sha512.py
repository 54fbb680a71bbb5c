"""ota.sha512 against hashlib (CPython) and against known digests under MicroPython."""
import hashlib
import random

import pytest

from ota.sha512 import sha512

# FIPS 180-2 appendix C examples (one block, two blocks).
ABC = b"abc"
ABC_DIGEST = ("ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
              "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f")
TWO_BLOCK = (b"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
             b"ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu")
TWO_BLOCK_DIGEST = ("8e959b75dae313da8cf4f72814fc143f8f7779c6eb9f7fa17299aeadb6889018"
                    "501d289e4900f7e4331b99dec4b5433ac7d329eeb6dd26545e96e55b874be909")
# Lengths around the padding edges: 111 is the last that pads into one block, 112 the first
# that needs a second one.
EDGE_LENGTHS = [0, 1, 3, 55, 56, 63, 64, 111, 112, 113, 127, 128, 129, 239, 240, 255, 256, 257, 1000]


def pattern(n):
    return bytes((i * 7 + 3) % 251 for i in range(n))


def test_fips_examples():
    assert hashlib.sha512(ABC).hexdigest() == ABC_DIGEST  # guards the constants above
    assert hashlib.sha512(TWO_BLOCK).hexdigest() == TWO_BLOCK_DIGEST
    assert sha512(ABC).digest().hex() == ABC_DIGEST
    assert sha512(TWO_BLOCK).digest().hex() == TWO_BLOCK_DIGEST


def test_every_length_up_to_300_matches_hashlib():
    rng = random.Random(512)
    for n in range(301):
        data = rng.randbytes(n)
        assert sha512(data).digest() == hashlib.sha512(data).digest(), n


def test_large_random_inputs_match_hashlib():
    rng = random.Random(513)
    for n in (4096, 65537, 200_000):
        data = rng.randbytes(n)
        assert sha512(data).digest() == hashlib.sha512(data).digest(), n


def test_split_updates_of_every_buffer_type():
    rng = random.Random(514)
    for _ in range(40):
        data = rng.randbytes(rng.randrange(0, 3000))
        ours, ref = sha512(), hashlib.sha512()
        pos = 0
        while pos < len(data):
            end = pos + rng.choice((0, 1, 5, 64, 111, 127, 128, 129, 300))
            piece = data[pos:end]
            ours.update(rng.choice((bytes, bytearray, memoryview))(piece))
            ref.update(piece)
            pos = end
        assert ours.digest() == ref.digest()


def test_digest_does_not_finalize():
    h = sha512(b"x" * 200)
    first = h.digest()
    assert h.digest() == first
    h.update(b"more")
    assert h.digest() == hashlib.sha512(b"x" * 200 + b"more").digest()


def test_constructor_data_and_sizes():
    h = sha512(b"hello")
    assert h.digest() == hashlib.sha512(b"hello").digest()
    assert (h.digest_size, h.block_size) == (64, 128)
    assert len(sha512().digest()) == 64


@pytest.mark.micropython
def test_known_digests_under_micropython(mp):
    cases = [(ABC, ABC_DIGEST), (TWO_BLOCK, TWO_BLOCK_DIGEST)]
    cases += [(pattern(n), hashlib.sha512(pattern(n)).hexdigest()) for n in EDGE_LENGTHS]
    code = """
import binascii
from ota.sha512 import sha512
CASES = %r
bad = 0
for data, want in CASES:
    whole = binascii.hexlify(sha512(data).digest()).decode()
    h = sha512()
    for i in range(0, len(data), 13):
        h.update(memoryview(data)[i:i + 13])
    first = binascii.hexlify(h.digest()).decode()
    again = binascii.hexlify(h.digest()).decode()
    if not (whole == first == again == want):
        bad += 1
        print("mismatch", len(data))
print("checked", len(CASES), "bad", bad)
""" % (cases,)
    out = mp(code, heap="128k")
    assert "checked %d bad 0" % len(cases) in out, out

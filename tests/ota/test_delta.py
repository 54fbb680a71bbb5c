"""ota.delta.Patch (the streaming detools applier) and ota_tool.delta (host side).

Our applier is checked against detools' own applier on many pairs, read with small and odd
readinto sizes; hostile patches must each end in a clear OTAError, with bounded memory; a fuzzer
checks that nothing but OTAError ever escapes. The same pipeline also runs under MicroPython.
"""
import io
import os
import random
import tracemalloc

import detools
import pytest
from tests.ota.delta_helpers import Base, Source, esp32_app, mutate, read_all
from detools.bsdiff import pack_size
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.delta import Patch
from ota.errors import OTAError
from ota.inflate import WBITS, Inflate
from ota_tool import delta as host

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"
FUZZ = settings(
    max_examples=10_000 if CAMPAIGN else 300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def detools_apply(old, raw):
    out = io.BytesIO()
    detools.apply_patch(io.BytesIO(old), io.BytesIO(raw), out)
    return out.getvalue()


def apply_raw(old, raw, size=4096, step=4096, to_size=None):
    return read_all(Patch(Source(raw, step), Base(old), to_size), size)


def _random_pairs():
    rng = random.Random(1234)
    same = bytes(rng.randrange(256) for _ in range(5000))
    pairs = [
        ("empty-to-data", b"", bytes(range(256)) * 3),
        ("data-to-empty", bytes(range(256)) * 3, b""),
        ("both-empty", b"", b""),
        ("identical", same, same),
    ]
    for i in range(40 if not CAMPAIGN else 400):
        n = rng.choice((1, 10, 100, 1000, 5000, 20000))
        if rng.random() < 0.5:
            old = bytes(rng.randrange(256) for _ in range(n))
        else:  # low-entropy, repetitive data: long matches, small diffs
            old = bytes(rng.choice(b"\x00\x01\x02\x10\xff") for _ in range(n))
        pairs.append(("random-%d" % i, old, mutate(rng, old, rng.randrange(1, 20))))
    # shifted blocks: the adjustment goes backwards and forwards
    base = bytes(rng.randrange(256) for _ in range(8000))
    pairs.append(("rotated", base, base[3000:] + base[:3000]))
    pairs.append(("reversed-blocks", base, b"".join(base[i : i + 500] for i in range(7500, -1, -500))))
    return pairs


PAIRS = _random_pairs()
ESP_PAIRS = [
    ("esp32-edit1", esp32_app(1, 60), esp32_app(1, 60, b"1.0.1", edits=1, edit_seed=1)),
    ("esp32-edit5", esp32_app(2, 120), esp32_app(2, 120, b"1.1.0", edits=5, edit_seed=2)),
    ("esp32-new-program", esp32_app(3, 60), esp32_app(4, 60)),
]


@pytest.mark.parametrize("name,old,new", PAIRS + ESP_PAIRS, ids=[p[0] for p in PAIRS + ESP_PAIRS])
def test_matches_detools(name, old, new):
    raw = host.raw_patch(old, new)
    assert detools_apply(old, raw) == new
    assert apply_raw(old, raw) == new
    assert apply_raw(old, raw, size=7, step=5) == new
    assert len(raw) <= host.max_raw_patch_len(len(new))
    patch = host.make_patch(old, new)
    assert host.apply_patch(old, patch) == new
    assert host.apply_patch(old, patch, to_size=len(new), max_out=host.max_raw_patch_len(len(new))) == new


@pytest.mark.parametrize("size,step", [(1, 1), (7, 3), (4096, 1), (4096, 4096), (1000, 700)])
def test_readinto_sizes(size, step):
    old, new = ESP_PAIRS[0][1], ESP_PAIRS[0][2]
    raw = host.raw_patch(old, new)
    assert apply_raw(old, raw, size=size, step=step) == new
    # through the Inflate stage, as on the device
    src = Inflate(Source(host.zlib_compress(raw), step), "zlib", WBITS, 1 << 24)
    assert read_all(Patch(src, Base(old), len(new)), size) == new


def test_readinto_fills_what_it_can():
    old, new = ESP_PAIRS[1][1], ESP_PAIRS[1][2]
    stage = Patch(Source(host.raw_patch(old, new), 13), Base(old))
    buf = bytearray(4096)
    sizes = []
    while True:
        n = stage.readinto(buf)
        if not n:
            break
        sizes.append(n)
    assert sum(sizes) == len(new)
    assert all(n == 4096 for n in sizes[:-1])  # only the last block is short
    assert stage.readinto(buf) == 0  # and the end stays the end


def test_base_is_read_sequentially_within_bounds():
    old, new = ESP_PAIRS[1][1], ESP_PAIRS[1][2]
    base = Base(old)  # asserts every read is inside the base
    assert read_all(Patch(Source(host.raw_patch(old, new)), base)) == new
    assert 0 < base.bytes_read <= len(new)


def test_to_size_reported_and_checked():
    old, new = PAIRS[5][1], PAIRS[5][2]
    raw = host.raw_patch(old, new)
    assert Patch(Source(raw), Base(old)).to_size == len(new)
    with pytest.raises(OTAError) as e:
        Patch(Source(raw), Base(old), to_size=len(new) + 1)
    assert e.value.reason == "size_mismatch"


# --- hostile patches: each a clear OTAError


def hdr(to_size):
    return b"\x00" + pack_size(to_size) + (pack_size(0) if to_size else b"")


def chunk(diff, extra, adjust, diff_len=None, extra_len=None):
    return (
        pack_size(len(diff) if diff_len is None else diff_len)
        + diff
        + pack_size(len(extra) if extra_len is None else extra_len)
        + extra
        + pack_size(adjust)
    )


OLD = bytes(range(100))

HOSTILE = [
    ("empty patch", b"", "truncated"),
    ("in-place patch", b"\x10" + pack_size(10), "unsupported_patch"),
    ("hdiffpatch patch", b"\x20" + pack_size(10), "unsupported_patch"),
    ("padding bit set", b"\x80" + pack_size(10), "unsupported_patch"),
    ("lzma compressed", b"\x01" + pack_size(10), "unsupported_patch"),
    ("heatshrink compressed", b"\x04" + pack_size(10), "unsupported_patch"),
    ("data-format patch", b"\x00" + pack_size(10) + pack_size(4) + pack_size(0) + b"abcd", "unsupported_patch"),
    ("negative to_size", b"\x00" + pack_size(-5), "corrupt_patch"),
    ("size field too long", b"\x00" + b"\xff" * 12, "corrupt_patch"),
    ("to_size truncated", b"\x00\x80", "truncated"),
    ("diff longer than target", hdr(10) + chunk(b"\x00" * 11, b"", 0), "corrupt_patch"),
    ("diff size lies (huge)", hdr(10) + pack_size(1 << 30), "corrupt_patch"),
    ("negative diff size", hdr(10) + pack_size(-1), "corrupt_patch"),
    ("extra beyond target", hdr(10) + chunk(b"\x00" * 5, b"x" * 6, 0), "corrupt_patch"),
    ("negative extra size", hdr(10) + pack_size(5) + b"\x00" * 5 + pack_size(-3), "corrupt_patch"),
    ("diff reads past base end", hdr(200) + chunk(b"\x00" * 101, b"", 0), "corrupt_patch"),
    ("adjust before base start", hdr(20) + chunk(b"\x00" * 10, b"", -11), "corrupt_patch"),
    ("adjust past base end", hdr(20) + chunk(b"\x00" * 10, b"", 91), "corrupt_patch"),
    ("second diff past base end", hdr(20) + chunk(b"\x00" * 10, b"", 85) + chunk(b"\x00" * 10, b"", 0), "corrupt_patch"),
    ("data cut short", hdr(20) + pack_size(20) + b"\x00" * 19, "truncated"),
    ("no final adjustment", hdr(10) + pack_size(10) + b"\x00" * 10 + pack_size(0), "truncated"),
    ("chunks stop early", hdr(20) + chunk(b"\x00" * 10, b"", 0), "truncated"),
    ("trailing bytes", hdr(10) + chunk(b"\x00" * 10, b"", 0) + b"\x00", "trailing_data"),
    ("trailing chunk", hdr(10) + chunk(b"\x00" * 10, b"", 0) + chunk(b"", b"x", 0), "trailing_data"),
    ("trailing after empty image", b"\x00\x00\x00", "trailing_data"),
]


@pytest.mark.parametrize("name,patch,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile(name, patch, reason):
    with pytest.raises(OTAError) as e:
        read_all(Patch(Source(patch, 3), Base(OLD)))
    assert e.value.reason == reason
    assert e.value.message  # says what happened


def test_valid_handmade_patch():
    # The handmade format above is right: a valid handmade patch applies, as detools applies it.
    patch = hdr(25) + chunk(b"\x01" * 10, b"hello", 80) + chunk(b"\x00" * 10, b"", -7)
    want = bytes(i + 1 for i in range(10)) + b"hello" + bytes(range(90, 100))
    assert detools_apply(OLD, patch) == want
    assert read_all(Patch(Source(patch, 1), Base(OLD)), 3) == want
    assert read_all(Patch(Source(b"\x00\x00"), Base(OLD))) == b""


def test_every_truncation_of_a_real_patch():
    old, new = PAIRS[10][1], PAIRS[10][2]
    raw = host.raw_patch(old, new)
    for cut in range(len(raw)):
        with pytest.raises(OTAError) as e:
            read_all(Patch(Source(raw[:cut], 7), Base(old)))
        assert e.value.reason == "truncated", cut


def test_every_truncation_of_a_compressed_patch():
    old, new = PAIRS[10][1], PAIRS[10][2]
    patch = host.make_patch(old, new)
    for cut in range(len(patch)):
        with pytest.raises(OTAError) as e:
            host.apply_patch(old, patch[:cut])
        assert e.value.reason == "truncated", cut


def test_memory_bounded_on_lying_sizes():
    # A patch that claims a 16 GB image must cost what a small one costs, and stop at its end.
    liar = b"\x00" + pack_size(1 << 34 - 1) + pack_size(0) + chunk(b"\x00" * 100, b"", -100) * 50
    tracemalloc.start()
    try:
        with pytest.raises(OTAError) as e:
            read_all(Patch(Source(liar), Base(OLD)), limit=1 << 20)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.reason in ("truncated", "corrupt_patch")
    assert peak < 64 * 1024


def test_output_never_beyond_to_size():
    old, new = PAIRS[12][1], PAIRS[12][2]
    raw = host.raw_patch(old, new)
    stage = Patch(Source(raw + b"\x00" * 100), Base(old))  # more bytes than the image needs
    with pytest.raises(OTAError) as e:
        read_all(stage, 64)
    assert e.value.reason == "trailing_data"
    assert stage._to_pos == len(new)


def test_source_errors_pass_through():
    old, new = PAIRS[12][1], PAIRS[12][2]
    raw = host.raw_patch(old, new)
    from tests.ota.delta_helpers import FailingSource

    boom = OSError(110, "timed out")
    with pytest.raises(OSError) as e:
        read_all(Patch(FailingSource(raw, len(raw) // 2, boom), Base(old)))
    assert e.value is boom


def test_make_patch_window_and_level():
    old, new = ESP_PAIRS[1][1], ESP_PAIRS[1][2]
    for wbits in (9, 12, 15):
        patch = host.make_patch(old, new, wbits=wbits)
        assert patch[0] >> 4 == wbits - 8  # the zlib header declares the window
        if wbits <= WBITS:
            assert host.apply_patch(old, patch, wbits=WBITS) == new
        else:
            with pytest.raises(OTAError) as e:
                host.apply_patch(old, patch)
            assert e.value.reason == "window_too_large"
    from ota_tool.errors import ToolError

    with pytest.raises(ToolError):
        host.make_patch(old, new, wbits=16)


def test_sizes_report():
    old, new = ESP_PAIRS[1][1], ESP_PAIRS[1][2]
    s = host.sizes(old, new)
    assert set(s) == {"new", "ours", "bsdiff4", "heatshrink", "zlib_full", "raw"}
    assert s["new"] == len(new)
    assert s["ours"] == len(host.make_patch(old, new))
    assert 0 < s["ours"] < s["heatshrink"] < s["zlib_full"] < len(new)


# --- fuzzing: nothing but OTAError ever escapes, and what applies matches detools

FUZZ_OLD = bytes(random.Random(5).randrange(256) for _ in range(300))
FUZZ_NEW = mutate(random.Random(6), FUZZ_OLD, 6)
FUZZ_RAW = host.raw_patch(FUZZ_OLD, FUZZ_NEW)

sizes = st.one_of(st.integers(-3, 40), st.integers(-(1 << 40), 1 << 40))
structured = st.builds(
    lambda to_size, df, chunks, tail: b"\x00"
    + pack_size(to_size)
    + pack_size(df)
    + b"".join(pack_size(d) + bytes(min(max(d, 0), 64)) + pack_size(e) + b"x" * min(max(e, 0), 64) + pack_size(a) for d, e, a in chunks)
    + tail,
    st.integers(-2, 200),
    st.sampled_from([0, 0, 0, 1]),
    st.lists(st.tuples(sizes, sizes, st.one_of(st.integers(-400, 400), sizes)), max_size=8),
    st.binary(max_size=4),
)


@st.composite
def mutated(draw):
    data = bytearray(FUZZ_RAW)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.integers(0, 3))
        at = draw(st.integers(0, len(data)))
        if kind == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == 2:
            del data[at : at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


def _check_patch(patch, size, step):
    try:
        out = read_all(Patch(Source(patch, step), Base(FUZZ_OLD)), size, limit=1 << 16)
    except OTAError as e:
        assert e.reason and e.message
        return
    # It applied: detools must agree byte for byte.
    assert out == detools_apply(FUZZ_OLD, patch)


@FUZZ
@given(st.one_of(st.binary(max_size=400), structured, mutated()), st.sampled_from([1, 7, 4096]), st.integers(1, 600))
def test_fuzz_raw_patch(patch, size, step):
    _check_patch(patch, size, step)


@FUZZ
@given(st.one_of(structured, mutated()), st.integers(9, 12))
def test_fuzz_compressed_patch(raw, wbits):
    patch = host.zlib_compress(raw, wbits)
    try:
        out = host.apply_patch(FUZZ_OLD, patch)
    except OTAError as e:
        assert e.reason and e.message
        return
    assert out == detools_apply(FUZZ_OLD, raw)


# --- under MicroPython: Inflate -> Patch from files read in small pieces, heap-limited
#
# The heap holds the library's code too (.mpy files are loaded into RAM, 64-bit objects on this
# port): about 16 KB of it is code; the pipeline itself (Patch, Inflate, DeflateIO's 4 KiB
# window) is about 7 KB, plus the writer's 4 KiB block. bench/bench_delta.py bisects the heap.
MP_HEAP = "48k"


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    from tests.ota.delta_helpers import compile_for_mp, mp_arch

    if not mp_arch():
        pytest.skip("no MicroPython native arch for this machine")
    return compile_for_mp(str(tmp_path_factory.mktemp("mpy")))


def _mp_apply(mpy_dir, tmp_path, old, patch, to_size, heap=MP_HEAP, step=100):
    from tests.ota.delta_helpers import run_mp

    (tmp_path / "old.bin").write_bytes(old)
    (tmp_path / "patch.z").write_bytes(patch)
    res = run_mp(mpy_dir, str(tmp_path / "patch.z"), heap, str(tmp_path / "old.bin"), to_size, step=step)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.split()


@pytest.mark.micropython
def test_mp_applies_real_patch(mpy_dir, tmp_path):
    import hashlib

    old = esp32_app(11, 300)
    new = esp32_app(11, 300, b"1.0.1", edits=3, edit_seed=4)
    out = _mp_apply(mpy_dir, tmp_path, old, host.make_patch(old, new), len(new))
    assert out[:3] == ["ok", str(len(new)), hashlib.sha256(new).hexdigest()]


@pytest.mark.micropython
def test_mp_refuses_bad_patches(mpy_dir, tmp_path):
    old = esp32_app(12, 40)
    new = esp32_app(12, 40, b"1.0.1", edits=2, edit_seed=1)
    patch = host.make_patch(old, new)
    assert _mp_apply(mpy_dir, tmp_path, old, patch, len(new) + 1)[:2] == ["OTAError", "size_mismatch"]
    assert _mp_apply(mpy_dir, tmp_path, old, patch[:-10], len(new))[:2] == ["OTAError", "truncated"]
    assert _mp_apply(mpy_dir, tmp_path, old[:1000], patch, len(new))[:2] == ["OTAError", "corrupt_patch"]
    lying = host.zlib_compress(hdr(len(new)) + chunk(b"\x00" * 10, b"", 0) + pack_size(len(new)))
    assert _mp_apply(mpy_dir, tmp_path, old, lying, len(new))[:2] == ["OTAError", "corrupt_patch"]

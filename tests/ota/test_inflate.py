"""ota.inflate.Inflate under CPython: round trips at every read size, and each hostile stream
(zip bomb, truncation, corruption, trailing bytes, a too-large window) ends in a clear OTAError
with bounded memory; the main cases again under MicroPython.
"""
import os
import random
import tracemalloc
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.errors import OTAError
from ota.inflate import WBITS, Inflate
from tests.ota.delta_helpers import FailingSource, Source, esp32_app, read_all

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"
FUZZ = settings(max_examples=10_000 if CAMPAIGN else 300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

RNG = random.Random(7)
DATA = {
    "empty": b"",
    "one": b"x",
    "random": bytes(RNG.randrange(256) for _ in range(20000)),
    "text": b"".join(b"line %d of a log that repeats itself\n" % (i % 97) for i in range(3000)),
    "image": esp32_app(9, 80),
}


def compress(data, wbits=WBITS, level=9, gzip=False):
    c = zlib.compressobj(level, zlib.DEFLATED, wbits + 16 if gzip else wbits, 9)
    return c.compress(data) + c.flush()


def inflate(stream, max_out=1 << 24, size=4096, step=4096, fmt="zlib", wbits=WBITS):
    return read_all(Inflate(Source(stream, step), fmt, wbits, max_out), size)


@pytest.mark.parametrize("name", sorted(DATA))
@pytest.mark.parametrize("size,step", [(1, 1), (7, 7), (7, 4096), (4096, 1), (4096, 4096)])
def test_round_trip(name, size, step):
    data = DATA[name]
    if size == 1 and len(data) > 30000:
        data = data[:30000]
    assert inflate(compress(data), size=size, step=step) == data
    assert inflate(compress(data, gzip=True), size=size, step=step, fmt="gzip") == data


@pytest.mark.parametrize("wbits", [9, 10, 11, 12])
@pytest.mark.parametrize("level", [1, 6, 9])
def test_smaller_windows_and_levels(wbits, level):
    data = DATA["image"]
    assert inflate(compress(data, wbits, level)) == data


def test_exact_max_out_is_fine_one_less_is_too_long():
    data = DATA["text"]
    stream = compress(data)
    assert inflate(stream, max_out=len(data)) == data
    with pytest.raises(OTAError) as e:
        inflate(stream, max_out=len(data) - 1)
    assert e.value.reason == "too_long"


def test_zip_bomb_stops_at_max_out_with_bounded_memory():
    bomb = compress(b"\x00" * (64 << 20))  # 64 MiB of zeros in ~64 KB
    src = Source(bomb, 512)
    stage = Inflate(src, "zlib", WBITS, 1 << 20)
    tracemalloc.start()
    try:
        buf = bytearray(4096)
        with pytest.raises(OTAError) as e:
            while stage.readinto(buf):  # drain without keeping the output
                pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.reason == "too_long"
    assert stage.produced == 1 << 20
    assert src.pos < len(bomb) // 32  # it stopped right there, not at the bomb's end
    assert peak < 128 * 1024


def test_every_truncation_is_truncated():
    data = DATA["text"][:3000]
    for gzip in (False, True):
        stream = compress(data, gzip=gzip)
        for cut in range(len(stream)):
            with pytest.raises(OTAError) as e:
                inflate(stream[:cut], step=5, fmt="gzip" if gzip else "zlib")
            assert e.value.reason == "truncated", (gzip, cut)


@pytest.mark.parametrize("tail", [b"\x00", b"garbage", compress(b"second stream")])
def test_trailing_bytes_are_refused(tail):
    for gzip in (False, True):
        stream = compress(DATA["text"], gzip=gzip) + tail
        with pytest.raises(OTAError) as e:
            inflate(stream, step=1000, fmt="gzip" if gzip else "zlib")
        assert e.value.reason == "trailing_data"


def test_bad_checksum_is_corrupt():
    stream = bytearray(compress(DATA["text"]))
    stream[-1] ^= 1  # Adler-32
    with pytest.raises(OTAError) as e:
        inflate(bytes(stream))
    assert e.value.reason == "corrupt_stream"
    gz = bytearray(compress(DATA["text"], gzip=True))
    gz[-5] ^= 1  # CRC-32
    with pytest.raises(OTAError) as e:
        inflate(bytes(gz), fmt="gzip")
    assert e.value.reason == "corrupt_stream"


@pytest.mark.parametrize(
    "stream,reason",
    [
        (b"\x78\x00" + b"\x00" * 10, "corrupt_stream"),  # header check bits wrong
        (b"\x79\x9c" + b"\x00" * 10, "corrupt_stream"),  # CM != 8
        (b"\x48\x2c" + b"\x00" * 10, "corrupt_stream"),  # preset dictionary: not for us
        (b"\x1f\x8b\x08\x00" + b"\x00" * 10, "corrupt_stream"),  # gzip where zlib was expected
        (b"\x48\x0d\xff\xff\xff\xff", "corrupt_stream"),  # bad block type
        (b"\x78", "truncated"),
    ],
)
def test_bad_headers(stream, reason):
    with pytest.raises(OTAError) as e:
        inflate(stream)
    assert e.value.reason == reason


def test_window_larger_than_allowed_is_refused_at_the_header():
    stream = compress(DATA["text"], wbits=15)
    with pytest.raises(OTAError) as e:
        inflate(stream)
    assert e.value.reason == "window_too_large"
    assert "wbits=12" in e.value.message
    assert inflate(stream, wbits=15) == DATA["text"]


def test_source_errors_are_not_corrupt_data():
    boom = OSError(110, "timed out")
    stream = compress(DATA["random"])
    stage = Inflate(FailingSource(stream, 5000, boom, step=100), "zlib", WBITS, 1 << 20)
    with pytest.raises(OSError) as e:
        read_all(stage)
    assert e.value is boom


def test_bad_arguments():
    for fmt, wbits in (("raw", 12), ("zlib", 8), ("gzip", 16)):
        with pytest.raises(OTAError) as e:
            Inflate(Source(b""), fmt, wbits, 100)
        assert e.value.reason == "bad_argument"


@FUZZ
@given(st.binary(max_size=300), st.sampled_from(["zlib", "gzip"]), st.integers(1, 64))
def test_fuzz_garbage(stream, fmt, step):
    try:
        inflate(stream, max_out=1 << 16, size=7, step=step, fmt=fmt)
    except OTAError as e:
        assert e.reason in ("truncated", "corrupt_stream", "trailing_data", "too_long", "window_too_large")


GOOD = compress(DATA["text"][:2000])


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 255)), min_size=1, max_size=4), st.integers(1, 64))
def test_fuzz_corrupted_stream(flips, step):
    stream = bytearray(GOOD)
    for at, value in flips:
        stream[at] = value
    try:
        out = inflate(bytes(stream), max_out=1 << 16, size=7, step=step)
    except OTAError as e:
        assert e.reason in ("truncated", "corrupt_stream", "trailing_data", "too_long", "window_too_large")
        return
    assert out == zlib.decompress(bytes(stream))  # whatever passed is a valid stream


# --- under MicroPython: DeflateIO behind the same stage, data from files in small reads

MP_HEAP = "48k"  # see test_delta.py: the library's code is loaded into this heap on a 64-bit port


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    from tests.ota.delta_helpers import compile_for_mp, mp_arch

    if not mp_arch():
        pytest.skip("no MicroPython native arch for this machine")
    return compile_for_mp(str(tmp_path_factory.mktemp("mpy")))


def _mp_inflate(mpy_dir, tmp_path, stream, **kw):
    from tests.ota.delta_helpers import run_mp

    path = tmp_path / "stream.z"
    path.write_bytes(stream)
    res = run_mp(mpy_dir, str(path), kw.pop("heap", MP_HEAP), **kw)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.split()


@pytest.mark.micropython
def test_mp_inflate_round_trip(mpy_dir, tmp_path):
    import hashlib

    data = DATA["image"] + DATA["text"]
    out = _mp_inflate(mpy_dir, tmp_path, compress(data), step=61)
    assert out[:3] == ["ok", str(len(data)), hashlib.sha256(data).hexdigest()]


@pytest.mark.micropython
def test_mp_zip_bomb_truncated_corrupt_trailing(mpy_dir, tmp_path):
    bomb = compress(b"\x00" * (16 << 20))
    assert _mp_inflate(mpy_dir, tmp_path, bomb, max_out=1 << 20, step=4096)[:2] == ["OTAError", "too_long"]
    stream = compress(DATA["text"])
    assert _mp_inflate(mpy_dir, tmp_path, stream[:-3])[:2] == ["OTAError", "truncated"]
    assert _mp_inflate(mpy_dir, tmp_path, stream[: len(stream) // 2])[:2] == ["OTAError", "truncated"]
    bad = bytearray(stream)
    bad[-2] ^= 0x40
    assert _mp_inflate(mpy_dir, tmp_path, bytes(bad))[:2] == ["OTAError", "corrupt_stream"]
    assert _mp_inflate(mpy_dir, tmp_path, stream + b"junk")[:2] == ["OTAError", "trailing_data"]
    assert _mp_inflate(mpy_dir, tmp_path, compress(DATA["text"], wbits=15))[:2] == ["OTAError", "window_too_large"]


def test_reserve_keeps_the_block_buffer_when_the_room_is_not_there(monkeypatch):
    # A heap with a 4 KiB hole but no 6 KiB one: the buffer is still taken before the verification
    # (a raw artifact needs nothing more); the room is then allocated by the download if needed.
    from ota import update

    def short_heap(n):
        if n > 4096:
            raise MemoryError("memory allocation failed, allocating %d bytes" % n)
        return bytearray(n)

    monkeypatch.setattr(update, "bytearray", short_heap, raising=False)
    buf, room = update.reserve()
    assert len(buf) == update.BLOCK and room is None

    def no_heap(n):
        raise MemoryError("memory allocation failed, allocating %d bytes" % n)

    monkeypatch.setattr(update, "bytearray", no_heap, raising=False)
    assert update.reserve() == (None, None)


def test_room_for_the_window_is_given_back_at_the_first_read():
    # update.reserve() holds the decoder's room from before the verification; Inflate lets it go
    # just before the decoder allocates its window (its first read), not before, not never
    from ota import update

    data = DATA["image"]
    buf, room = update.reserve()
    assert len(buf) == 4096 and len(room) == 1 and len(room[0]) == update.ROOM >= (1 << WBITS) + 1300
    d = Inflate(Source(compress(data)), "zlib", WBITS, len(data), room)
    assert len(room) == 1  # the header is read, no data yet
    assert read_all(d) == data and room == []

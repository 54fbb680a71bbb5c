"""ota.reloc.RelocPatch (relocation-aware deltas, "rdelta") and ota_tool.rdelta (host side).

Fixtures are small ESP32 app images with real Xtensa encodings (tests/ota/delta_helpers.
xtensa_app: ENTRY, CALL8, L32R from literal pools, pointer tables): never the real firmware pairs
of bench/bench_delta.py. The transform T is checked byte for byte against the ISA's formulas on a
hand-made image, under CPython and under MicroPython (the viper twin); hostile patches each end
in a clear OTAError; a fuzzer checks that nothing else escapes.
"""
import hashlib
import io
import os
import random
import struct
import tracemalloc

import pytest
from detools.bsdiff import pack_size
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ota.errors import OTAError
from ota.reloc import HEADER, MAX_MAP, MAX_POOLS, RelocPatch, max_raw_patch_len
from ota_tool import delta, rdelta
from tests.ota.delta_helpers import Base, Source, read_all, xtensa_app

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"
FUZZ = settings(max_examples=10_000 if CAMPAIGN else 200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

OLD = xtensa_app(1, 120)
NEW = xtensa_app(1, 120, b"1.0.1", edits=3, edit_seed=2)
RAW, FACTS = rdelta.make_raw(OLD, NEW)
PATCH = delta.zlib_compress(RAW)

PAIRS = [
    ("edit3", OLD, NEW),
    ("edit12", xtensa_app(2, 200), xtensa_app(2, 200, b"1.1.0", edits=12, edit_seed=5)),
    ("identical", OLD, OLD),
    ("other-program", xtensa_app(3, 30), xtensa_app(4, 30)),
]


@pytest.mark.parametrize("name,old,new", PAIRS, ids=[p[0] for p in PAIRS])
def test_round_trip(name, old, new):
    patch = rdelta.make_patch(old, new)
    assert rdelta.apply_patch(old, patch, to_size=len(new)) == new
    raw, _ = rdelta.make_raw(old, new)
    assert read_all(RelocPatch(Source(raw, 7), Base(old), len(new)), 5) == new  # odd read sizes


def test_smaller_than_todays_format_and_uses_the_map():
    assert FACTS["map"] > 1 and FACTS["pools"] >= 1
    assert len(PATCH) * 3 < len(delta.make_patch(OLD, NEW))


def test_only_esp32_images():
    from ota_tool.errors import ToolError

    with pytest.raises(ToolError):
        rdelta.make_patch(b"\x00" * 1000, NEW)


# --- T, byte for byte, on a hand-made image (the ISA formulas written out here)

IROM, DROM = 0x400D0000, 0x3F400000


def _handmade():
    from esptool.bin_image import ELFSection, ESP32FirmwareImage

    text = bytearray(0x104)
    text[0:4] = struct.pack("<I", DROM + 0x100)  # literal pool word: a pointer to .rodata
    text[4:7] = b"\x36\x41\x00"  # 0x400D0004: ENTRY a1, 32 (function A)
    # 0x400D0007: CALL8 B (0x400D0100): offset = (0x400D0100 - 0x400D0004 - 4) >> 2 = 0x3E
    text[7:10] = bytes([0x25 | (0x3E & 3) << 6, 0x3E >> 2, 0])
    # 0x400D000A: L32R a2, [0x400D0000]: imm16 = (0x400D0000 - 0x400D000C) >> 2 = -3
    text[10:13] = bytes([0x21, 0xFD, 0xFF])
    text[0x100:0x103] = b"\x36\x41\x00"  # 0x400D0100: ENTRY (function B)
    rodata = struct.pack("<II", IROM + 4, 0x12345678) + b"\x00" * 8  # a function pointer, a number
    img = ESP32FirmwareImage()
    img.entrypoint = IROM + 4
    img.segments = [ELFSection(b".flash.rodata", DROM, rodata, flags=0),
                    ELFSection(b".flash.text", IROM, bytes(text), flags=0)]
    return img.save(None)


HANDMADE = _handmade()
# pieces: .rodata +0x10; the pool stays; function A moves +0x20, function B +0x40
PIECES = [(DROM, 0x10), (IROM, 0), (IROM + 4, 0x20), (IROM + 0x100, 0x40)]
POOLS = [(IROM, IROM + 4)]


def _expected_t():
    out = bytearray(HANDMADE)
    ro, text = HANDMADE.index(struct.pack("<II", IROM + 4, 0x12345678)), HANDMADE.index(b"\x36\x41\x00") - 4
    out[ro:ro + 4] = struct.pack("<I", IROM + 4 + 0x20)  # the pointer to A follows A
    out[text:text + 4] = struct.pack("<I", DROM + 0x100 + 0x10)  # the pool word follows .rodata
    # CALL8 at 0x400D0027 (moved) to B at 0x400D0140: (0x400D0140 - 0x400D0024 - 4) >> 2 = 0x46
    out[text + 7:text + 10] = bytes([0x25 | (0x46 & 3) << 6, 0x46 >> 2, 0])
    # L32R at 0x400D002A (moved), literal stays at 0x400D0000: (0x400D0000 - 0x400D002C) >> 2 = -11
    out[text + 10:text + 13] = bytes([0x21, 0xF5, 0xFF])
    return bytes(out)


def test_transform_follows_the_isa():
    got = rdelta.transform(HANDMADE, rdelta.ESP32_RANGES, PIECES, POOLS)
    assert got == _expected_t()
    # every way of reading it gives the same bytes (the context around each chunk is re-read)
    stage = RelocPatch(Source(rdelta.encode(len(HANDMADE), 0, rdelta.ESP32_RANGES, PIECES, POOLS, b"")), Base(HANDMADE))
    rng = random.Random(3)
    for _ in range(200):
        off = rng.randrange(len(HANDMADE))
        n = rng.randrange(1, min(700, len(HANDMADE) - off) + 1)
        buf = bytearray(n)
        stage.read_at(off, memoryview(buf))
        assert bytes(buf) == got[off:off + n], (off, n)


def test_transform_skips_what_is_not_an_instruction():
    # a CALL8 whose target is no ENTRY, an L32R whose literal is in no listed pool: unchanged
    img = bytearray(HANDMADE)
    entry_b = img.index(b"\x36\x41\x00", img.index(b"\x36\x41\x00") + 1)
    img[entry_b] = 0x37
    got = rdelta.transform(bytes(img), rdelta.ESP32_RANGES, PIECES, [])
    text = HANDMADE.index(b"\x36\x41\x00") - 4
    assert got[text + 7:text + 13] == img[text + 7:text + 13]
    assert got[text:text + 4] == img[text:text + 4]  # no pool: a word in code stays


def test_transform_of_a_base_that_is_no_image_is_the_identity():
    junk = bytes(random.Random(1).randrange(256) for _ in range(3000))
    assert rdelta.transform(junk, rdelta.ESP32_RANGES, PIECES, POOLS) == junk


# --- hostile patches: each a clear OTAError, nothing but OTAError


def _n(*values):
    return b"".join(pack_size(v) for v in values)


def _head(old_size=len(OLD), to_size=10, ranges=rdelta.ESP32_RANGES, pieces=(), pools=()):
    return rdelta.encode(old_size, to_size, list(ranges), list(pieces), list(pools), b"")


R = [(0x3F400000, 0x3F800000, 0), (0x400D0000, 0x40400000, 1)]
HOSTILE = [
    ("empty", b"", "truncated"),
    ("a detools patch", b"\x00" + _n(10, 0), "unsupported_patch"),
    ("wrong base size", _head(old_size=len(OLD) - 1), "wrong_base"),
    ("negative image size", bytes([HEADER]) + _n(len(OLD), -5), "size_mismatch"),
    ("too many ranges", bytes([HEADER]) + _n(len(OLD), 10, 9), "corrupt_patch"),
    ("ranges out of order", bytes([HEADER]) + _n(len(OLD), 10, 2, 100, 10, 0, -50, 10, 0), "corrupt_patch"),
    ("range kind 2", bytes([HEADER]) + _n(len(OLD), 10, 1, 100, 10, 2), "corrupt_patch"),
    ("too many map pieces", bytes([HEADER]) + _n(len(OLD), 10, 0, MAX_MAP + 1), "corrupt_patch"),
    ("map count lies (huge)", bytes([HEADER]) + _n(len(OLD), 10, 0, 1 << 30), "corrupt_patch"),
    ("map out of range", _head(ranges=R, pieces=[(0x50000000, 4)]), "corrupt_patch"),
    ("map not increasing", _head(ranges=R)[:-2] + _n(2, 0x3F400100, 4, -0x10, 4, 0), "corrupt_patch"),
    ("map shift too large", _head(ranges=R, pieces=[(0x3F400000, 1 << 25)]), "corrupt_patch"),
    ("too many pools", _head(ranges=R)[:-1] + _n(MAX_POOLS + 1), "corrupt_patch"),
    ("pools overlap", _head(ranges=R)[:-1] + _n(2, 0x400D0000, 4, -8, 4), "corrupt_patch"),
    ("pool not aligned", _head(ranges=R, pools=[(0x400D0002, 0x400D000A)]), "corrupt_patch"),
    ("pool in data", _head(ranges=R, pools=[(0x3F400000, 0x3F400010)]), "corrupt_patch"),
    ("pool outside the ranges", _head(ranges=R, pools=[(0x50000000, 0x50000010)]), "corrupt_patch"),
    ("tables cut short", _head(ranges=R, pieces=[(0x3F400000, 4)])[:-3], "truncated"),
    ("diff longer than the image", _head() + _n(11), "corrupt_patch"),
    ("diff past the base end", _head(to_size=len(OLD) + 20) + _n(0, 0, len(OLD) - 5, 10), "corrupt_patch"),
    ("zero run longer than the diff", _head() + _n(10, 11, 0), "corrupt_patch"),
    ("literal run longer than the diff", _head() + _n(10, 4, 7) + b"x" * 7, "corrupt_patch"),
    ("empty run", _head() + _n(10, 0, 0), "corrupt_patch"),
    ("negative run", _head() + _n(10, -1, 3), "corrupt_patch"),
    ("extra beyond the image", _head() + _n(5, 5, 0, 6) + b"x" * 6, "corrupt_patch"),
    ("adjust before the base", _head() + _n(10, 10, 0, 0, -11), "corrupt_patch"),
    ("runs stop early", _head() + _n(10, 4, 0), "truncated"),
    ("trailing bytes", _head() + _n(10, 10, 0, 0, 0) + b"\x00", "trailing_data"),
    ("size field too long", _head() + b"\xff" * 8, "corrupt_patch"),
]


@pytest.mark.parametrize("name,raw,reason", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile(name, raw, reason):
    with pytest.raises(OTAError) as e:
        read_all(RelocPatch(Source(raw, 3), Base(OLD)), limit=1 << 22)
    assert e.value.reason == reason, e.value
    assert e.value.message


def test_valid_handmade_patch():
    # the handmade chunk format above is right: the same header with whole runs applies
    raw = _head(to_size=10) + _n(10, 6, 4) + b"\x01\x02\x03\x04" + _n(0, 0)
    want = bytes(OLD[:6]) + bytes((OLD[6 + i] + 1 + i) & 0xFF for i in range(4))
    assert read_all(RelocPatch(Source(raw, 1), Base(OLD)), 3) == want


def test_every_truncation():
    for cut in range(0, len(RAW), 7):
        with pytest.raises(OTAError) as e:
            read_all(RelocPatch(Source(RAW[:cut], 5), Base(OLD)))
        assert e.value.reason == "truncated", cut
    for cut in range(len(PATCH)):
        with pytest.raises(OTAError) as e:
            rdelta.apply_patch(OLD, PATCH[:cut], to_size=len(NEW))
        assert e.value.reason == "truncated", cut


def test_zip_bomb_stops_at_the_bound():
    bomb = delta.zlib_compress(_head(to_size=100) + b"\x00" * (8 << 20))
    tracemalloc.start()
    try:
        with pytest.raises(OTAError) as e:
            rdelta.apply_patch(OLD, bomb, to_size=100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert e.value.reason in ("too_long", "corrupt_patch")
    assert peak < 256 * 1024


def test_wrong_map_makes_another_image_caught_by_its_hash():
    # A patch made with another map than the device applies is well-formed: it yields another image,
    # which the signed image hash refuses (install: tests/campaign's delta scenarios on a board).
    raw = bytearray(RAW)
    other = rdelta.encode(len(OLD), len(NEW), rdelta.ESP32_RANGES, [(IROM, 0x40)], [],
                          delta.raw_patch(rdelta.transform(OLD, rdelta.ESP32_RANGES, [], []), NEW))
    out = read_all(RelocPatch(Source(other), Base(OLD), len(NEW)))
    assert len(out) == len(NEW) and out != NEW
    assert read_all(RelocPatch(Source(bytes(raw)), Base(OLD), len(NEW))) == NEW


# --- fuzzing: nothing but OTAError escapes, memory stays bounded

FUZZ_OLD = xtensa_app(9, 8, in_ram=True)  # small: the campaign's fuzzer sends it to MicroPython per sample
FUZZ_NEW = xtensa_app(9, 8, b"1.0.1", edits=2, edit_seed=1, in_ram=True)
FUZZ_RAW = rdelta.make_raw(FUZZ_OLD, FUZZ_NEW)[0]

numbers = st.one_of(st.integers(-3, 300), st.integers(-(1 << 33), 1 << 33), st.sampled_from([0x3F400000, 0x400D0000]))
structured = st.builds(
    lambda head, tables, chunks, tail: bytes([HEADER]) + _n(*head) + _n(*tables) + _n(*chunks) + tail,
    st.tuples(st.sampled_from([len(FUZZ_OLD), len(FUZZ_OLD), 7]), st.integers(-2, 400)),
    st.lists(numbers, max_size=24),
    st.lists(numbers, max_size=24),
    st.binary(max_size=8),
)


@st.composite
def mutated(draw):
    data = bytearray(FUZZ_RAW)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.integers(0, 3))
        if kind == 0 and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == 1:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == 2:
            del data[at:at + draw(st.integers(1, 16))]
        else:
            del data[at:]
    return bytes(data)


raw_patches = st.one_of(st.binary(max_size=300), structured, mutated())


@FUZZ
@given(raw_patches, st.sampled_from([1, 7, 4096]), st.integers(1, 600))
def test_fuzz_raw(raw, size, step):
    try:
        out = read_all(RelocPatch(Source(raw, step), Base(FUZZ_OLD)), size, limit=1 << 20)
    except OTAError as e:
        assert e.reason and e.message
        return
    assert raw == FUZZ_RAW or len(out) <= 1 << 20


@FUZZ
@given(raw_patches, st.sampled_from([9, 12]))
def test_fuzz_compressed(raw, wbits):
    try:
        rdelta.apply_patch(FUZZ_OLD, delta.zlib_compress(raw, wbits), to_size=None, max_out=max_raw_patch_len(1 << 16))
    except OTAError as e:
        assert e.reason and e.message


# --- manifests, choice, releases


def test_manifest_extra_artifacts():
    import copy

    from ota import manifest
    from tests.ota import manifest_cases as mc

    d = copy.deepcopy(mc.DOC)
    d["extra_artifacts"] = [
        {"url": "a.rpatch", "size": 100, "sha256": mc.SHA, "encoding": "rdelta", "wbits": 12, "base_sha256": mc.SHA},
        {"url": "b.future", "size": 50, "sha256": mc.SHA, "encoding": "zdelta-9"},  # a later encoding: skipped
    ]
    m = manifest.Manifest(d, [], b"")
    assert [a.encoding for a in m.artifacts][-1] == "rdelta"
    assert len(m.artifacts) == len(mc.DOC["artifacts"]) + 1
    d["extra_artifacts"][0].pop("base_sha256")
    with pytest.raises(OTAError):
        manifest.Manifest(d, [], b"")
    d["extra_artifacts"] = "nope"
    with pytest.raises(OTAError):
        manifest.Manifest(d, [], b"")


def test_release_publishes_both_and_verify_applies_them(tmp_path):
    from ota_tool import keys, release

    key = keys.generate(str(tmp_path / "k.pem"))
    info = release.build(NEW, "1.0.1", [key], str(tmp_path / "repo"), bases=[OLD])
    encodings = [a["encoding"] for a in info["artifacts"]]
    assert encodings == ["raw", "delta", "rdelta"]
    with open(info["manifest"], "rb") as f:
        text = f.read()
    assert b'"extra_artifacts"' in text and text.index(b'"rdelta"') > text.index(b'"extra_artifacts"')
    # older devices: the "artifacts" list holds nothing they do not know
    with open(str(tmp_path / "repo" / ("sha256-%s.bin" % hashlib.sha256(OLD).hexdigest()[:16])), "wb") as f:
        f.write(OLD)  # the base next to the manifest, so verify applies both patches
    report = release.verify(info["manifest"], [keys.public_text(key)])
    assert [a["checked"] for a in report["artifacts"]] == ["produces the signed image"] * 3
    # `ota-tool publish` uploads every file the manifest names, the extra artifact too
    from ota_tool import publish

    assert [a[0] for a in publish.manifest_artifacts(text)] == [a["url"] for a in info["artifacts"]]


def test_release_keeps_todays_format_alone_where_rdelta_is_larger(tmp_path, monkeypatch):
    from ota_tool import keys, release

    monkeypatch.setattr(rdelta, "make_patch", lambda old, new, wbits=12: b"x" * (1 << 20))
    key = keys.generate(str(tmp_path / "k.pem"))
    info = release.build(NEW, "1.0.1", [key], str(tmp_path / "repo"), bases=[OLD])
    assert [a["encoding"] for a in info["artifacts"]] == ["raw", "delta"]


def test_device_chooses_the_smallest_patch_from_its_image(tmp_path):
    import copy

    from ota import manifest, slot, update
    from ota_tool import sim
    from tests.ota import manifest_cases as mc

    dev = sim.create(str(tmp_path / "d.bin"), OLD)
    base = hashlib.sha256(OLD).hexdigest()
    d = copy.deepcopy(mc.DOC)
    d["artifacts"] = [{"url": "a.bin", "size": 200000, "sha256": mc.SHA},
                      {"url": "a.patch", "size": 9000, "sha256": mc.SHA, "encoding": "delta", "wbits": 12, "base_sha256": base}]
    d["extra_artifacts"] = [{"url": "a.rpatch", "size": 900, "sha256": mc.SHA, "encoding": "rdelta", "wbits": 12,
                             "base_sha256": base}]
    m = manifest.Manifest(d, [], b"")

    def app():
        a, length = update.choose(m, slot.running(), bytearray(4096))
        return a.encoding, length

    assert dev.run(app).value == ("rdelta", len(OLD))


# --- under MicroPython: Inflate -> RelocPatch from files in small reads, heap-limited, viper loops

MP_HEAP = "56k"


@pytest.fixture(scope="module")
def mpy_dir(tmp_path_factory):
    from tests.ota.delta_helpers import compile_for_mp, mp_arch

    if not mp_arch():
        pytest.skip("no MicroPython native arch for this machine")
    return compile_for_mp(str(tmp_path_factory.mktemp("mpy")))


def _mp(mpy_dir, tmp_path, old, patch, to_size, heap=MP_HEAP):
    from tests.ota.delta_helpers import run_mp

    (tmp_path / "old.bin").write_bytes(old)
    (tmp_path / "p.z").write_bytes(patch)
    res = run_mp(mpy_dir, str(tmp_path / "p.z"), heap, str(tmp_path / "old.bin"), to_size,
                 max_out=max_raw_patch_len(to_size), fmt="rdelta")
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout.split()


@pytest.mark.micropython
def test_mp_applies_with_the_viper_loops(mpy_dir, tmp_path):
    old, new = PAIRS[1][1], PAIRS[1][2]
    out = _mp(mpy_dir, tmp_path, old, rdelta.make_patch(old, new), len(new))
    assert out[:3] == ["ok", str(len(new)), hashlib.sha256(new).hexdigest()]
    # the hand-made image: T under viper is the ISA's T (a zero diff reads T(base) back)
    raw = rdelta.encode(len(HANDMADE), len(HANDMADE), rdelta.ESP32_RANGES, PIECES, POOLS,
                        delta.raw_patch(HANDMADE, HANDMADE))
    out = _mp(mpy_dir, tmp_path, HANDMADE, delta.zlib_compress(raw), len(HANDMADE))
    assert out[:3] == ["ok", str(len(HANDMADE)), hashlib.sha256(_expected_t()).hexdigest()]


@pytest.mark.micropython
def test_mp_refuses_bad_patches(mpy_dir, tmp_path):
    assert _mp(mpy_dir, tmp_path, OLD, PATCH, len(NEW) + 1)[:2] == ["OTAError", "size_mismatch"]
    assert _mp(mpy_dir, tmp_path, OLD, PATCH[:-10], len(NEW))[:2] == ["OTAError", "truncated"]
    assert _mp(mpy_dir, tmp_path, OLD[:-4], PATCH, len(NEW))[:2] == ["OTAError", "wrong_base"]
    for name, raw, reason in HOSTILE:
        if raw and name in ("map out of range", "pools overlap", "too many map pieces", "empty run"):
            got = _mp(mpy_dir, tmp_path, OLD, delta.zlib_compress(raw), 10)
            assert got[:2] == ["OTAError", reason], (name, got)


def test_board_refuses_a_patch_with_a_wrong_map_and_takes_the_full_image(tmp_path, monkeypatch):
    # A signed rdelta whose map is not the one its chunks were made with: the device applies it,
    # the image checks refuse the result before anything boots it, and the update falls back to
    # the full image (update.install_release), which is then the only thing that boots.
    import contextlib

    from tests.campaign import world as W

    def wrong_map_patch(old, new, wbits=12):
        pools = rdelta.find_pools(old)
        pieces = rdelta.build_map(rdelta._votes(old, new, pools))
        pools = rdelta.useful_pools(old, pools, pieces)
        chunks = delta.raw_patch(rdelta.transform(old, rdelta.ESP32_RANGES, pieces, pools), new)
        pieces = [(v, s + 4) for v, s in pieces] or [(0x3F400000, 4)]
        return delta.zlib_compress(rdelta.encode(len(old), len(new), rdelta.ESP32_RANGES, pieces, pools, chunks))

    monkeypatch.setattr(rdelta, "make_patch", wrong_map_patch)
    w = W.World(str(tmp_path))
    try:
        repo = w.repo("r")
        info = repo.publish(NEW, "2.0.0", bases=[OLD])
        assert [a["encoding"] for a in info["artifacts"]][-1] == "rdelta"
        dev = W.provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der, image=OLD)
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            dev.run(W.main_py)
        # the wrong bytes are caught by the streaming image check (checksum) or by the image hash
        assert "the rdelta artifact of 2.0.0 failed (bad_image" in printed.getvalue() or \
            "the rdelta artifact of 2.0.0 failed (hash_mismatch" in printed.getvalue(), printed.getvalue()[-2000:]
        assert dev.slot_image("ota_1", len(NEW)) == NEW and dev.slot_image("ota_0", len(OLD)) == OLD
    finally:
        w.close()

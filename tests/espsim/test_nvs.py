"""espsim.nvs: the ESP-IDF NVS format, checked against Espressif's own partition generator, and its
power-cut behaviour, checked at every flash operation of a long update sequence.

OTA_CAMPAIGN=1 runs longer sequences, more partition sizes, a random sequence and every cut
during recovery (minutes); the default run keeps a smaller but still page-reclaiming sweep.
"""
import base64
import binascii
import os
import random
import struct
from types import SimpleNamespace

import pytest
from esp_idf_nvs_partition_gen import nvs_partition_gen as nvsgen

from espsim import flash
from espsim.nvs import NvsError, NvsNotFound, NvsStorage, dump

CAMPAIGN = os.environ.get("OTA_CAMPAIGN") == "1"
OFF = 0x9000  # where MicroPython's partition tables put the NVS partition
SIZE = 0x4000  # 4 pages, as in MicroPython's partitions-4MiB-ota.csv


# ---- helpers


def make_flash(path, image=None, offset=OFF):
    flash.create(str(path), 64 * 1024)
    if image is not None:
        with open(str(path), "r+b") as f:
            f.seek(offset)
            f.write(image)
    return str(path)


def generate(tmp_path, rows, size, version=2, files=None):
    """An NVS partition image from CSV rows, by esp_idf_nvs_partition_gen itself."""
    for name, data in (files or {}).items():
        (tmp_path / name).write_bytes(data)
    lines = []
    for row in rows:  # "file" values are relative to the working directory: make them absolute
        key, kind, enc, value = row.split(",", 3)
        lines.append(",".join((key, kind, enc, str(tmp_path / value) if kind == "file" else value)))
    csv = tmp_path / "nvs.csv"
    csv.write_text("key,type,encoding,value\n" + "\n".join(lines) + "\n")
    nvsgen.generate(SimpleNamespace(input=[str(csv)], output="nvs.bin", size=hex(size), version=version,
                                    outdir=str(tmp_path)))
    image = (tmp_path / "nvs.bin").read_bytes()
    assert len(image) == size
    return image


def read_value(s, ns, key, kind):
    return s.get_i32(ns, key) if kind == "i32" else s.get_blob(ns, key)


BIG = bytes(range(256)) * 30  # 7680 bytes: three chunks over three pages
GEN_ROWS = [
    "ota,namespace,,",
    "counter,data,i32,-42",
    "max,data,i32,2147483647",
    "min,data,i32,-2147483648",
    "pubkey,data,hex2bin," + "ab" * 64,
    "b64,data,base64," + base64.b64encode(b"xyz" * 20).decode(),
    "empty1,data,hex2bin,00",
    "big,file,binary,big.bin",
    "other,namespace,,",
    "counter,data,i32,7",
    "small,data,u8,200",
    "name,data,string,hello",
    "key_of_15_chars,data,i32,15",
]
GEN_EXPECT = [
    ("ota", "counter", "i32", -42),
    ("ota", "max", "i32", 2 ** 31 - 1),
    ("ota", "min", "i32", -(2 ** 31)),
    ("ota", "pubkey", "blob", b"\xab" * 64),
    ("ota", "b64", "blob", b"xyz" * 20),
    ("ota", "empty1", "blob", b"\x00"),
    ("ota", "big", "blob", BIG),
    ("other", "counter", "i32", 7),
    ("other", "key_of_15_chars", "i32", 15),
]


# ---- cross-checks with Espressif's generator


def test_reads_generator_image_then_writes_and_reads_back(tmp_path):
    image = generate(tmp_path, GEN_ROWS, 0x6000, files={"big.bin": BIG})
    fl = flash.Flash(make_flash(tmp_path / "f.bin", image))
    s = NvsStorage(fl, OFF, 0x6000)
    assert fl.ops == 0  # a clean image needs no repair
    for ns, key, kind, value in GEN_EXPECT:
        assert read_value(s, ns, key, kind) == value, key
    assert s.keys("ota") == [("counter", "i32"), ("max", "i32"), ("min", "i32"), ("pubkey", "blob"),
                             ("b64", "blob"), ("empty1", "blob"), ("big", "blob")]
    assert s.keys("other") == [("counter", "i32"), ("small", "u8"), ("name", "str"), ("key_of_15_chars", "i32")]
    assert s.namespaces() == ["ota", "other"]
    buf = bytearray(8000)
    assert s.get_blob("ota", "big", buf) == len(BIG) and buf[:len(BIG)] == BIG
    with pytest.raises(NvsError) as e:
        s.get_i32("other", "small")  # an u8 entry
    assert e.value.reason == "type_mismatch"

    # write over it: updates, a new namespace, a multi-page blob update, an erase
    s.set_i32("ota", "counter", 43)
    s.set_blob("ota", "pubkey", b"\xcd" * 100)
    s.set_blob("ota", "big", BIG[::-1] + b"tail")
    s.set_i32("fresh", "n", -1)
    s.erase_key("ota", "b64")
    s.set_blob("other", "blob", b"")
    fl.close()

    fl = flash.Flash(str(tmp_path / "f.bin"))
    s = NvsStorage(fl, OFF, 0x6000)
    assert fl.ops == 0
    assert s.get_i32("ota", "counter") == 43
    assert s.get_blob("ota", "pubkey") == b"\xcd" * 100
    assert s.get_blob("ota", "big") == BIG[::-1] + b"tail"
    assert s.get_i32("fresh", "n") == -1
    assert s.get_blob("other", "blob") == b""
    assert s.get_i32("other", "counter") == 7
    with pytest.raises(NvsNotFound):
        s.get_blob("ota", "b64")

    d = dump(fl, OFF, 0x6000)
    assert d["namespaces"] == {"ota": 1, "other": 2, "fresh": 3}
    live = {(e["namespace"], e["key"]): e["value"] for e in d["entries"]}
    assert live[("ota", "counter")] == 43 and live[("ota", "big")] == BIG[::-1] + b"tail"
    assert live[("other", "name")] == "hello" and ("ota", "b64") not in live
    assert [p["state"] for p in d["pages"]].count("UNINITIALIZED") >= 1


def test_writes_are_byte_identical_to_the_generator(tmp_path):
    # The same items written in the same order on an erased partition give exactly the bytes
    # the generator produces: page headers, state tables, entries, crcs, blob chunking.
    rnd = random.Random(1)
    items = []
    for ns in ("ota", "app", "zz"):
        for k in range(12):
            if rnd.random() < 0.5:
                items.append((ns, "k%d" % k, "i32", rnd.randint(-(2 ** 31), 2 ** 31 - 1)))
            else:
                n = rnd.choice([1, 5, 31, 32, 33, 100, 600, 2000, 4500])
                items.append((ns, "blob%d" % k, "blob", bytes(rnd.getrandbits(8) for _ in range(n))))
    rows = []
    for i, (ns, key, kind, v) in enumerate(items):
        if i == 0 or items[i - 1][0] != ns:
            rows.append("%s,namespace,," % ns)
        rows.append("%s,data,i32,%d" % (key, v) if kind == "i32" else "%s,data,hex2bin,%s" % (key, v.hex()))
    size = 0x10000
    image = generate(tmp_path, rows, size)
    path = str(tmp_path / "g.bin")
    flash.create(path, 2 * size)
    fl = flash.Flash(path)
    s = NvsStorage(fl, 0, size)
    for ns, key, kind, v in items:
        (s.set_i32 if kind == "i32" else s.set_blob)(ns, key, v)
    mine = fl.read(0, size)
    assert sum(1 for p in range(16) if image[p * 4096:p * 4096 + 4] != b"\xff" * 4) >= 4  # spans pages
    for p in range(size // 4096):
        assert mine[p * 4096:(p + 1) * 4096] == image[p * 4096:(p + 1) * 4096], "page %d" % p


def test_version1_image_reads_and_upgrades_blobs(tmp_path):
    rows = ["ota,namespace,,", "n,data,i32,5", "old,data,hex2bin," + "01" * 300]
    image = generate(tmp_path, rows, 0x3000, version=1)
    assert image[8] == 0xFF  # a v1 page
    fl = flash.Flash(make_flash(tmp_path / "f.bin", image))
    s = NvsStorage(fl, OFF, 0x3000)
    assert s.get_i32("ota", "n") == 5
    assert s.get_blob("ota", "old") == b"\x01" * 300
    assert s.keys("ota") == [("n", "i32"), ("old", "blob")]
    s.set_blob("ota", "old", b"\x02" * 10)  # written as a v2 blob, the v1 item erased
    s = NvsStorage(fl, OFF, 0x3000)
    assert s.get_blob("ota", "old") == b"\x02" * 10
    old = [e for e in dump(fl, OFF, 0x3000)["entries"] if e["key"] == "old"]
    assert len(old) == 1 and old[0].get("chunks") == 1  # one v2 blob (index + chunk), no v1 item


# ---- API


@pytest.fixture
def nvs(tmp_path):
    fl = flash.Flash(make_flash(tmp_path / "f.bin"))
    yield NvsStorage(fl, OFF, SIZE)
    fl.close()


def test_argument_errors(nvs):
    cases = [
        (lambda: nvs.set_i32("ota", "k" * 16, 1), "key_too_long"),
        (lambda: nvs.set_i32("n" * 16, "k", 1), "key_too_long"),
        (lambda: nvs.set_i32("ota", "", 1), "bad_key"),
        (lambda: nvs.set_i32("ota", b"k", 1), "bad_key"),
        (lambda: nvs.set_i32("ota", "k", 2 ** 31), "bad_value"),
        (lambda: nvs.set_i32("ota", "k", -(2 ** 31) - 1), "bad_value"),
        (lambda: nvs.set_i32("ota", "k", "1"), "bad_value"),
        (lambda: nvs.set_blob("ota", "b", bytes(3 * 4000 + 1)), "value_too_long"),
        (lambda: nvs.set_blob("ota", "b", "text"), "bad_value"),
    ]
    for call, reason in cases:
        with pytest.raises(NvsError) as e:
            call()
        assert e.value.reason == reason
    assert nvs.namespaces() == []  # nothing was written by a refused call
    nvs.set_i32("ota", "k" * 15, 1)
    nvs.set_blob("ota", "b", b"x")
    for call in (lambda: nvs.set_blob("ota", "k" * 15, b"x"), lambda: nvs.set_i32("ota", "b", 1),
                 lambda: nvs.get_i32("ota", "b"), lambda: nvs.get_blob("ota", "k" * 15)):
        with pytest.raises(NvsError) as e:
            call()
        assert e.value.reason == "type_mismatch"
    for call in (lambda: nvs.get_i32("nope", "k"), lambda: nvs.get_i32("ota", "nope"),
                 lambda: nvs.erase_key("ota", "nope"), lambda: nvs.erase_key("nope", "b")):
        with pytest.raises(NvsNotFound):
            call()
    with pytest.raises(NvsError) as e:
        nvs.get_blob("ota", "b", bytearray(0))
    assert e.value.reason == "bad_value"
    assert nvs.keys("nope") == []
    with pytest.raises(NvsError) as e:
        NvsStorage(nvs.flash, OFF, 0x2000)
    assert e.value.reason == "bad_partition"


def test_unchanged_values_are_not_rewritten(nvs):
    nvs.set_i32("ota", "n", 1)
    nvs.set_blob("ota", "b", b"abc" * 500)
    ops = nvs.flash.ops
    nvs.set_i32("ota", "n", 1)
    nvs.set_blob("ota", "b", b"abc" * 500)
    assert nvs.flash.ops == ops
    nvs.set_blob("ota", "b", b"abc" * 499 + b"abd")
    assert nvs.flash.ops > ops


def test_reclaim_keeps_a_free_page_and_every_value(nvs):
    fl = nvs.flash
    log = fl.log = []
    want = {}
    for r in range(400):
        key = "k%d" % (r % 9)
        if r % 3:
            want[key] = r * 1000 - 7
            nvs.set_i32("ota", key, want[key])
        else:
            want[key] = bytes([r & 255]) * (r * 37 % 900)
            nvs.set_blob("ota", key, want[key])
        states = [p["state"] for p in dump(fl, OFF, SIZE)["pages"]]
        assert "UNINITIALIZED" in states, r  # IDF always keeps one page free
    assert sum(1 for op in log if op[0] == "erase") >= 10  # pages were reclaimed, many times
    s = NvsStorage(fl, OFF, SIZE)
    for key, v in want.items():
        assert read_value(s, "ota", key, "i32" if isinstance(v, int) else "blob") == v


def test_full_partition_refuses_and_keeps_data(nvs):
    written = 0
    with pytest.raises(NvsError) as e:
        while True:
            nvs.set_blob("ota", "b%d" % written, bytes([written]) * 700)
            written += 1
    assert e.value.reason == "no_space"
    assert written >= 8
    s = NvsStorage(nvs.flash, OFF, SIZE)
    for k in range(written):
        assert s.get_blob("ota", "b%d" % k) == bytes([k]) * 700
    s.erase_key("ota", "b0")
    s.erase_key("ota", "b1")
    s.set_i32("ota", "n", 3)  # room again after erasing
    assert NvsStorage(nvs.flash, OFF, SIZE).get_i32("ota", "n") == 3


def test_load_errors(tmp_path):
    hdr = bytearray(b"\xff" * 32)

    def page(seq, version=0xFE):
        struct.pack_into("<IIB", hdr, 0, 0xFFFFFFFC, seq, version)
        struct.pack_into("<I", hdr, 28, binascii.crc32(bytes(hdr[4:28]), 0xFFFFFFFF))
        return bytes(hdr) + b"\xff" * (4096 - 32)

    fl = flash.Flash(make_flash(tmp_path / "a.bin", b"".join(page(i) for i in range(4))))
    with pytest.raises(NvsError) as e:
        NvsStorage(fl, OFF, SIZE)
    assert e.value.reason == "no_free_pages"  # MicroPython then erases the whole partition
    fl = flash.Flash(make_flash(tmp_path / "b.bin", page(0, version=0xFD)))
    with pytest.raises(NvsError) as e:
        NvsStorage(fl, OFF, SIZE)
    assert e.value.reason == "new_version"


def test_corrupt_pages_are_set_aside_then_reused(tmp_path):
    fl = flash.Flash(make_flash(tmp_path / "f.bin"))
    s = NvsStorage(fl, OFF, SIZE)
    s.set_i32("ota", "n", 1)
    fl.write(OFF + 3 * 4096 + 2000, b"\x00")  # stray bits in an erased page
    fl.write(OFF + 2 * 4096, b"\xfe\xff\xff\xff")  # an active page whose header crc is wrong
    states = [p["state"] for p in dump(fl, OFF, SIZE)["pages"]]
    assert states == ["ACTIVE", "UNINITIALIZED", "CORRUPT", "CORRUPT"]
    s = NvsStorage(fl, OFF, SIZE)
    for r in range(300):
        s.set_blob("ota", "b", bytes([r & 255]) * 300)
    assert NvsStorage(fl, OFF, SIZE).get_i32("ota", "n") == 1
    assert "CORRUPT" not in [p["state"] for p in dump(fl, OFF, SIZE)["pages"]]


def test_dump_shows_flash_as_it_is(tmp_path):
    path = make_flash(tmp_path / "f.bin")
    fl = flash.Flash(path)
    s = NvsStorage(fl, OFF, SIZE)
    s.set_i32("ota", "n", 1)
    s.set_blob("ota", "b", b"blob")
    log = fl.log = []
    with pytest.raises(flash.PowerCut):
        fl.cut_at = fl.ops + 2  # the new entry and its state word are written, the old one not erased
        s.set_i32("ota", "n", 2)
    fl.close()
    fl = flash.Flash(path)
    d = dump(fl, OFF, SIZE)
    assert fl.ops == 0 and len(log) == 3  # dump never writes
    assert [(e["key"], e["value"]) for e in d["entries"]] == [("n", 1), ("b", b"blob"), ("n", 2)]
    assert d["pages"][0]["state"] == "ACTIVE" and d["pages"][0]["seq"] == 0
    assert d["pages"][0]["written"] == 6 and d["pages"][0]["erased"] == 0  # ns, n, chunk (2), index, n
    assert NvsStorage(fl, OFF, SIZE).get_i32("ota", "n") == 2  # the load drops the older copy
    d = dump(fl, OFF, SIZE)
    assert [(e["key"], e["value"]) for e in d["entries"]] == [("b", b"blob"), ("n", 2)]
    assert d["pages"][0]["erased"] == 1


def test_idf_quirk_last_chunk_without_index(tmp_path):
    # The one power-cut window in which IDF itself loses a blob: the new chunk is complete, its
    # index is not written, the old chunk is on the same page (see idf_quirks in espsim.nvs).
    path = make_flash(tmp_path / "f.bin")
    fl = flash.Flash(path)
    s = NvsStorage(fl, OFF, SIZE)
    s.set_blob("ota", "j", b"old" * 10)
    base = fl.read(OFF, SIZE)
    log = fl.log = []
    s.set_blob("ota", "j", b"new" * 10)
    index_write = [k for k, op in enumerate(log) if op[0] == "write" and op[2] == 32][2]  # hdr, tail, index
    for quirks, expect in ((True, "corrupt"), (False, b"old" * 10)):
        with open(path, "r+b") as f:
            f.seek(OFF)
            f.write(base)
        cut = flash.Flash(path, cut_at=index_write)
        with pytest.raises(flash.PowerCut):
            NvsStorage(cut, OFF, SIZE).set_blob("ota", "j", b"new" * 10)
        s = NvsStorage(flash.Flash(path), OFF, SIZE, idf_quirks=quirks)
        if quirks:
            with pytest.raises(NvsError) as e:
                s.get_blob("ota", "j")
            assert e.value.reason == expect
            s.set_blob("ota", "j", b"again")  # writing the key again repairs it, as on IDF
            assert NvsStorage(flash.Flash(path), OFF, SIZE).get_blob("ota", "j") == b"again"
        else:
            assert s.get_blob("ota", "j") == expect


# ---- power-cut sweep


def update_sequence(rounds, seed=None, max_blob=4200):
    """Updates as the update library makes them (counters, a journal blob of changing size, a
    key set once), plus a second namespace with erases, enough to reclaim pages many times; or,
    with a seed, a random mix. Blob sizes go up to max_blob (4200 takes two chunks)."""
    ops = [("i32", "ota", "counter", 0), ("blob", "ota", "pubkey", bytes(range(64))), ("i32", "ota", "boot", 0)]
    sizes = [n for n in (0, 1, 31, 32, 33, 100, 250, 500, 1500, 4200, 64, 3999, 4001) if n <= max_blob]
    rnd = random.Random(seed)
    live = set()
    for r in range(rounds):
        if seed is not None:
            key = rnd.choice(["a", "b", "c", "d"])
            kind = rnd.choice(["i32", "blob", "erase"])
            if kind == "erase" and live:
                key = rnd.choice(sorted(live))
                live.discard(key)
                ops.append(("erase", "app", key, None))
            elif kind == "blob":
                live.add(key + "b")
                ops.append(("blob", "app", key + "b", rnd.randbytes(rnd.choice(sizes))))
            else:
                live.add(key)
                ops.append(("i32", "app", key, rnd.randint(-(2 ** 31), 2 ** 31 - 1)))
            continue
        ops.append(("i32", "ota", "counter", r + 1))
        ops.append(("blob", "ota", "journal", bytes([r & 255]) * sizes[r % len(sizes)]))
        if r % 3 == 0:
            ops.append(("i32", "app", "k%d" % (r % 4), -r))
        if r % 5 == 4:
            ops.append(("erase", "app", "k%d" % ((r - 4) % 4), None))
        if r % 7 == 6:
            ops.append(("blob", "ota", "pubkey", bytes(range(64))))  # unchanged: writes nothing
            ops.append(("i32", "ota", "boot", r))
    return ops


def apply_op(s, op, retry=False):
    kind, ns, key, value = op
    if kind == "i32":
        s.set_i32(ns, key, value)
    elif kind == "blob":
        s.set_blob(ns, key, value)
    else:
        try:
            s.erase_key(ns, key)
        except NvsNotFound:
            if not retry:  # the erase may have completed before the cut
                raise


def read_all(s, keys):
    out = {}
    for ns, key, kind in keys:
        try:
            out[(ns, key)] = read_value(s, ns, key, kind)
        except NvsNotFound:
            pass
        except NvsError as e:
            out[(ns, key)] = "NvsError:" + e.reason
    return out


class Sweep:
    def __init__(self, tmp_path, ops, size):
        self.ops = ops
        self.size = size
        self.keys = []
        for kind, ns, key, _ in ops:
            if kind != "erase" and (ns, key, kind) not in self.keys:
                self.keys.append((ns, key, kind))
        self.path = make_flash(tmp_path / "sweep.bin")
        # the uninterrupted run: before each operation, a snapshot and the flash op index
        self.log = []
        fl = flash.Flash(self.path, log=self.log)
        s = NvsStorage(fl, OFF, size)
        self.snaps, self.starts, self.models = [], [], [{}]
        for op in ops:
            self.snaps.append(fl.read(OFF, size))
            self.starts.append(len(self.log))
            apply_op(s, op)
            m = dict(self.models[-1])
            if op[0] == "erase":
                del m[(op[1], op[2])]
            else:
                m[(op[1], op[2])] = op[3]
            self.models.append(m)
        self.starts.append(len(self.log))
        self.final = fl.read(OFF, size)
        fl.close()
        assert read_all(NvsStorage(flash.Flash(self.path), OFF, size), self.keys) == self.models[-1]

    def flash_at(self, image, **kw):
        with open(self.path, "r+b") as f:
            f.seek(OFF)
            f.write(image)
        return flash.Flash(self.path, **kw)

    def check_replay_is_exact(self, sample):
        # An operation run by a fresh NvsStorage opened on its snapshot performs exactly the flash
        # operations of the uninterrupted run: so cutting operation k at its j-th flash operation
        # is cutting the whole sequence at flash operation starts[k] + j.
        for k, op in enumerate(self.ops):
            log = []
            fl = self.flash_at(self.snaps[k], log=log)
            s = NvsStorage(fl, OFF, self.size)
            assert fl.ops == 0
            apply_op(s, op)
            assert log == self.log[self.starts[k]:self.starts[k + 1]], k
            fl.close()
        # ... and, for a sample, cut a run from the very beginning at the global index
        for n in sample:
            k = max(i for i in range(len(self.ops)) if self.starts[i] <= n)
            fl = self.flash_at(b"\xff" * self.size, cut_at=n, cut_mode="torn")
            s = NvsStorage(fl, OFF, self.size)
            with pytest.raises(flash.PowerCut):
                for op in self.ops:
                    apply_op(s, op)
            whole = fl.read(OFF, self.size)
            fl.close()
            fl = self.flash_at(self.snaps[k], cut_at=n - self.starts[k], cut_mode="torn")
            with pytest.raises(flash.PowerCut):
                apply_op(NvsStorage(fl, OFF, self.size), self.ops[k])
            assert fl.read(OFF, self.size) == whole, n
            fl.close()

    def cut(self, k, j, mode):
        """Run operation k with power failing at its j-th flash operation; the image left."""
        fl = self.flash_at(self.snaps[k], cut_at=j, cut_mode=mode)
        s = NvsStorage(fl, OFF, self.size)
        with pytest.raises(flash.PowerCut):
            apply_op(s, self.ops[k])
        image = fl.read(OFF, self.size)
        fl.close()
        return image

    def check_state(self, got, k, where, allow_quirk=False):
        before, after = self.models[k], self.models[k + 1]
        op = self.ops[k]
        lost = 0
        for key in set(got) | set(before) | set(after):
            if key == (op[1], op[2]):
                if got.get(key) not in (before.get(key), after.get(key)):
                    # only IDF's own quirk may break the key being set (module docstring)
                    assert allow_quirk and op[0] == "blob" and got.get(key) == "NvsError:corrupt", \
                        (where, key, repr(got.get(key))[:60])
                    lost += 1
            else:
                assert got.get(key) == before.get(key), (where, key)
        return lost

    def run(self, continue_every, double_cut_every, double_cut_points):
        cuts = lost = continued = double = 0
        for k in range(len(self.ops)):
            for j in range(self.starts[k + 1] - self.starts[k]):
                for mode in ("before", "torn"):
                    where = (k, j, mode, self.starts[k] + j)
                    image = self.cut(k, j, mode)
                    cuts += 1
                    repaired = None
                    for quirks in (False, True):
                        fl = self.flash_at(image)
                        s = NvsStorage(fl, OFF, self.size, idf_quirks=quirks)
                        if fl.read(OFF, self.size) == repaired:
                            fl.close()
                            continue  # the same repair as without the quirk: the same state and future
                        repaired = fl.read(OFF, self.size)
                        lost += self.check_state(read_all(s, self.keys), k, where + (quirks,), quirks)
                        # carry on as the device would: redo the operation, then the next one(s)
                        apply_op(s, self.ops[k], retry=True)
                        rest = self.ops[k + 1:] if cuts % continue_every == 0 else self.ops[k + 1:k + 2]
                        for op in rest:
                            apply_op(s, op)
                        assert read_all(s, self.keys) == self.models[k + 1 + len(rest)], where
                        continued += len(rest) > 1
                        fl.close()
                    if cuts % double_cut_every == 0:
                        double += self.cut_recovery(image, k, where, double_cut_points)
        return cuts, lost, continued, double

    def cut_recovery(self, image, k, where, max_points):
        # Power fails again while the next boot repairs the image: the boot after must still
        # see the value before or after operation k (IDF quirk off: the repair's own guarantee).
        log = []
        fl = self.flash_at(image, log=log)
        NvsStorage(fl, OFF, self.size, idf_quirks=False)
        fl.close()
        n = len(log)
        points = range(n) if n <= max_points else sorted(set(range(0, n, n // max_points + 1)) | {n - 1})
        tried = 0
        for m in points:
            for mode in ("before", "torn"):
                fl = self.flash_at(image, cut_at=m, cut_mode=mode)
                with pytest.raises(flash.PowerCut):
                    NvsStorage(fl, OFF, self.size, idf_quirks=False)
                fl.close()
                s = NvsStorage(flash.Flash(self.path), OFF, self.size, idf_quirks=False)
                self.check_state(read_all(s, self.keys), k, where + ("recovery", m, mode))
                apply_op(s, self.ops[k], retry=True)
                assert read_all(s, self.keys) == self.models[k + 1], where + ("recovery", m, mode)
                s.flash.close()
                tried += 1
        return tried


SWEEPS = [(70, SIZE, None, 4200)]
if CAMPAIGN:
    SWEEPS = [(200, SIZE, None, 4200), (150, 0x3000, None, 1500), (250, 0x6000, None, 4200),
              (300, SIZE, 11, 1500), (300, 0x6000, 12, 4200)]


@pytest.mark.parametrize("rounds,size,seed,max_blob", SWEEPS)
def test_power_cut_at_every_flash_operation(tmp_path, rounds, size, seed, max_blob):
    sweep = Sweep(tmp_path, update_sequence(rounds, seed, max_blob), size)
    n_ops = sweep.starts[-1]
    reclaims = sum(1 for op in sweep.log if op[0] == "erase")
    assert reclaims >= 5, "the sequence must reclaim pages"
    sweep.check_replay_is_exact(random.Random(3).sample(range(n_ops), 40 if CAMPAIGN else 12))
    cuts, lost, continued, double = sweep.run(continue_every=20 if CAMPAIGN else 97,
                                              double_cut_every=3 if CAMPAIGN else 13,
                                              double_cut_points=10 ** 6 if CAMPAIGN else 4)
    assert cuts == 2 * n_ops
    print("\nnvs sweep: %d operations, %d flash operations, %d page reclaims; %d cuts (every flash "
          "operation, before and torn), %d cuts during the repair after one, %d runs to the end; "
          "IDF's own quirk broke the blob being set in %d" % (len(sweep.ops), n_ops, reclaims, cuts, double,
                                                               continued, lost))


# ---- MicroPython


MP_READ = """
import binascii
import gc
import espsim.flash as fl
import espsim.nvs as nvs
gc.collect()
m0 = gc.mem_alloc()
f = fl.Flash(%(path)r)
s = nvs.NvsStorage(f, %(off)d, %(size)d)
gc.collect()
print('mem', gc.mem_alloc() - m0, gc.mem_free())
print('ops', f.ops)
buf = bytearray(8000)
for ns, key, kind in %(keys)r:
    if kind == 'i32':
        print(repr((ns, key, s.get_i32(ns, key))))
    else:
        n = s.get_blob(ns, key, buf)
        print(repr((ns, key, n, binascii.crc32(memoryview(buf)[:n]))))
buf = None
s.set_i32('ota', 'counter', 1234)
s.set_blob('ota', 'pubkey', b'mp' * 300)
s.erase_key('ota', 'min')
for r in range(150):
    s.set_i32('ota', 'n', r)
    s.set_blob('ota', 'j', bytes([r]) * (r * 11 %% 700))
s = nvs.NvsStorage(f, %(off)d, %(size)d)
print(repr(('after', s.get_i32('ota', 'counter'), s.get_blob('ota', 'pubkey'), s.get_i32('ota', 'n'),
            s.get_blob('ota', 'j'), s.keys('ota'))))
gc.collect()
print('free', gc.mem_free())
"""


@pytest.mark.micropython
def test_micropython_reads_generator_image_and_writes(tmp_path, mp):
    image = generate(tmp_path, GEN_ROWS, 0x6000, files={"big.bin": BIG})
    path = make_flash(tmp_path / "f.bin", image)
    keys = [(ns, key, kind) for ns, key, kind, _ in GEN_EXPECT]
    out = mp(MP_READ % {"path": path, "off": OFF, "size": 0x6000, "keys": keys}, heap="64k")
    lines = out.splitlines()
    mem = lines[0].split()
    assert int(mem[1]) < 4096, "an open NvsStorage must stay small: %s" % lines[0]
    assert lines[1] == "ops 0"
    import ast

    got = [ast.literal_eval(line) for line in lines[2:2 + len(keys)]]
    assert got == [(ns, key, value) if kind == "i32" else (ns, key, len(value), binascii.crc32(value))
                   for ns, key, kind, value in GEN_EXPECT]
    after = ast.literal_eval(lines[2 + len(keys)])
    assert after[:5] == ("after", 1234, b"mp" * 300, 149, bytes([149]) * (149 * 11 % 700))
    assert sorted(after[5]) == sorted([("counter", "i32"), ("max", "i32"), ("pubkey", "blob"), ("b64", "blob"),
                                       ("empty1", "blob"), ("big", "blob"), ("n", "i32"), ("j", "blob")])
    # the same flash read by CPython; dump() (a host-side tool, so a larger heap) agrees on both
    fl = flash.Flash(path)
    s = NvsStorage(fl, OFF, 0x6000)
    assert s.get_blob("ota", "big") == BIG and s.get_i32("ota", "n") == 149
    d = dump(fl, OFF, 0x6000)
    out = mp("import espsim.flash as fl, espsim.nvs as nvs\n"
             "d = nvs.dump(fl.Flash(%r), %d, %d)\n"
             "print(repr(([p['state'] for p in d['pages']], [(e['key'], e['value']) for e in d['entries']])))"
             % (path, OFF, 0x6000), heap="512k")
    assert ast.literal_eval(out) == ([p["state"] for p in d["pages"]], [(e["key"], e["value"]) for e in d["entries"]])
    print("\nmicropython: " + lines[0] + "; " + lines[-1])


MP_CUTS = """
import binascii
import gc
import espsim.flash as fl
import espsim.nvs as nvs
BASE, WORK, OFF, SIZE = %(base)r, %(work)r, %(off)d, %(size)d
OPS = %(ops)r
KEYS = %(keys)r
buf = bytearray(4096)

def copy(src, dst):
    a = open(src, 'rb')
    b = open(dst, 'wb')
    while True:
        n = a.readinto(buf)
        if not n:
            break
        b.write(buf if n == len(buf) else buf[:n])
    a.close()
    b.close()

def apply(s, op, retry=False):
    kind, ns, key, v = op
    if kind == 'i32':
        s.set_i32(ns, key, v)
    elif kind == 'blob':
        s.set_blob(ns, key, v)
    else:
        try:
            s.erase_key(ns, key)
        except nvs.NvsNotFound:
            if not retry:
                raise

blob = bytearray(2048)

def state(s):
    # blobs as (length, crc): no allocation of their own, the heap is small
    out = {}
    for ns, key, kind in KEYS:
        try:
            if kind == 'i32':
                out[(ns, key)] = s.get_i32(ns, key)
            else:
                n = s.get_blob(ns, key, blob)
                out[(ns, key)] = (n, binascii.crc32(memoryview(blob)[:n]))
        except nvs.NvsNotFound:
            pass
        except nvs.NvsError as e:
            out[(ns, key)] = e.reason
    return out

cuts = lost = 0
f = fl.Flash(BASE)
model = state(nvs.NvsStorage(f, OFF, SIZE))
f.close()
for k in range(len(OPS)):
    op = OPS[k]
    copy(BASE, WORK)
    log = []
    f = fl.Flash(WORK, log=log)
    s = nvs.NvsStorage(f, OFF, SIZE)
    apply(s, op)
    after = state(s)
    f.close()
    for j in range(len(log)):
        for mode in ('before', 'torn'):
            gc.collect()
            copy(BASE, WORK)
            f = fl.Flash(WORK, cut_at=j, cut_mode=mode)
            try:
                apply(nvs.NvsStorage(f, OFF, SIZE), op)
                raise AssertionError('no power cut')
            except fl.PowerCut:
                pass
            f.close()
            f = fl.Flash(WORK)
            s = nvs.NvsStorage(f, OFF, SIZE)
            got = state(s)
            for key in KEYS:
                kk = (key[0], key[1])
                if kk == (op[1], op[2]):
                    if got.get(kk) not in (model.get(kk), after.get(kk)):
                        assert op[0] == 'blob' and got.get(kk) == 'corrupt', (k, j, mode)
                        lost += 1
                else:
                    assert got.get(kk) == model.get(kk), (k, j, mode, kk)
            apply(s, op, True)
            assert state(s) == after, (k, j, mode)
            f.close()
            cuts += 1
    copy(WORK, BASE)
    model = after
print('cuts', cuts, 'lost', lost)
"""


@pytest.mark.micropython
def test_micropython_power_cuts(tmp_path, mp):
    # Start from a partition close to a page reclaim (prepared here), then cut every flash
    # operation of a few updates under MicroPython, 64 KiB heap.
    base = make_flash(tmp_path / "base.bin")
    fl = flash.Flash(base)
    s = NvsStorage(fl, OFF, 0x3000)
    s.set_i32("ota", "counter", 0)
    s.set_blob("ota", "journal", b"j" * 40)
    r = 0
    while True:  # churn until the last free page is the only one left and the active page is nearly full
        pages = dump(fl, OFF, 0x3000)["pages"]
        active = [p for p in pages if p["state"] == "ACTIVE"]
        if [p["state"] for p in pages].count("UNINITIALIZED") == 1 and active and active[0]["empty"] < 16:
            break
        r += 1
        s.set_i32("ota", "counter", r)
    fl.close()
    ops = [("i32", "ota", "counter", -5), ("blob", "ota", "journal", b"J" * 300),
           ("i32", "ota", "boot", 1), ("blob", "ota", "journal", b"x" * 1200), ("erase", "ota", "boot", None),
           ("i32", "ota", "counter", 6), ("blob", "ota", "journal", b"k" * 20), ("blob", "ota", "journal", b"q" * 20)]
    keys = [("ota", "counter", "i32"), ("ota", "journal", "blob"), ("ota", "boot", "i32")]
    log = []
    fl = flash.Flash(make_flash(tmp_path / "probe.bin", fl_image(base)), log=log)
    s = NvsStorage(fl, OFF, 0x3000)
    for op in ops:
        apply_op(s, op)
    assert any(op[0] == "erase" for op in log), "the scenario must reclaim a page"
    out = mp(MP_CUTS % {"base": base, "work": str(tmp_path / "work.bin"), "off": OFF, "size": 0x3000,
                        "ops": ops, "keys": keys}, heap="64k")
    words = out.split()
    assert int(words[1]) == 2 * len(log)
    assert int(words[3]) > 0  # IDF's quirk showed up in the last update (module docstring)
    print("\nmicropython power cuts: " + out.strip())


def fl_image(path):
    with open(path, "rb") as f:
        f.seek(OFF)
        return f.read(0x3000)

"""Hostile input: the catalogues of earlier issues in one place, and property-based fuzzing
(hypothesis) of every parser and decoder that reads bytes from outside the device.

Fuzzers. Each generates examples (structured ones that get deep into the format, mutations of
valid inputs, and raw bytes) and feeds them to the device library's parser through
tests/campaign/harness.py, which runs the same code under CPython and MicroPython. Per fuzzer:
  examples   how many examples hypothesis ran (fixed seed)
  crashes    examples that raised anything but the library's own error type (OTAError for the
             device library; TableError/PartitionTableError for the host's partition-table readers);
             for HTTP also an OTAError("network") where the fake network raised nothing (the HTTP
             client turns unexpected exceptions into "network": there it would hide a parser bug)
  wrong      accepted results that contradict an independent reference (Ed25519: cryptography;
             zlib: CPython's zlib; delta: detools' applier; rdelta: the intact patch gives the
             new image)
  heap       CPython: tracemalloc peak of one example over a sample of the examples;
             MicroPython: the same sample run in one process by the device code: the most heap one
             example allocated (garbage included: an upper bound of its peak; big-integer Ed25519
             churns megabytes of short-lived objects), and whether every sample ran in a
             device-sized heap (library bytecode included) with no MemoryError. The outcomes must
             equal CPython's: "mp_disagree" counts an accept against a refusal or different
             accepted bytes; "mp_other_reason" two refusals with different reasons (benign: in a
             chain of decoders the first stage to meet the damage names it)
"""
import base64
import collections
import contextlib
import copy
import io
import json
import os
import random
import struct
import sys
import tracemalloc
import traceback
import zlib

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from ota_tool import sim  # noqa: F401 (the fake esp32/machine modules, before any ota import)
from tests.ota import manifest_cases as mc

from . import harness

KEY = mc.KEY
PUB_B64 = base64.b64encode(mc.keys.public_bytes(KEY)).decode()
harness.setup(PUB_B64)


# --- helpers for strategies


@st.composite
def mutated_bytes(draw, base, edits=4):
    """`base` with 1..edits byte edits: overwrite, insert, delete, truncate, duplicate a slice."""
    data = bytearray(base)
    for _ in range(draw(st.integers(1, edits))):
        kind = draw(st.integers(0, 5))
        at = draw(st.integers(0, len(data)))
        if kind <= 1 and at < len(data):
            data[at] = draw(st.integers(0, 255)) if kind == 0 else data[at] ^ (1 << draw(st.integers(0, 7)))
        elif kind == 2:
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif kind == 3:
            del data[at:at + draw(st.integers(1, 16))]
        elif kind == 4:
            del data[at:]
        else:
            n = draw(st.integers(1, 32))
            data[at:at] = data[at:at + n]
    return bytes(data)


INTERESTING_INTS = [0, 1, -1, 2, 3, 4, 9, 12, 15, 16, 255, 256, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 24,
                    1 << 32, 1 << 53, 10**15, 10**16 - 1, 10**16, -(1 << 63), 0x180000, 0x181000, 200000]
ints = st.one_of(st.sampled_from(INTERESTING_INTS), st.integers(-(1 << 70), 1 << 70), st.integers(-3, 300))
words = st.sampled_from(["", "1.0.0", "2.0.0", "2.0.0-rc.1", "1.2", "01.0.0", "esp32", "esp32s3", "stable", "beta",
                         "raw", "zlib", "gzip", "delta", "lzma", "firmware", "keys", "*", "GENERIC", mc.SHA,
                         mc.SHA.upper(), "zz" * 32, "a" * 300, "\u00e9", "\\", '"', "\x00", "sha256-x.bin",
                         "https://other.example/x.bin", "../x"])
scalars = st.one_of(st.none(), st.booleans(), ints, words, st.text(max_size=12),
                    st.floats(allow_nan=False, allow_infinity=False))
json_values = st.recursive(scalars, lambda c: st.one_of(st.lists(c, max_size=4),
                                                       st.dictionaries(st.one_of(words, st.text(max_size=6)), c,
                                                                       max_size=4)), max_leaves=10)


@st.composite
def mutated_doc(draw, base):
    """A copy of the dict `base` with 0..3 members (at any depth) replaced, removed or added."""
    d = copy.deepcopy(base)
    for _ in range(draw(st.integers(0, 3))):
        node = d
        for _ in range(draw(st.integers(0, 2))):  # walk down into an object or a list
            kids = [v for v in (node.values() if isinstance(node, dict) else node) if isinstance(v, (dict, list))]
            if not kids:
                break
            node = draw(st.sampled_from(kids))
        if isinstance(node, dict):
            key = draw(st.one_of(st.sampled_from(sorted(node) or ["x"]), words))
            if draw(st.integers(0, 3)) == 0:
                node.pop(key, None)
            else:
                node[key] = draw(json_values)
        elif node:
            node[draw(st.integers(0, len(node) - 1))] = draw(json_values)
        else:
            node.append(draw(json_values))
    return d


def canonical(d):
    return json.dumps(d, sort_keys=True, separators=(",", ":")).encode()


@st.composite
def serialized(draw, docs):
    """Canonical JSON mostly; sometimes whitespace, unsorted, non-ASCII, or bytes edited."""
    d = draw(docs)
    how = draw(st.integers(0, 11))
    if how <= 7:
        return canonical(d)
    if how == 8:
        return json.dumps(d).encode()
    if how == 9:
        return json.dumps(d, separators=(",", ":"), ensure_ascii=False).encode()
    return draw(mutated_bytes(canonical(d)))


def artifact(draw):
    enc = draw(st.sampled_from(["raw", "raw", "zlib", "gzip", "delta", "lzma", None]))
    a = {"url": draw(st.sampled_from(["sha256-ab.bin", "x.zlib", "https://cdn.example/a.bin", "/abs/p"])),
         "size": draw(st.sampled_from([200000, 1, 0, 1 << 24, 90000])), "sha256": mc.SHA}
    if enc is not None:
        a["encoding"] = enc
    if enc in ("zlib", "gzip", "delta") or draw(st.booleans()):
        a["wbits"] = draw(st.sampled_from([12, 9, 15, 8, 16]))
    if enc == "delta" or draw(st.integers(0, 5)) == 0:
        a["base_sha256"] = mc.SHA
    return a


def valid_artifact(draw):
    enc = draw(st.sampled_from(["raw", "raw", "zlib", "gzip", "delta"]))
    a = {"url": draw(st.sampled_from(["sha256-ab.bin", "x.zlib", "https://cdn.example/a.bin", "/abs/p"])),
         "size": draw(st.sampled_from([200000, 1, 90000, 1 << 24])), "sha256": mc.SHA, "encoding": enc}
    if enc != "raw":
        a["wbits"] = draw(st.sampled_from([12, 9, 15]))
    if enc == "delta":
        a["base_sha256"] = mc.SHA
    return a


@st.composite
def manifest_docs(draw):
    """Half valid documents (every field drawn from accepted values), half hostile: odd values,
    then 0..3 members replaced, removed or added at any depth."""
    valid = draw(st.booleans())
    d = copy.deepcopy(mc.DOC)
    d["version"] = draw(st.sampled_from(["2.0.0", "1.0.0", "0.9.9", "1.0.1-rc.1", "3.10.0"] +
                                        ([] if valid else ["2.0", "2.0.0.0", "v2.0.0", "2.0.0-"])))
    d["security_version"] = draw(st.sampled_from([3, 2, 4, 0]))
    d["chips"] = draw(st.lists(st.sampled_from(["esp32", "esp32", "esp32s3", "esp32c3"] + ([] if valid else ["esp8266"])),
                               min_size=1 if valid else 0, max_size=3))
    arts = [valid_artifact(draw) for _ in range(draw(st.integers(0, 2)))]
    arts.append({"url": "full.bin", "size": 200000, "sha256": mc.SHA})
    d["artifacts"] = arts if valid else [artifact(draw) for _ in range(draw(st.integers(0, 3)))]
    d["image"] = {"size": draw(st.sampled_from([200000, 0x24, 0x180001] + ([] if valid else [0x23]))), "sha256": mc.SHA}
    d["slot_size"] = max(d["image"]["size"], 0x24)
    for key, values in (("rollout", [{"percent": 0}, {"percent": 100, "salt": "s"}, {"percent": 50, "salt": "x"}]),
                        ("halted", [True, False]), ("expires", [1, 1 << 40]), ("board", ["GENERIC", "OTHER"]),
                        ("channel", ["stable", "beta"]),
                        ("requires", [{"micropython": "1.25.0"}, {"idf": "v5.0"}, {"micropython": "1.2.0"}])):
        if draw(st.integers(0, 3)) == 0:
            d[key] = draw(st.sampled_from(values))
    return d if valid else draw(mutated_doc(d))


def _b64key(data):
    return base64.b64encode(data).decode()


@st.composite
def key_docs(draw):
    n = draw(st.integers(0, 9))
    d = {"type": "keys", "version": draw(st.sampled_from([2, 1, 0, -1, 1 << 40])),
         "keys": [{"key": draw(st.sampled_from([PUB_B64, _b64key(bytes(32)), _b64key(bytes(range(32))), "00" * 32,
                                                "not a key", _b64key(bytes(31))]))} for i in range(n)]}
    for i, k in enumerate(d["keys"]):
        name = draw(st.sampled_from(["k%d" % i, "k%d" % i, "x", "key0", "key1", None, 5, [1], "", "n" * 40]))
        if name is not None:
            k["name"] = name
    if draw(st.booleans()):
        d["threshold"] = draw(st.sampled_from([1, 2, 0, n, n + 1, None]))
    if draw(st.booleans()):
        d["revoked"] = draw(st.one_of(st.none(), st.lists(st.sampled_from(["0123456789abcdef", "x", "0" * 17]),
                                                          max_size=3)))
    return draw(mutated_doc(d))


def signed(doc_bytes, extra_lines=b""):
    return extra_lines + mc.signed(raw=doc_bytes)


VALID_BLOB = mc.signed()


@st.composite
def sig_framing(draw):
    """Signed files with hostile framing: edited signature lines, extra or missing lines, junk."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(mutated_bytes(VALID_BLOB, 6))
    if kind == 1:
        lines = []
        for _ in range(draw(st.integers(0, 6))):
            kid = draw(st.sampled_from([mc.keys.key_id(KEY), "0123456789abcdef", "ZZZZ", "", "0" * 17]))
            sig = draw(st.one_of(st.binary(min_size=64, max_size=64).map(lambda b: base64.b64encode(b).decode()),
                                 st.text(max_size=90)))
            lines.append(("OTA-SIG-1 %s %s\n" % (kid, sig)).encode("utf-8", "replace"))
        return b"".join(lines) + canonical(mc.DOC) + b"\n"
    if kind == 2:
        return signed(canonical(mc.DOC), draw(st.binary(max_size=120)))
    return draw(st.binary(max_size=600))


# --- HTTP responses


@st.composite
def chunked_body(draw, body):
    out = []
    i = 0
    while i < len(body):
        n = draw(st.integers(1, 64))
        part = body[i:i + n]
        i += n
        size = len(part) + draw(st.sampled_from([0, 0, 0, 0, 1, -1, 100]))
        size_text = draw(st.sampled_from(["%x", "%X", "%08x", "0%x", "%x ", "%x;ext=1", "%x ;a=b", "+%x", "%x\t"])) % max(size, 0)
        out.append(size_text.encode() + b"\r\n" + part + draw(st.sampled_from([b"\r\n", b"\r\n", b"\n", b"", b"xx\r\n"])))
    if draw(st.integers(0, 5)):
        out.append(b"0\r\n" + draw(st.sampled_from([b"", b"X-T: 1\r\n", b"bad trailer\r\n", b"T: x\r\n" * 40])) + b"\r\n")
    return b"".join(out)


@st.composite
def good_http_responses(draw):
    """Well-formed responses with the variety a server or proxy may legitimately send."""
    status = draw(st.sampled_from([200, 200, 206, 301, 302, 503, 404, 204]))
    body = draw(st.binary(max_size=300)) if status != 204 else b""
    hdrs = [draw(st.sampled_from([b"Server: x", b"Date: Fri, 21 Nov 2026 12:00:00 GMT", b"Connection: close",
                                  b"Content-Type: application/octet-stream", b"X-Cache: HIT"]))
            for _ in range(draw(st.integers(0, 3)))]
    if draw(st.integers(0, 2)) == 0:
        payload = b""
        i = 0
        while i < len(body):
            n = draw(st.integers(1, 100))
            payload += b"%x%s\r\n" % (len(body[i:i + n]), draw(st.sampled_from([b"", b";x=1"]))) + body[i:i + n] + b"\r\n"
            i += n
        payload += b"0\r\n\r\n"
        hdrs.append(b"Transfer-Encoding: chunked")
    else:
        payload = body
        hdrs.append(b"Content-Length: %d" % len(body))
    if status == 206:
        a = draw(st.sampled_from([5, 1000]))
        hdrs.append(b"Content-Range: bytes %d-%d/%s" % (a, a + len(body) - 1, draw(st.sampled_from(
            [b"%d" % (a + len(body)), b"*"]))))
    if status in (301, 302):
        hdrs.append(b"Location: " + draw(st.sampled_from([b"/repo/x.json", b"other.json", b"https://cdn.example/x"])))
    if status == 503:
        hdrs.append(b"Retry-After: 30")
    if draw(st.booleans()):
        hdrs.append(b'ETag: "abc"')
    return b"HTTP/1.1 %d Reason\r\n" % status + b"".join(h + b"\r\n" for h in hdrs) + b"\r\n" + payload


@st.composite
def http_responses(draw):
    if draw(st.integers(0, 2)) == 0:
        return draw(good_http_responses())
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\r\n", b"\n"]))
    status = draw(st.sampled_from([200, 200, 200, 206, 206, 301, 302, 307, 308, 100, 204, 304, 404, 416, 429, 503]))
    line = draw(st.sampled_from([b"HTTP/1.1 %d X" % status, b"HTTP/1.0 %d" % status, b"HTTP/1.1 %d" % status,
                                 b"HTTP/1.1 %d  two  spaces" % status, b"HTTP/1.1 %d X" % status, None]))
    if line is None:
        line = draw(st.binary(max_size=24))
    body = draw(st.binary(max_size=300))
    chunked = draw(st.integers(0, 2)) == 0
    hdrs = []
    if draw(st.integers(0, 3)):
        cl = draw(st.sampled_from([len(body), len(body), len(body) + 1, max(0, len(body) - 1), 0, -1, 10**20]))
        hdrs.append(draw(st.sampled_from([b"Content-Length: %d", b"content-length:%d", b"Content-Length: %d "])) % cl)
    if chunked:
        hdrs.append(draw(st.sampled_from([b"Transfer-Encoding: chunked", b"transfer-encoding: Chunked",
                                          b"Transfer-Encoding: gzip, chunked"])))
    if status == 206 or draw(st.integers(0, 4)) == 0:
        a = draw(st.sampled_from([0, 5, 1000, 999]))
        hdrs.append(b"Content-Range: " + draw(st.sampled_from([
            b"bytes %d-%d/%d" % (a, a + len(body) - 1, a + len(body)), b"bytes %d-%d/*" % (a, a + len(body) - 1),
            b"bytes %d-%d/%d" % (a, a + len(body), a + len(body)), b"bytes */%d" % len(body), b"bytes 5-1/9",
            b"bytes -5/10", b"items 0-1/2", b"bytes 99999999999999-1/2"])))
    if draw(st.booleans()):
        hdrs.append(b"ETag: " + draw(st.sampled_from([b'"abc"', b'"other"', b"W/\"abc\"", b"\xff\xfe", b'"' + b"e" * 300])))
    if status in (301, 302, 307, 308) or draw(st.integers(0, 6)) == 0:
        hdrs.append(b"Location: " + draw(st.sampled_from([b"/repo/x.json", b"other.json", b"//cdn.example/a", b"",
                                                          b"http://h.example/x", b"https://u:p@h/x", b"https://h:99999/",
                                                          b"https://[::1/x", b"\xc3\xa9", b"https://h.example/a b"])))
    if draw(st.integers(0, 4)) == 0:
        hdrs.append(b"Retry-After: " + draw(st.sampled_from([b"1", b"-1", b"99999999999", b"Fri, 31 Dec 1999"])))
    if draw(st.integers(0, 5)) == 0:
        hdrs.append(b"Content-Encoding: " + draw(st.sampled_from([b"identity", b"gzip"])))
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        hdrs.append(draw(st.one_of(st.sampled_from([b"X-A: b", b"X-A: b", b" folded", b"NoColon", b"X-B : c",
                                                    b":empty", b"X-Long: " + b"l" * 1100]),
                                   st.binary(max_size=20))))
    order = draw(st.permutations(range(len(hdrs))))
    head = line + eol + b"".join(hdrs[i] + eol for i in order) + eol
    interim = draw(st.sampled_from([b"", b"", b"", b"HTTP/1.1 100 Continue\r\n\r\n", b"HTTP/1.1 103 Hints\r\nLink: x\r\n\r\n" * 6]))
    resp = interim + head + (draw(chunked_body(body)) if chunked else body)
    if draw(st.integers(0, 4)) == 0:
        resp = draw(mutated_bytes(resp))
    return resp


http_args = st.tuples(http_responses(), st.sampled_from([1, 2, 3, 7, 64, 4096]), st.sampled_from([1, 7, 512, 4096]),
                      st.sampled_from([0, 0, 0, 5, 1000]), st.sampled_from([0, 0, 100, 5000]),
                      st.sampled_from(["", "", "abc"]))


# --- app images


def _tiny_image(hash_appended=True):
    from esptool.bin_image import ELFSection, ESP32FirmwareImage

    from ota_tool import images

    img = ESP32FirmwareImage()
    img.entrypoint = 0x40080400
    img.flash_mode = 2
    img.flash_size_freq = 0x20
    img.append_digest = hash_appended
    img.segments = [ELFSection(b".flash.rodata", 0x3F400020, images.app_desc("1.0.0") + b"\x11" * 32, flags=0),
                    ELFSection(b".dram0.data", 0x3FFB0000, b"\x22" * 16, flags=0),
                    ELFSection(b".iram0.text", 0x40080000, b"\x33" * 40, flags=0)]
    return img.save(None)


TINY = _tiny_image()
TINY_NOHASH = _tiny_image(False)


@st.composite
def structured_image(draw):
    """Header and segment table from parts: counts, lengths and flags drawn, checksum and digest
    right or wrong."""
    import hashlib

    segs = []
    for i in range(draw(st.integers(0, 5))):
        data_len = draw(st.sampled_from([0, 4, 8, 12, 260, 3, 6, 1 << 24, 0xFFFFFFFC]))
        data = (struct.pack("<I", 0xABCD5432) if i == 0 else b"") + b"\x5a" * 300
        segs.append((draw(st.sampled_from([0x3F400020, 0x3FFB0000, 0])), data_len, data[:min(data_len, 300)]))
    count = draw(st.sampled_from([len(segs), len(segs), 0, 17, 255, len(segs) + 1]))
    chip = draw(st.sampled_from([0, 0, 9, 0xFFFF]))
    hashed = draw(st.sampled_from([0, 1, 1, 2]))
    out = bytearray(struct.pack("<BBBBIBBBBHBHH4sB", 0xE9, count, 2, 0x20, 0x40080400, 0xEE, 0, 0, 0, chip, 0, 0, 0,
                                b"\x00" * 4, hashed))
    csum = 0xEF
    for addr, n, data in segs:
        out += struct.pack("<II", addr, n) + data
        for b in data:
            csum ^= b
    pad = (15 - len(out) % 16) % 16
    out += b"\x00" * pad + bytes([csum if draw(st.booleans()) else draw(st.integers(0, 255))])
    if hashed:
        out += hashlib.sha256(out).digest() if draw(st.booleans()) else draw(st.binary(min_size=0, max_size=32))
    return bytes(out)


image_args = st.tuples(st.one_of(mutated_bytes(TINY, 5), mutated_bytes(TINY_NOHASH, 3), structured_image(),
                                 st.just(TINY), st.binary(max_size=200).map(lambda b: b"\xe9" + b)),
                       st.integers(0, 2), st.sampled_from([1, 3, 24, 36, 4096]), st.sampled_from([-1, 0, 9]))


# --- otadata


@st.composite
def otadata_bytes(draw):
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(min_size=64, max_size=64))
    out = b""
    for _ in range(2):
        seq = draw(st.sampled_from([0, 1, 2, 3, 4, 0x7FFFFFFF, 0xFFFFFFFE, 0xFFFFFFFF, 17]))
        state = draw(st.sampled_from([0, 1, 2, 3, 4, 5, 0xFFFFFFFF, 0x80000000]))
        crc = zlib.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF if draw(st.integers(0, 3)) else draw(
            st.integers(0, 0xFFFFFFFF))
        out += struct.pack("<I20sII", seq, draw(st.binary(min_size=20, max_size=20)), state, crc)
    return out


# --- delta, zlib


def _delta_material():
    from tests.ota.test_delta import FUZZ_NEW, FUZZ_OLD, FUZZ_RAW, mutated, structured

    return FUZZ_OLD, FUZZ_NEW, FUZZ_RAW, mutated, structured


FUZZ_OLD, FUZZ_NEW, FUZZ_RAW, _delta_mutated, _delta_structured = _delta_material()
raw_patches = st.one_of(st.binary(max_size=400), _delta_structured, _delta_mutated())
patch_args = st.tuples(raw_patches, st.just(FUZZ_OLD), st.sampled_from([1, 7, 600]), st.sampled_from([1, 7, 4096]))


def _zc(raw, wbits):
    c = zlib.compressobj(9, zlib.DEFLATED, wbits, 9)
    return c.compress(raw) + c.flush()


@st.composite
def delta_args(draw):
    raw = draw(raw_patches)
    wbits = draw(st.sampled_from([9, 12, 12, 15]))
    stream = _zc(raw, wbits)
    if draw(st.integers(0, 3)) == 0:
        stream = draw(mutated_bytes(stream))
    size = draw(st.sampled_from([len(FUZZ_NEW), len(FUZZ_NEW), 0, 10, 1 << 20]))
    return stream, FUZZ_OLD, size, 12, draw(st.sampled_from([1, 7, 600]))


def _rdelta_material():
    from tests.ota import test_delta_reloc as tr

    return tr.FUZZ_OLD, tr.FUZZ_NEW, tr.FUZZ_RAW, tr.raw_patches


R_OLD, R_NEW, R_RAW, _rdelta_raw = _rdelta_material()


@st.composite
def rdelta_args(draw):
    raw = draw(st.one_of(_rdelta_raw, st.just(R_RAW)))
    stream = _zc(raw, draw(st.sampled_from([9, 12, 12, 15])))
    if draw(st.integers(0, 3)) == 0:
        stream = draw(mutated_bytes(stream))
    size = draw(st.sampled_from([len(R_NEW), len(R_NEW), 0, 10, 1 << 20]))
    return stream, R_OLD, size, 12, draw(st.sampled_from([1, 7, 600]))


def _oracle_rdelta(args, out):
    # the valid patch, intact, must give the new image; other accepted streams have no reference
    import hashlib

    if args[0] == _zc(R_RAW, 12) and args[2] == len(R_NEW) and out != "A %d %s" % (
            len(R_NEW), hashlib.sha256(R_NEW).hexdigest()[:12]):
        return "the valid patch does not give the new image"
    return None


@st.composite
def inflate_args(draw):
    gzip = draw(st.booleans())
    kind = draw(st.integers(0, 3))
    if kind == 0:
        stream = draw(st.binary(max_size=300))
    else:
        data = draw(st.one_of(st.binary(max_size=2000), st.sampled_from([b"\x00" * 70000, b"ab" * 3000])))
        wbits = draw(st.sampled_from([9, 12, 15]))
        level = draw(st.integers(0, 9))
        if not level:
            data = data[:2000]  # stored blocks: the stream is as long as the data
        c = zlib.compressobj(level, zlib.DEFLATED, wbits + 16 if gzip else wbits, 9)
        stream = c.compress(data) + c.flush()
        if kind == 2:
            stream = draw(mutated_bytes(stream))
        elif kind == 3:
            stream += draw(st.binary(min_size=1, max_size=8))
    # the window the device decodes with: at most its own inflate.WBITS, as update.choose ensures
    return stream, gzip, draw(st.sampled_from([12, 12, 9])), draw(st.sampled_from([1, 5, 128])), \
        draw(st.sampled_from([1 << 16, 100, 0]))


# --- Ed25519


def _ed_material():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tests.ota.test_ed25519 import L, TORSION, encode, openssl_accepts

    keys_ = [Ed25519PrivateKey.from_private_bytes(bytes([i]) * 32) for i in range(4)]
    return keys_, [encode(t) for t in TORSION], L, openssl_accepts


ED_KEYS, TORSION_ENC, ED_L, openssl_accepts = _ed_material()


@st.composite
def ed_args(draw):
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    k = draw(st.sampled_from(ED_KEYS))
    pub = k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    msg = draw(st.binary(max_size=64))
    sig = k.sign(msg)
    kind = draw(st.integers(0, 7))
    if kind == 1:
        sig = draw(mutated_bytes(sig, 2))
    elif kind == 2:
        pub = draw(mutated_bytes(pub, 2))
    elif kind == 3:
        msg = draw(mutated_bytes(msg + b"m", 2))
    elif kind == 4:  # S + n*L: the same signature, non-canonical
        s = int.from_bytes(sig[32:], "little") + draw(st.integers(1, 15)) * ED_L
        sig = sig[:32] + (s % (1 << 256)).to_bytes(32, "little")
    elif kind == 5:
        which = draw(st.integers(0, 1))
        t = draw(st.sampled_from(TORSION_ENC))
        if which:
            pub = t
        else:
            sig = t + sig[32:]
    elif kind == 6:
        pub = draw(st.binary(min_size=32, max_size=32))
        sig = draw(st.binary(min_size=64, max_size=64))
    elif kind == 7:
        pub = draw(st.binary(max_size=40))
        sig = draw(st.binary(max_size=70))
    return pub, msg, sig


# --- partition table (host side: ota-tool inspect and the simulator read it from flash dumps)


def _table():
    from ota_tool import partitions

    return partitions.to_binary(partitions.parse_csv(sim.default_partitions_csv()))


TABLE = _table()


@st.composite
def table_bytes(draw):
    import hashlib

    kind = draw(st.integers(0, 2))
    if kind == 0:
        return draw(mutated_bytes(TABLE, 6))
    if kind == 1:
        return draw(st.binary(max_size=0xC00))
    out = b""
    for _ in range(draw(st.integers(0, 8))):
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", draw(st.integers(0, 0xFF)), draw(st.integers(0, 0xFF)),
                           draw(st.sampled_from([0x9000, 0x10000, 0, 0xFFFFF000, 0x3FF000])),
                           draw(st.sampled_from([0x1000, 0x180000, 0, 0xFFFFFFFF])),
                           draw(st.binary(max_size=16)).ljust(16, b"\x00"), draw(st.integers(0, 3)))
    if draw(st.booleans()):
        out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(out).digest()
    return out + b"\xff" * (0xC00 - len(out)) if len(out) < 0xC00 and draw(st.booleans()) else out


def parttable_host(data):
    """The two host readers of a partition table: the simulator's (bootloader, inspect) and ota_tool's."""
    from espsim import parttable

    from ota_tool import partitions

    try:
        parts = parttable.parse(data, 4 * 1024 * 1024)
        a = "A %d" % len(parts)
    except parttable.TableError:
        a = "E:table"
    try:
        b = "A %d" % len(partitions.from_binary(data, 4 * 1024 * 1024))
    except partitions.PartitionTableError:
        b = "E:table"
    return a + " / " + b


# --- app bundles (lib/ota/bundle.py)

BUNDLE_PATHS = ["main.py", "lib/x.py", "a/b/c/d.py", "../x", "a/../b", "/etc/passwd", "a//b", "a/./b", ".", "..",
                "a\\..\\b", "C:x", ".ota-app.json", "x/.ota-config.json", "ota/agent.py", "a/" * 9 + "z", "\u00e9.py",
                "a b", "a\x00b", "x" * 65, "A.PY", "a.py/", "-", "__init__.py", "lib", "lib/ota"]
path_text = st.one_of(st.sampled_from(BUNDLE_PATHS), st.text(alphabet="ab./\\-_Z0\x00 \u00e9", max_size=20),
                      st.lists(st.sampled_from(["a", "..", ".", "", "ota", ".ota-x", "b.py", "Lib"]), min_size=1,
                               max_size=10).map("/".join))


@st.composite
def bundle_docs(draw):
    files = []
    for _ in range(draw(st.integers(0, 5))):
        f = {"path": draw(path_text), "size": draw(st.sampled_from([10, 0, 1 << 20, (1 << 20) + 1])), "sha256": mc.SHA}
        if draw(st.booleans()):
            f["zsize"] = draw(st.sampled_from([5, 0, 1 << 21]))
        files.append(f)
    d = {"type": draw(st.sampled_from(["app", "app", "config", "firmware", "keys"])),
         "version": draw(st.sampled_from(["1.2.0", "1.2", "2.0.0-rc.1"])),
         "root": draw(st.sampled_from(["app", "lib", "ota", "../app", "App", "a" * 33, ""])),
         "created": 1700000000, "files": files}
    for key, values in (("channel", ["stable", "beta"]), ("wbits", [12, 9, 15, 8]),
                        ("requires", [{"firmware": ">=1.0.0,<2.0.0"}, {"firmware": "1.0.0"},
                                      {"firmware": ">=1.0.0,>=1.0.0,>=1.0.0,>=1.0.0,>=1.0.0"}, {"firmware": ">=x"}])):
        if draw(st.booleans()):
            d[key] = draw(st.sampled_from(values))
    return draw(mutated_doc(d)) if draw(st.integers(0, 2)) == 0 else d


def _oracle_bundle_path(args, out):
    # what check_path accepts must be a plain relative path inside the root: no way out of it
    if not out.startswith("A "):
        return None
    path = args[0]
    parts = path.split("/")
    if path.startswith("/") or "\\" in path or any(p in ("", ".", "..") for p in parts):
        return "accepted a path that leaves or escapes the tree: %r" % path
    if any(not all(c.isalnum() and c.isascii() or c in "._-" for c in p) for p in parts):
        return "accepted a name with characters outside A-Z a-z 0-9 . _ -: %r" % path
    return None


def _has_bundle():
    import importlib.util

    return importlib.util.find_spec("ota.bundle") is not None


# --- the fuzzers


class Fuzzer:
    def __init__(self, name, target, strategy, heap="64k", device=True, oracle=None, what=""):
        self.name = name
        self.target = target  # a harness target name, or a host function
        self.strategy = strategy
        self.heap = heap  # the device-sized heap the MicroPython sample must run in
        self.device = device  # runs under MicroPython too
        self.oracle = oracle  # oracle(args, outcome) -> None, or a description of a wrong result
        self.what = what

    def call(self, args):
        if callable(self.target):
            return self.target(*args)
        return harness.judge(self.target, args)


def _oracle_ed25519(args, out):
    want = openssl_accepts(*args)
    if (out == "T") != want:
        return "verify says %s, cryptography says %s" % (out, want)
    return None


def _oracle_inflate(args, out):
    stream, gzip, wbits, step, max_out = args
    if not out.startswith("A "):
        return None
    d = zlib.decompressobj(wbits + 16 if gzip else wbits)
    try:
        data = d.decompress(stream)
    except zlib.error as e:
        return "accepted, zlib says %s" % e
    if not d.eof or d.unused_data:
        return "accepted, zlib says incomplete or trailing data"
    import hashlib

    if out != "A %d %s" % (len(data), hashlib.sha256(data).hexdigest()[:12]):
        return "output differs from zlib's"
    return None


def _oracle_patch(args, out):
    if not out.startswith("A "):
        return None
    import hashlib

    import detools

    raw, old = args[0], args[1]
    res = io.BytesIO()
    try:
        detools.apply_patch(io.BytesIO(old), io.BytesIO(raw), res)
    except Exception as e:
        return "accepted, detools refuses: %s" % e
    data = res.getvalue()
    if out != "A %d %s" % (len(data), hashlib.sha256(data).hexdigest()[:12]):
        return "output differs from detools'"
    return None


FUZZERS = [
    Fuzzer("manifest (signed, end to end)", "manifest", serialized(manifest_docs()).map(lambda d: (signed(d),)),
           heap="80k", what="manifest.load + policy.check on validly signed hostile documents"),
    Fuzzer("signature framing", "manifest", sig_framing().map(lambda b: (b,)), heap="80k",
           what="OTA-SIG-1 lines, base64, key ids, then Ed25519 over the document"),
    Fuzzer("key list (signed)", "keys", serialized(key_docs()).map(lambda d: (signed(d),)), heap="80k",
           what="manifest.load_keys + Trust.updated"),
    Fuzzer("HTTP status line, headers, chunked", "http", http_args, heap="80k",
           what="HttpFetcher.open + body reads over a scripted connection"),
    Fuzzer("app image header and segments", "image", image_args, what="appimage.ImageCheck, streaming and in place"),
    Fuzzer("otadata", "otadata", otadata_bytes().map(lambda b: (b,)), what="otadata.entries/active/slot_state"),
    Fuzzer("partition table (host)", parttable_host, table_bytes().map(lambda b: (b,)), device=False,
           what="espsim.parttable.parse, ota_tool.partitions.from_binary"),
    Fuzzer("delta patch", "patch", patch_args, oracle=_oracle_patch, what="delta.Patch on raw patches"),
    Fuzzer("delta artifact (zlib + patch)", "delta", delta_args(), what="Inflate -> Patch as update._pipeline"),
    Fuzzer("rdelta artifact (zlib + relocation patch)", "rdelta", rdelta_args(), oracle=_oracle_rdelta, heap="72k",
           what="Inflate -> reloc.RelocPatch as update._pipeline: tables, runs, T over an Xtensa image"),
    Fuzzer("zlib / gzip stream", "inflate", inflate_args(), oracle=_oracle_inflate, what="inflate.Inflate"),
    Fuzzer("Ed25519 key and signature bytes", "ed25519", ed_args(), oracle=_oracle_ed25519, what="ed25519.verify"),
]
if _has_bundle():  # lib/ota/bundle.py (app bundles) arrived during this work
    FUZZERS += [
        Fuzzer("app bundle document (signed)", "bundle", serialized(bundle_docs()).map(lambda d: (signed(d),)),
               heap="96k", what="bundle.load: schema, roots, paths, sizes, requirements"),
        Fuzzer("app bundle file paths", "bundle_path", st.tuples(path_text, st.sampled_from(["", "app", "lib"])),
               heap="80k", oracle=_oracle_bundle_path, what="bundle.check_path: nothing may leave the app tree"),
    ]


class FuzzResult:
    def __init__(self, fz):
        self.fz = fz
        self.examples = 0
        self.crashes = collections.OrderedDict()  # signature -> (count, smallest args)
        self.wrong = collections.OrderedDict()
        self.outcomes = collections.Counter()
        self.samples = []  # (args, outcome)
        self.cpython_peak = 0
        self.mp = None  # dict from the MicroPython run

    @property
    def crash_count(self):
        return sum(n for n, _ in self.crashes.values())

    @property
    def wrong_count(self):
        return sum(n for n, _ in self.wrong.values())

    def row(self):
        r = {"fuzzer": self.fz.name, "examples": self.examples, "crashes": self.crash_count,
             "wrong": self.wrong_count, "cpython_peak": self.cpython_peak,
             "accepted": self.outcomes.get("A", 0) + self.outcomes.get("T", 0),
             "refusals": sum(n for k, n in self.outcomes.items() if k.startswith("E:")),
             "reasons": len([k for k in self.outcomes if k.startswith("E:")])}
        if self.mp:
            r.update(self.mp)
        return r


def _signature(e):
    # one crash = one exception type raised at one line
    tb = traceback.extract_tb(e.__traceback__)
    frame = tb[-1] if tb else None
    where = "%s:%d" % (os.path.basename(frame.filename), frame.lineno) if frame else "?"
    return "%s at %s" % (type(e).__name__, where)


def _size(args):
    return sum(len(a) if isinstance(a, (bytes, bytearray)) else 1 for a in args)


def fuzz(fz, examples, sample_size, seed_value=1):
    res = FuzzResult(fz)
    rng = random.Random(seed_value)
    seen = [0]

    @settings(max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @seed(seed_value)
    @given(fz.strategy)
    def body(args):
        res.examples += 1
        try:
            out = fz.call(args)
        except Exception as e:
            sig = _signature(e)
            n, smallest = res.crashes.get(sig, (0, args))
            res.crashes[sig] = (n + 1, args if _size(args) < _size(smallest) else smallest)
            return
        res.outcomes[out.split(" ")[0]] += 1  # "A", "T"/"F", or "E:<reason>"
        if fz.oracle:
            problem = fz.oracle(args, out)
            if problem:
                n, smallest = res.wrong.get(problem, (0, args))
                res.wrong[problem] = (n + 1, args if _size(args) < _size(smallest) else smallest)
        # reservoir sample of the examples, for the heap measurements and the MicroPython run
        seen[0] += 1
        if len(res.samples) < sample_size:
            res.samples.append((args, out))
        else:
            j = rng.randrange(seen[0])
            if j < sample_size:
                res.samples[j] = (args, out)

    with contextlib.redirect_stdout(io.StringIO()):
        body()
        res.cpython_peak = _cpython_peak(fz, res.samples)
    return res


def _cpython_peak(fz, samples):
    worst = 0
    tracemalloc.start()
    try:
        for args, _ in samples:
            base = tracemalloc.get_traced_memory()[0]
            tracemalloc.reset_peak()
            try:
                fz.call(args)
            except Exception:
                pass
            worst = max(worst, tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    return worst


def _encode(v):
    if isinstance(v, (bytes, bytearray)):
        return {"b": base64.b64encode(bytes(v)).decode()}
    return v


def _mp_run(path, heap):
    """The sample file under MicroPython with `heap`: (outcomes, most allocated by one, MemoryErrors)."""
    from ota_tool import micropython

    here = os.path.dirname(os.path.abspath(harness.__file__))
    mpy = micropython.compiled_tree(here, ["harness"])
    code = "import harness\nharness.run_samples(%r, %r)\n" % (path, PUB_B64)
    p = micropython.run(code=code, heap=heap, extra_path=(mpy,), timeout=3600)
    lines = p.stdout.splitlines()
    if not lines or not lines[-1].startswith("HEAP"):
        if "MemoryError" in p.stderr or "MemoryError" in p.stdout[-300:]:  # the unix port prints tracebacks to stdout
            return None, 0, 1  # out of memory outside a sample (importing the library)
        raise RuntimeError("MicroPython sample run failed (heap %s):\n%s\n%s" % (heap, p.stdout[-2000:], p.stderr[-2000:]))
    outs = [ln.split(" ", 1)[1] for ln in lines[:-1] if not ln.endswith(" MEMORY")]
    _, alloc, oom = lines[-1].split()
    return outs, int(alloc), int(oom)


def _smallest_heap(path, hi_kib, step=2):
    """The smallest heap (KiB, `step` resolution) in which every sample runs without MemoryError."""
    lo = 8
    while hi_kib - lo > step:
        mid = (lo + hi_kib) // 2
        if _mp_run(path, "%dk" % mid)[2] == 0:
            hi_kib = mid
        else:
            lo = mid
    return hi_kib


def micropython_sample(res, workdir, bisect=False):
    """Run the sample under MicroPython: with a large heap (what one example allocates, and the
    outcomes against CPython's), then in the fuzzer's device-sized heap (MemoryErrors); with
    `bisect`, also find the smallest heap that runs every sample."""
    path = os.path.join(workdir, "samples-%d.jsonl" % id(res))
    with open(path, "w") as f:
        for args, _ in res.samples:
            f.write(json.dumps([res.fz.target, [_encode(a) for a in args]]) + "\n")
    big = _mp_run(path, "4m")
    tight = _mp_run(path, res.fz.heap)
    cp = [out for _, out in res.samples]
    disagree = []  # one interpreter accepts what the other refuses, or they accept different bytes
    reasons = []  # both refuse, for different reasons: a corrupt stream fed to a patch is found
    # by whichever stage meets the damage first, and CPython's zlib reads ahead of DeflateIO
    for i in range(len(cp)):
        mp = big[0][i] if i < len(big[0]) else "MISSING"
        if mp != cp[i]:
            (reasons if mp.startswith("E:") and cp[i].startswith("E:") else disagree).append((i, cp[i], mp))
    crashes = sum(1 for o in big[0] + (tight[0] or []) if o.startswith("CRASH"))
    res.mp = {"mp_samples": len(cp), "mp_alloc": big[1], "mp_heap": res.fz.heap, "mp_oom": tight[2],
              "mp_disagree": len(disagree), "mp_other_reason": len(reasons), "mp_crashes": crashes,
              "mp_first_disagreement": (disagree or reasons or [None])[0]}
    if bisect:
        res.mp["mp_smallest_heap"] = "%dk" % _smallest_heap(path, int(res.fz.heap[:-1]) if not tight[2] else 4096)
    os.remove(path)
    return res.mp


# --- the catalogues of earlier issues, in one place


def catalogue_manifests():
    """tests/ota/manifest_cases.py: each hostile manifest refused with its stated reason."""
    from ota import manifest, policy
    from ota.errors import OTAError
    from ota.trust import Trust

    cases = mc.cases()
    wrong = []
    for c in cases:
        t = c["trust"]
        try:
            m = manifest.load(c["blob"], Trust.from_list(t["keys"], t["threshold"], t["revoked"]))
            policy.check(m, c["facts"])
            got = None
        except OTAError as e:
            got = e.reason
        if got != c["reason"]:
            wrong.append("%s: %s, expected %s" % (c["name"], got, c["reason"]))
    return len(cases), wrong


def _catalogue_of_patches(stage, cases, old):
    # each (name, patch, reason) of `cases` read through stage(Source, Base) must be refused so
    from ota.errors import OTAError
    from tests.ota.delta_helpers import Base, Source, read_all

    wrong = []
    for name, patch, reason in cases:
        try:
            read_all(stage(Source(patch, 3), Base(old)), limit=1 << 22)
            got = None
        except OTAError as e:
            got = e.reason
        if got != reason:
            wrong.append("%s: %s, expected %s" % (name, got, reason))
    return len(cases), wrong


def catalogue_patches():
    """tests/ota/test_delta.py HOSTILE: each hostile delta patch refused with its reason."""
    from ota.delta import Patch
    from tests.ota.test_delta import HOSTILE, OLD

    return _catalogue_of_patches(Patch, HOSTILE, OLD)


def catalogue_rdelta():
    """tests/ota/test_delta_reloc.py HOSTILE: each hostile relocation patch refused with its reason."""
    from ota.reloc import RelocPatch
    from tests.ota.test_delta_reloc import HOSTILE, OLD

    return _catalogue_of_patches(RelocPatch, HOSTILE, OLD)


def catalogue_streams():
    """Hostile zlib streams (tests/ota/test_inflate.py): bomb, truncation, corruption, trailing
    bytes, foreign headers, a window larger than the device's."""
    from ota.errors import OTAError
    from ota.inflate import WBITS, Inflate
    from tests.ota.delta_helpers import Source, read_all

    text = b"".join(b"line %d of a log that repeats itself\n" % (i % 97) for i in range(3000))
    good = _zc(text, WBITS)
    bad_adler = good[:-1] + bytes([good[-1] ^ 1])
    cases = [
        ("zip bomb", _zc(b"\x00" * (8 << 20), WBITS), 1 << 20, "too_long"),
        ("one byte over max_out", good, len(text) - 1, "too_long"),
        ("truncated", good[:-3], 1 << 20, "truncated"),
        ("half", good[:len(good) // 2], 1 << 20, "truncated"),
        ("bad Adler-32", bad_adler, 1 << 20, "corrupt_stream"),
        ("trailing bytes", good + b"junk", 1 << 20, "trailing_data"),
        ("second stream appended", good + _zc(b"x", WBITS), 1 << 20, "trailing_data"),
        ("window too large", _zc(text, 15), 1 << 20, "window_too_large"),
        ("header check bits", b"\x78\x00" + b"\x00" * 10, 1 << 20, "corrupt_stream"),
        ("CM is not deflate", b"\x79\x9c" + b"\x00" * 10, 1 << 20, "corrupt_stream"),
        ("preset dictionary", b"\x48\x2c" + b"\x00" * 10, 1 << 20, "corrupt_stream"),
        ("gzip where zlib is expected", b"\x1f\x8b\x08\x00" + b"\x00" * 10, 1 << 20, "corrupt_stream"),
        ("bad block type", b"\x48\x0d\xff\xff\xff\xff", 1 << 20, "corrupt_stream"),
        ("one byte", b"\x78", 1 << 20, "truncated"),
        ("empty", b"", 1 << 20, "truncated"),
    ]
    wrong = []
    for name, stream, max_out, reason in cases:
        try:
            read_all(Inflate(Source(stream, 100), "zlib", WBITS, max_out))
            got = None
        except OTAError as e:
            got = e.reason
        if got != reason:
            wrong.append("%s: %s, expected %s" % (name, got, reason))
    return len(cases), wrong


def catalogue_images(workdir):
    """tests/ota/test_install.py BAD: each bad image refused, on a simulated board, with nothing
    changed (otadata, the running slot, the next boot)."""
    import ota
    from tests.ota import test_install as ti
    from tests.simhelpers import new_device, otadata_bytes

    class _P:  # a tmp_path stand-in for new_device
        def __truediv__(self, name):
            return os.path.join(workdir, name)

    base = new_device(_P(), ti.V1, name="cat-base.bin")
    base.run(lambda: None)
    wrong = []
    for name in sorted(ti.BAD):
        make, reason = ti.BAD[name]
        dev = sim.Device(os.path.join(workdir, "cat.bin"))
        with open(base.path, "rb") as f, open(dev.path, "wb") as g:
            g.write(f.read())
        before = otadata_bytes(dev)
        caught = []

        def app(make=make, caught=caught):
            try:
                make()()
            except ota.OTAError as e:
                caught.append(e.reason)

        with contextlib.redirect_stdout(io.StringIO()):
            dev.run(app)
        if caught != [reason] or otadata_bytes(dev) != before or dev.boot_only()[0] != "ota_0":
            wrong.append("%s: %s, expected %s" % (name, caught, reason))
    return len(ti.BAD), wrong


def catalogue_http():
    """tests/ota/test_http.py: the scripted misbehaving server's scenarios (drops at every offset
    class, stalls, bad lengths and chunks, garbage heads, statuses, redirects, ranges)."""
    import tempfile

    from tests.ota import test_http as th
    from tests.ota.faulty_server import FaultyServer, make_ca, make_cert

    with tempfile.TemporaryDirectory() as d:
        ca = make_ca()
        cert = make_cert(ca)
        paths = cert.write(_Dir(d), "srv")
        ca_path = os.path.join(d, "ca.der")
        with open(ca_path, "wb") as f:
            f.write(ca.der)
        server = FaultyServer(*paths)
        try:
            cases = th.build_scenarios(server)
            cases_path = os.path.join(d, "cases.jsonl")
            th.write_cases(cases_path, cases, {"faulty": {"url": server.url, "ca": ca_path}})
            problems = th.check_results(th.run_cpython(cases_path), cases)
        finally:
            server.stop()
    return len(cases), problems


class _Dir(str):
    def __truediv__(self, name):
        return os.path.join(self, name)


CATALOGUES = {
    "manifests (tests/ota/manifest_cases.py)": catalogue_manifests,
    "delta patches (tests/ota/test_delta.py)": catalogue_patches,
    "relocation patches (tests/ota/test_delta_reloc.py)": catalogue_rdelta,
    "zlib streams (tests/ota/test_inflate.py)": catalogue_streams,
    "app images on a board (tests/ota/test_install.py)": catalogue_images,
    "HTTP responses (tests/ota/test_http.py)": catalogue_http,
}


def run_catalogues(workdir, only=None):
    out = []
    for name, fn in CATALOGUES.items():
        if only is not None and not any(o in name for o in only):
            continue
        args = (workdir,) if fn is catalogue_images else ()
        n, wrong = fn(*args)
        out.append({"catalogue": name, "cases": n, "wrong": len(wrong), "details": wrong[:5]})
    return out


def run_fuzzers(workdir, examples, sample_size, micropython=True, only=None, seed_value=1, progress=None,
                bisect=False):
    results = []
    for fz in FUZZERS:
        if only is not None and not any(o in fz.name for o in only):
            continue
        res = fuzz(fz, examples, sample_size, seed_value)
        if micropython and fz.device and res.samples:
            micropython_sample(res, workdir, bisect)
        results.append(res)
        if progress:
            progress(res)
    return results


if __name__ == "__main__":  # a quick look: python -m tests.campaign.hostile [N]
    import tempfile

    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as d:
        for r in run_fuzzers(d, n, 20, progress=lambda r: print(r.row(), list(r.crashes)[:3], list(r.wrong)[:3])):
            pass
        for c in run_catalogues(d):
            print(c)

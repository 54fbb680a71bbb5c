"""Helpers for the inflate/delta tests and bench/bench_delta.py: byte-backed stages and a base
image, a reader, and ESP32 app images whose versions differ like two builds of a program.
"""
import hashlib
import random
import struct

from esptool.bin_image import ELFSection, ESP32FirmwareImage


class Source:
    """A pipeline stage over bytes whose readinto() returns at most `step` bytes."""

    def __init__(self, data, step=4096):
        self.data = memoryview(bytes(data))
        self.pos = 0
        self.step = step
        self.calls = 0

    def readinto(self, buf):
        self.calls += 1
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


class FailingSource(Source):
    """Raises `exc` once `after` bytes have been served (a network or flash failure)."""

    def __init__(self, data, after, exc, step=4096):
        super().__init__(data, step)
        self.after = after
        self.exc = exc

    def readinto(self, buf):
        if self.pos >= self.after:
            raise self.exc
        return super().readinto(memoryview(buf)[: max(1, self.after - self.pos)])


class Base:
    """The base image for ota.delta.Patch from bytes; counts the bytes read."""

    def __init__(self, data):
        self.data = bytes(data)
        self.size = len(self.data)
        self.bytes_read = 0

    def read_at(self, offset, buf):
        assert 0 <= offset and offset + len(buf) <= self.size, (offset, len(buf), self.size)
        buf[:] = self.data[offset : offset + len(buf)]
        self.bytes_read += len(buf)


def read_all(stage, size=4096, limit=1 << 26):
    """Everything a stage yields, read `size` bytes at a time (at most `limit` bytes)."""
    out = bytearray()
    buf = bytearray(size)
    while True:
        n = stage.readinto(buf)
        assert 0 <= n <= size
        if not n:
            return bytes(out)
        out += buf[:n]
        assert len(out) <= limit, "stage yields more than %d bytes" % limit


def mutate(rng, data, edits=8):
    """`data` with random point edits, insertions, deletions and moved blocks."""
    out = bytearray(data)
    for _ in range(edits):
        kind = rng.randrange(4)
        at = rng.randrange(len(out) + 1)
        n = rng.randrange(1, 200)
        if kind == 0:
            out[at : at + n] = bytes(rng.randrange(256) for _ in range(min(n, len(out) - at)))
        elif kind == 1:
            out[at:at] = bytes(rng.randrange(256) for _ in range(n))
        elif kind == 2:
            del out[at : at + n]
        else:
            block = out[at : at + n]
            del out[at : at + n]
            to = rng.randrange(len(out) + 1)
            out[to:to] = block
    return bytes(out)


# ESP32 app images shaped like two builds of one program.
#
# A "program" is a list of functions built from a small instruction vocabulary (like compiled
# code: compressible, repetitive). Functions call each other with PC-relative CALL8-like
# instructions and load addresses from literal pools (L32R-like), so that a source change that
# grows one function shifts everything behind it: relative offsets that cross the change and
# absolute addresses behind it change, as in a real rebuild, plus the version and build time in
# the app descriptor.

_DROM = 0x3F400020
_IROM = 0x400D0020
_IRAM = 0x40080000
_DRAM = 0x3FFB0000


def _bodies(rng, vocab, nfuncs, scale, p_call, p_lit, nlits, rate):
    # function bodies: calls, literal loads and instructions from the vocabulary (Zipf-like use)
    funcs = []
    for _ in range(nfuncs):
        body = []
        for _ in range(int(rng.paretovariate(1.5) * scale)):
            r = rng.random()
            if r < p_call:
                body.append(("call", rng.randrange(nfuncs)))
            elif r < p_lit:
                body.append(("lit", rng.randrange(nlits)))
            else:
                body.append(vocab[min(int(rng.expovariate(rate)), len(vocab) - 1)])
        funcs.append(body)
    return funcs


def _program(seed, nfuncs):
    rng = random.Random(seed)
    vocab = [bytes(rng.randrange(256) for _ in range(rng.choice((2, 3, 3, 3)))) for _ in range(600)]
    funcs = _bodies(rng, vocab, nfuncs, 40, 0.06, 0.10, nfuncs, 0.02)
    words = [bytes(rng.choice(b"etaoinshrdlcumwfgypbvk_") for _ in range(rng.randrange(3, 12))) for _ in range(800)]
    strings = [b" ".join(rng.choice(words) for _ in range(rng.randrange(1, 6))) + b"\x00" for _ in range(nfuncs // 2)]
    return rng, vocab, funcs, strings


def _link(funcs, strings, base):
    # Literal pool (4 bytes per "lit") before each function, function 4-aligned.
    addr = []
    pc = base
    for body in funcs:
        nlit = sum(1 for ins in body if ins[0] == "lit")
        pc += 4 * nlit
        addr.append(pc)
        size = sum(3 if isinstance(ins, tuple) else len(ins) for ins in body)
        pc += size + (-size % 4)
    irom = bytearray()
    for body, start in zip(funcs, addr):
        lits = [ins for ins in body if isinstance(ins, tuple) and ins[0] == "lit"]
        for _, target in lits:
            irom += struct.pack("<I", addr[target])
        pc = start
        code = bytearray()
        for ins in body:
            if isinstance(ins, tuple):
                kind, target = ins
                if kind == "call":
                    off = ((addr[target] - (pc & ~3) - 4) >> 2) & 0x3FFFF
                    code += bytes([0x25 | (off & 3) << 6, off >> 2 & 0xFF, off >> 10 & 0xFF])
                else:
                    code += bytes([0x21, 0x00, 0xF0])  # l32r-ish, pool-relative
            else:
                code += ins
            pc += 3 if isinstance(ins, tuple) else len(ins)
        irom += code + b"\x00" * (-len(code) % 4)
    rodata = b"".join(strings)
    return bytes(irom), rodata


def _app_desc(version, build_time):
    def s(text, n):
        return text[: n - 1].ljust(n, b"\x00")

    return struct.pack(
        "<II8s32s32s16s16s32s32s",
        0xABCD5432,
        0,
        b"\x00" * 8,
        s(version, 32),
        s(b"micropython", 32),
        s(build_time, 16),
        s(b"Nov 21 2026", 16),
        s(b"v5.2.2", 32),
        hashlib.sha256(version + build_time).digest(),
    ) + b"\x00" * 64


def esp32_app(seed=1, nfuncs=400, version=b"1.0.0", edits=0, edit_seed=0):
    """An ESP32 app image (header, segments, checksum, SHA-256) of roughly nfuncs * 300 bytes.

    edits > 0 makes the next build: `edits` functions (chosen by edit_seed) grow by a few
    instructions or lose some, one string changes, and the version and build time change.
    """
    rng, vocab, funcs, strings = _program(seed, nfuncs)
    build_time = b"12:00:00"
    if edits:
        er = random.Random(edit_seed)
        for _ in range(edits):
            body = funcs[er.randrange(nfuncs)]
            at = er.randrange(len(body) + 1)
            if er.random() < 0.7:
                body[at:at] = [vocab[er.randrange(40)] for _ in range(er.randrange(1, 12))]
            else:
                del body[at : at + er.randrange(1, 6)]
        strings[er.randrange(len(strings))] = b"changed message %d\x00" % edit_seed
        build_time = b"13:%02d:00" % (edit_seed % 60)
    irom, rodata = _link(funcs, strings, _IROM)
    _, _, hot, hot_strings = _program(seed + 7, max(1, nfuncs // 12))
    iram, dram = _link(hot, hot_strings, _IRAM)
    img = ESP32FirmwareImage()
    img.entrypoint = _IRAM + 0x400
    img.flash_mode = 2
    img.flash_size_freq = 0x20

    def seg(name, addr, data):
        return ELFSection(name, addr, data + b"\x00" * (-len(data) % 4), flags=0)

    img.segments = [
        seg(b".flash.rodata", _DROM, _app_desc(version, build_time) + rodata),
        seg(b".dram0.data", _DRAM, dram),
        seg(b".iram0.text", _IRAM, iram),
        seg(b".flash.text", _IROM, irom),
    ]
    return img.save(None)


# ESP32 app images with real Xtensa encodings (for ota.reloc): windowed-ABI functions that start
# with ENTRY and call each other with CALL8, L32R loads from literal pools that hold pointers, and
# pointer tables in .rodata and .data, laid out as ESP-IDF links an app (literal pools of a library
# gathered before its code). A rebuild with a few edited functions moves everything behind them,
# as a real one does: that is what the relocation-aware patch is for.


def _entry_insn():
    return bytes([0x36, 0x41, 0x00])  # ENTRY a1, 32


def _call8(pc, target):
    off = (target - (pc & ~3) - 4) >> 2
    off &= 0x3FFFF
    return bytes([0x25 | (off & 3) << 6, off >> 2 & 0xFF, off >> 10 & 0xFF])


def _l32r(pc, literal, reg):
    imm = ((literal - ((pc + 3) & ~3)) >> 2) & 0xFFFF
    return bytes([0x01 | reg << 4, imm & 0xFF, imm >> 8])


def _xtensa_program(seed, nfuncs):
    rng = random.Random(seed)
    # filler instructions: 2- and 3-byte patterns whose first byte is no CALLn/L32R opcode
    vocab = []
    while len(vocab) < 300:
        ins = bytes(rng.randrange(256) for _ in range(rng.choice((2, 3, 3))))
        if ins[0] & 0x0F not in (1, 5, 6):
            vocab.append(ins)
    funcs = _bodies(rng, vocab, nfuncs, 12, 0.12, 0.22, nfuncs * 2, 0.05)  # "lit": a literal slot
    strings = [b"msg %d %s\x00" % (i, bytes(rng.choice(b"abcdefgh") for _ in range(rng.randrange(3, 20))))
               for i in range(nfuncs)]
    return rng, vocab, funcs, strings


def _xtensa_link(funcs, strings, nlits, irom, drom):
    # .rodata: descriptor, a table of function pointers, strings
    str_addr = []
    a = drom + 256 + 4 * len(funcs)
    for text in strings:
        str_addr.append(a)
        a += len(text)
    # .flash.text: the literal pool (one word per slot), then the functions, each 4-aligned
    pool = irom
    f_addr = []
    pc = pool + 4 * nlits
    for body in funcs:
        f_addr.append(pc)
        size = 3 + sum(3 if isinstance(ins, tuple) else len(ins) for ins in body)
        pc += size + (-size % 4)
    lits = b"".join(struct.pack("<I", f_addr[i // 2] if i % 2 else str_addr[i // 2]) for i in range(nlits))
    code = bytearray()
    for body, start in zip(funcs, f_addr):
        pc = start
        fn = bytearray(_entry_insn())
        pc += 3
        for ins in body:
            if isinstance(ins, tuple):
                kind, arg = ins
                ins = _call8(pc, f_addr[arg]) if kind == "call" else _l32r(pc, pool + 4 * arg, arg % 16)
            fn += ins
            pc += len(ins)
        code += fn + b"\x00" * (-len(fn) % 4)
    table = b"".join(struct.pack("<I", f) for f in f_addr)
    return lits + bytes(code), table, b"".join(strings), str_addr, f_addr


def xtensa_app(seed=1, nfuncs=300, version=b"1.0.0", edits=0, edit_seed=0, in_ram=False):
    """A real-format ESP32 app image whose code is Xtensa-like (see above); `edits` edited
    functions (and one longer string) make the next build. in_ram: code in IRAM and constants in
    DRAM instead of flash (IROM/DROM), so that esptool pads nothing: a small image (fuzzing)."""
    irom, drom, dram = (_IRAM, _DRAM + 0x10000, _DRAM) if in_ram else (_IROM, _DROM, _DRAM)
    rng, vocab, funcs, strings = _xtensa_program(seed, nfuncs)
    build_time = b"12:00:00"
    if edits:
        er = random.Random(edit_seed)
        for _ in range(edits):
            body = funcs[er.randrange(nfuncs)]
            at = er.randrange(len(body) + 1)
            body[at:at] = [vocab[er.randrange(40)] for _ in range(er.randrange(1, 12))]
        i = er.randrange(nfuncs)
        strings[i] = strings[i][:-1] + b" (changed)\x00"
        build_time = b"13:%02d:00" % (edit_seed % 60)
    text, table, rodata, str_addr, f_addr = _xtensa_link(funcs, strings, 2 * nfuncs, irom, drom)
    data = b"".join(struct.pack("<II", str_addr[i], f_addr[i]) for i in range(0, nfuncs, 7))
    img = ESP32FirmwareImage()
    img.entrypoint = f_addr[0]
    img.flash_mode = 2
    img.flash_size_freq = 0x20

    def seg(name, addr, data):
        return ELFSection(name, addr, data + b"\x00" * (-len(data) % 4), flags=0)

    desc = _app_desc(version, build_time)
    img.segments = [
        seg(b".flash.rodata", drom, desc + table + rodata),
        seg(b".dram0.data", dram, data),
        seg(b".flash.text", irom, text),
    ]
    return img.save(None)


# Under MicroPython: the library and a small runner precompiled to .mpy, as a device holds them
# (source compiled at import time would need more heap than the pipeline itself).

MP_RUNNER = '''
import gc
import os
import time
buf = bytearray(4096)  # the slot writer's block, allocated first as the update flow does
import hashlib
from binascii import hexlify
from ota.errors import OTAError
from ota.inflate import Inflate


class Src:
    def __init__(self, path, step):
        self.f = open(path, "rb")
        self.step = step

    def readinto(self, b):
        return self.f.readinto(memoryview(b)[: self.step]) or 0


class Old:
    def __init__(self, path):
        self.f = open(path, "rb")
        self.size = os.stat(path)[6]

    def read_at(self, offset, b):
        self.f.seek(offset)
        if self.f.readinto(b) != len(b):
            raise OSError(5)


def run():
    env = os.getenv
    probe = env("OTA_PROBE")  # sample the live heap (slower): the pipeline's own footprint
    gc.collect()
    free = low = gc.mem_free()
    stage = Inflate(Src(env("OTA_STREAM"), int(env("OTA_STEP"))), "zlib", 12, int(env("OTA_MAX_OUT")))
    if env("OTA_OLD"):
        # only the format's own module, as update._pipeline imports it
        if env("OTA_FORMAT") == "rdelta":
            from ota.reloc import RelocPatch as P
        else:
            from ota.delta import Patch as P
        stage = P(stage, Old(env("OTA_OLD")), int(env("OTA_TO_SIZE")))
    h = hashlib.sha256()
    total = 0
    t = time.ticks_ms()
    while True:
        n = stage.readinto(buf)
        if not n:
            break
        h.update(memoryview(buf)[:n])
        total += n
        if probe and total % 65536 == 0:
            gc.collect()
            low = min(low, gc.mem_free())
    ms = time.ticks_diff(time.ticks_ms(), t)
    if probe:
        gc.collect()
        low = min(low, gc.mem_free())
    print("ok", total, hexlify(h.digest()).decode(), free - low, ms)


try:
    run()
except OTAError as e:
    print("OTAError", e.reason, e.message)
'''


def mp_arch():
    """mpy-cross -march for the MicroPython unix port here (its native code must match)."""
    import platform

    return {"x86_64": "x64", "AMD64": "x64", "i686": "x86"}.get(platform.machine())


def compile_for_mp(dest):
    """Compile the runner into dest/ota_mp_runner.mpy; return dest. (The library itself is put on
    MICROPYPATH precompiled by ota_tool.micropython.)"""
    import os
    import shutil

    from ota_tool import micropython

    os.makedirs(dest, exist_ok=True)
    runner = os.path.join(dest, "ota_mp_runner.py")
    with open(runner, "w") as f:
        f.write(MP_RUNNER)
    compiled = micropython.compiled_tree(dest, ["ota_mp_runner"])
    os.remove(runner)
    shutil.copy(os.path.join(compiled, "ota_mp_runner.mpy"), dest)
    return dest


def run_mp(mpy_dir, stream_path, heap, old_path=None, to_size=0, max_out=1 << 24, step=100, probe=False,
           fmt="delta"):
    """Run the precompiled runner under MicroPython; return the CompletedProcess.

    Its stdout: "ok SIZE SHA256 HEAP_USED MS" or "OTAError REASON MESSAGE"."""
    from ota_tool import micropython

    env = {
        "OTA_STREAM": stream_path,
        "OTA_STEP": str(step),
        "OTA_MAX_OUT": str(max_out),
        "OTA_OLD": old_path or "",
        "OTA_TO_SIZE": str(to_size),
        "OTA_PROBE": "1" if probe else "",
        "OTA_FORMAT": fmt,
    }
    res = micropython.run(code="import ota_mp_runner", heap=heap, env=env, extra_path=(mpy_dir,))
    return res

"""ESP32 images for the simulator, the demo and the tests, built with esptool's own image classes.

`app_image()` makes a real ESP-IDF application image (header, DROM segment starting with an
esp_app_desc_t, DRAM/IRAM/IROM segments, checksum, appended SHA-256) of about the requested size.
Its contents are synthetic but shaped like code (compressible, with repeated structure), so that
compression and delta ratios measured on them mean something. A tag SIMFW{...} inside the rodata
lets the simulator give the firmware behaviour (for example a firmware whose self-test fails).
"""
import hashlib
import io
import json
import random
import struct

from esptool.bin_image import ELFSection, LoadFirmwareImage

from espsim.chips import CHIPS

APP_DESC_MAGIC = 0xABCD5432
BOOTLOADER_TAG = b"ESPSIM"
FIRMWARE_TAG = b"SIMFW"

# Where each chip maps flash (DROM, IROM) and loads RAM segments, for synthetic app images.
_LAYOUT = {
    "esp32": {"drom": 0x3F400020, "irom": 0x400D0020, "dram": 0x3FFB0000, "iram": 0x40080000},
    "esp32s2": {"drom": 0x3F000020, "irom": 0x40080020, "dram": 0x3FFB0000, "iram": 0x40020000},
    "esp32s3": {"drom": 0x3C000020, "irom": 0x42000020, "dram": 0x3FC88000, "iram": 0x40370000},
    "esp32c3": {"drom": 0x3C000020, "irom": 0x42000020, "dram": 0x3FC80000, "iram": 0x4037C000},
}


def _image_class(chip):
    import esptool.bin_image as bi

    return {"esp32": bi.ESP32FirmwareImage, "esp32s2": bi.ESP32S2FirmwareImage,
            "esp32s3": bi.ESP32S3FirmwareImage, "esp32c3": bi.ESP32C3FirmwareImage}[chip]


def app_desc(version, project="micropython", secure_version=0, idf_ver="v5.2.2",
             date="Nov 21 2026", time="12:00:00"):
    """A 256-byte esp_app_desc_t."""
    def s(text, n):
        b = text.encode()[:n - 1]
        return b + b"\x00" * (n - len(b))

    return struct.pack("<II8s32s32s16s16s32s32s", APP_DESC_MAGIC, secure_version, b"\x00" * 8,
                       s(version, 32), s(project, 32), s(time, 16), s(date, 16), s(idf_ver, 32),
                       hashlib.sha256(version.encode()).digest()) + b"\x00" * 64


def code_like(n, seed, base=None, changes=0):
    """n bytes that compress and diff like machine code. With `base` (bytes from the same
    generator), returns a variant with `changes` small localised edits, like a point release."""
    rnd = random.Random(seed)
    if base is not None:
        out = bytearray(base[:n])
        out += code_like(n - len(out), seed + 1) if len(out) < n else b""
        for _ in range(changes):
            at = rnd.randrange(0, max(1, n - 64))
            span = rnd.randrange(4, 64)
            out[at:at + span] = bytes(rnd.randrange(256) for _ in range(span))
        return bytes(out[:n])
    vocab = [bytes(rnd.randrange(256) for _ in range(rnd.choice((2, 3, 4, 4, 6, 8)))) for _ in range(3000)]
    out = bytearray()
    while len(out) < n:
        if rnd.random() < 0.25:
            out += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 12)))
        else:
            out += vocab[int(rnd.paretovariate(0.8)) % len(vocab)]
    return bytes(out[:n])


def app_image(version="1.0.0", size=256 * 1024, chip="esp32", seed=1, project="micropython",
              secure_version=0, flags=None, min_rev_full=0, base=None, changes=0, chip_id=None, idf_ver="v5.2.2",
              extra_segments=()):
    """A real ESP32 app image (micropython.bin-like) of roughly `size` bytes. `extra_segments`:
    more (load address, bytes) segments, e.g. to build images a bootloader refuses (tests)."""
    lay = _LAYOUT[chip]
    img = _image_class(chip)()
    img.entrypoint = lay["iram"] + 0x400
    img.flash_mode = 2  # DIO
    img.flash_size_freq = 0x20  # 4MB, 40MHz
    img.min_rev_full = min_rev_full
    if chip_id is not None:
        img.chip_id = chip_id  # only to build wrong-chip images for tests
    tag = FIRMWARE_TAG + json.dumps(flags or {}, sort_keys=True).encode() if flags else b""
    body = code_like(max(size - 0x3000, 0x1000), seed, base, changes)
    rodata_len = len(body) // 4
    drom = app_desc(version, project, secure_version, idf_ver=idf_ver) + tag + body[:rodata_len]
    rest = body[rodata_len:]
    dram = rest[:0x800]
    iram = rest[0x800:0x4800]
    irom = rest[0x4800:]

    def seg(name, addr, data):
        data = data + b"\x00" * (-len(data) % 4)
        return ELFSection(name, addr, data, flags=0)

    img.segments = [seg(b".flash.rodata", lay["drom"], drom), seg(b".dram0.data", lay["dram"], dram),
                    seg(b".iram0.text", lay["iram"], iram), seg(b".flash.text", lay["irom"], irom)]
    img.segments += [seg(b".extra%d" % i, addr, data) for i, (addr, data) in enumerate(extra_segments)]
    return img.save(None)


def bootloader_image(chip="esp32", config=None):
    """A stand-in 2nd-stage bootloader: a valid image that loads into the bootloader's own RAM and
    carries the simulated chip's settings (ESPSIM{...}) in its data segment."""
    img = _image_class(chip)()
    if chip == "esp32":
        iram_loader, dram, iram = 0x40078000, 0x3FFF0000, 0x40080400
    else:
        base = _LAYOUT[chip]["iram"]
        iram_loader, dram, iram = base + 0x8000, _LAYOUT[chip]["dram"] + 0x40000, base + 0x10000
    img.entrypoint = iram + 0x100
    img.flash_mode = 2
    img.flash_size_freq = 0x20
    cfg = BOOTLOADER_TAG + json.dumps(config or {}, sort_keys=True).encode()
    cfg += b"\x00" * (-len(cfg) % 4)
    img.segments = [ELFSection(b".dram0.data", dram, cfg, flags=0),
                    ELFSection(b".iram_loader.text", iram_loader, code_like(0x3000, 7), flags=0),
                    ELFSection(b".iram.text", iram, code_like(0x1000, 8), flags=0)]
    return img.save(None)


def merged_firmware(bootloader, table, app, chip="esp32"):
    """MicroPython's firmware.bin: bootloader + partition table + app, for writing at the bootloader offset."""
    base = CHIPS[chip]["bootloader_offset"]
    out = bytearray(b"\xff" * (0x10000 - base))
    out[0:len(bootloader)] = bootloader
    out[0x8000 - base:0x8000 - base + len(table)] = table
    return bytes(out) + app


def parse(data, chip="esp32"):
    """esptool's parser, the independent judge of an image: returns (image, problems list)."""
    problems = []
    try:
        img = LoadFirmwareImage(chip, io.BytesIO(data).getvalue())
    except Exception as e:  # esptool raises FatalError, struct.error, RuntimeError...
        return None, ["esptool cannot parse it: %s" % e]
    if img.checksum != img.calculate_checksum():
        problems.append("checksum 0x%02x, expected 0x%02x" % (img.checksum, img.calculate_checksum()))
    if img.append_digest and img.stored_digest != img.calc_digest:
        problems.append("appended SHA-256 does not match")
    if img.chip_id != CHIPS[chip]["chip_id"]:
        problems.append("chip_id %d is not %s" % (img.chip_id, chip))
    return img, problems


def describe(data):
    """The app descriptor fields of an app image, or None if it has none."""
    if len(data) < 0x20 + 256 or struct.unpack_from("<I", data, 0x20)[0] != APP_DESC_MAGIC:
        return None
    magic, secure_version, _, version, project, t, d, idf, elf_sha = struct.unpack_from(
        "<II8s32s32s16s16s32s32s", data, 0x20)

    def z(b):
        return b.split(b"\x00")[0].decode(errors="replace")

    return {"version": z(version), "project": z(project), "secure_version": secure_version,
            "time": z(t), "date": z(d), "idf_ver": z(idf)}

"""Flash contents shaped like a real board's, built independently of the simulator's helpers:
a bootloader WITHOUT the simulator's ESPSIM tag (as a real ESP-IDF bootloader.bin), otadata
entries packed by hand (REFERENCE §2), and whole-flash dumps merged with esptool's merge_bin."""
import binascii
import struct

from esptool.bin_image import ELFSection, ESP32FirmwareImage
from esptool.cmds import merge_bin

from ota_tool import images, partitions

FLASH_SIZE = 4 * 1024 * 1024
NEW, PENDING_VERIFY, VALID, INVALID, ABORTED = 0, 1, 2, 3, 4


def real_bootloader():
    """A valid ESP32 2nd-stage bootloader image with no simulator settings in it."""
    img = ESP32FirmwareImage()
    img.entrypoint = 0x40080500
    img.flash_mode = 2
    img.flash_size_freq = 0x20
    img.segments = [
        ELFSection(b".dram0.bss", 0x3FFF0000, b"\x50\x00\x01\x00" + b"\x00" * 0x7C, flags=0),
        ELFSection(b".iram_loader.text", 0x40078000, images.code_like(0x3000, 17), flags=0),
        ELFSection(b".iram.text", 0x40080400, images.code_like(0x1000, 18), flags=0),
    ]
    data = img.save(None)
    assert images.BOOTLOADER_TAG not in data
    return data


def otadata_entry(seq, state):
    crc = binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF
    return struct.pack("<I20sII", seq, b"\xff" * 20, state, crc)


def otadata(first=None, second=None):
    """The 0x2000-byte otadata partition; first/second: (seq, state) or None for blank."""
    out = bytearray(b"\xff" * 0x2000)
    for i, ent in enumerate((first, second)):
        if ent is not None:
            out[i * 0x1000:i * 0x1000 + 32] = otadata_entry(*ent)
    return bytes(out)


def table(csv_path):
    with open(csv_path) as f:
        parts = partitions.parse_csv(f.read())
    return parts, partitions.to_binary(parts)


def dump(csv_path, apps, ota=None, bootloader=None):
    """A 4 MiB flash dump (what `esptool read-flash 0 0x400000` returns) merged by esptool.
    apps: {partition label: image bytes}; ota: otadata bytes (default blank)."""
    parts, tbl = table(csv_path)
    by_name = {p.name: p for p in parts}
    od = next(p for p in parts if p.type == 1 and p.subtype == 0)
    regions = [(0x1000, bootloader or real_bootloader()), (0x8000, tbl), (od.offset, ota or otadata())]
    regions += [(by_name[label].offset, img) for label, img in apps.items()]
    return merge_bin(sorted(regions), "esp32", output=None, flash_mode="keep", flash_freq="keep",
                     flash_size="keep", pad_to_size="4MB")

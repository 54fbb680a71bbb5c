# The app slots, through MicroPython's esp32.Partition: which slot runs, which one is next, reading
# and hashing a slot, and the block writer. Every flash write of an update goes through write_block.
import hashlib

import esp32

from .compat import const
from .errors import OTAError

BLOCK = const(4096)
_SUBTYPE_OTA_0 = const(0x10)
_SUBTYPE_FACTORY = const(0x00)


def label(part):
    return part.info()[4]


def size(part):
    return part.info()[3]


def address(part):
    return part.info()[2]


def same(a, b):
    return a is not None and b is not None and a.info()[2] == b.info()[2]


def ota_index(part):
    """0 for ota_0, 1 for ota_1... None for factory/test."""
    st = part.info()[1]
    return st - _SUBTYPE_OTA_0 if _SUBTYPE_OTA_0 <= st < _SUBTYPE_OTA_0 + 16 else None


def running():
    return esp32.Partition(esp32.Partition.RUNNING)  # pyright: ignore[reportArgumentType] (stub types id as str)


def boot():
    """The partition the bootloader picks next from otadata, or None without otadata."""
    try:
        return esp32.Partition(esp32.Partition.BOOT)  # pyright: ignore[reportArgumentType]
    except OSError:
        return None


def next_update(run=None):
    """The slot the next update goes to (esp_ota_get_next_update_partition)."""
    run = run or running()
    try:
        target = run.get_next_update()
    except OSError:
        target = None
    if target is None or same(target, run):
        raise OTAError("no_ota_partition", "this device's partition table has no second OTA app slot: "
                       "flash a table with ota_0 and ota_1 (see partitions.csv)")
    return target


def ota_slots():
    slots = [p for p in esp32.Partition.find(esp32.Partition.TYPE_APP) if ota_index(p) is not None]
    slots.sort(key=ota_index)
    return slots


def factory():
    found = esp32.Partition.find(esp32.Partition.TYPE_APP, _SUBTYPE_FACTORY)
    return found[0] if found else None


def by_ota_index(i):
    for p in ota_slots():
        if ota_index(p) == i:
            return p
    return None


def by_label(name):
    if not name:
        return None
    try:
        return esp32.Partition(name)
    except OSError:
        return None


def chip_id(part, buf):
    """The chip an image in `part` is built for (the running image tells which chip this is)."""
    mv = memoryview(buf)[:16]
    part.readblocks(0, mv)
    if buf[0] != 0xE9:
        return None
    return buf[12] | (buf[13] << 8)


DESCRIPTOR_END = const(0xD0)  # image header + the esp_app_desc_t fields read below


def descriptor(part, buf):
    """The app descriptor (esp_app_desc_t, at 0x20 with magic 0xABCD5432) of the image in `part`:
    {"version", "project", "idf_ver", "secure_version", "elf"}, or None ("elf": the first 8 bytes of
    the app's ELF SHA-256, in hex: which build it is). `buf`: at least DESCRIPTOR_END bytes."""
    import binascii
    import struct

    mv = memoryview(buf)[:DESCRIPTOR_END]
    part.readblocks(0, mv)
    if buf[0] != 0xE9 or struct.unpack_from("<I", buf, 0x20)[0] != 0xABCD5432:
        return None

    def text(at, n):
        try:
            return bytes(buf[0x20 + at:0x20 + at + n]).split(b"\x00")[0].decode()
        except UnicodeError:
            return None  # written by something else than ESP-IDF's build: no version

    return {"version": text(0x10, 32), "project": text(0x30, 32), "idf_ver": text(0x70, 32),
            "secure_version": struct.unpack_from("<I", buf, 0x24)[0],
            "elf": binascii.hexlify(bytes(buf[0xB0:0xB8])).decode()}


def write_block(part, index, buf, n):
    """Erase and program one block; the tail of a last, partial block is left erased (0xFF)."""
    if n < BLOCK:
        for i in range(n, BLOCK):
            buf[i] = 0xFF
    try:
        part.writeblocks(index, buf)
    except OSError as e:
        raise OTAError("flash_error", "writing block %d of %s failed: %s" % (index, label(part), e))


def hash_range(part, length, buf, sha=None, check=None):
    """SHA-256 of the first `length` bytes of `part`, read block by block into `buf`.

    With `check` (an appimage.ImageCheck), the same bytes are also walked as an image."""
    sha = sha or hashlib.sha256()
    mv = memoryview(buf)
    pos = 0
    while pos < length:
        n = min(BLOCK, length - pos)
        part.readblocks(pos // BLOCK, mv[:n] if n < BLOCK else mv)
        sha.update(mv[:n] if n < BLOCK else mv)
        if check is not None:
            check.feed(mv, n)
        pos += n
    return sha


def verify_in_place(part, buf, chip=None):
    """Walk the image stored in `part` (as the bootloader would), reading it through `buf` (any
    size dividing 4096); return its length or raise OTAError."""
    from .appimage import ImageCheck

    check = ImageCheck(None, chip)
    mv = memoryview(buf)
    n = len(buf)
    total = size(part)
    pos = 0
    while not check.done and pos < total:
        part.readblocks(0, mv, pos)
        check.feed(mv, n)
        pos += n
    check.finish()
    return check.length


class Reader:
    """Random-access reads of a partition (the base image of a delta update)."""

    def __init__(self, part):
        self.part = part
        self.size = size(part)

    def read_at(self, offset, mv):
        if offset < 0 or offset + len(mv) > self.size:
            raise OTAError("bad_patch", "read of %d bytes at %d outside the base slot" % (len(mv), offset))
        self.part.readblocks(offset // BLOCK, mv, offset % BLOCK)

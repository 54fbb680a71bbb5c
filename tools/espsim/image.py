# esp_image_verify() as the simulated chip runs it (esp_image_format.c): header and chip checks,
# the segment walk, the XOR checksum after 16-byte padding, the appended SHA-256, the image length
# against the partition, and (in the bootloader only) that loaded segments do not overwrite the
# bootloader's own RAM. Reads flash sequentially through one small buffer.
import hashlib
import struct

from .chips import CHIPS

HEADER_LEN = 24
SEG_HEADER_LEN = 8
MAX_SEGMENTS = 16
SIXTEEN_MB = 0x1000000
MMU_PAGE = 0x10000
APP_DESC_MAGIC = 0xABCD5432


try:
    from functools import reduce as _reduce  # CPython: fold the checksum in C
    from operator import xor as _xor

    def _xor_fold(data, acc):
        return _reduce(_xor, data, acc)
except ImportError:  # MicroPython
    def _xor_fold(data, acc):
        for b in data:
            acc ^= b
        return acc


class ImageInvalid(Exception):
    pass


class ImageInfo:
    def __init__(self):
        self.chip_id = None
        self.segments = []  # (load_addr, data_len, flash offset of data)
        self.length = 0
        self.hash_appended = False
        self.digest = None
        self.app_desc = None


class _Reader:
    # Sequential reads through flash with SHA-256 and checksum bookkeeping.
    def __init__(self, flash, start):
        self.flash = flash
        self.pos = start
        self.sha = hashlib.sha256()
        self.buf = memoryview(bytearray(512))

    def take(self, n, checksum=None):
        # Returns the bytes for short reads (headers); for long ones folds them into the checksum.
        if checksum is None:
            data = self.flash.read(self.pos, n)
            self.sha.update(data)
            self.pos += n
            return data
        while n:
            k = min(n, 512)
            data = self.buf[:k]
            self.flash.readinto(self.pos, data)
            self.sha.update(data)
            checksum = _xor_fold(data, checksum)
            self.pos += k
            n -= k
        return checksum


def _in(addr, window):
    return window[0] <= addr < window[1]


def verify(flash, part_offset, part_size, chip="esp32", chip_rev=300, bootloader=False):
    """Verify the app image at part_offset like esp_image_verify; return ImageInfo or raise ImageInvalid."""
    spec = CHIPS[chip]
    info = ImageInfo()
    if part_size > SIXTEEN_MB:
        raise ImageInvalid("partition size 0x%x invalid, larger than 16MB" % part_size)
    if part_size < HEADER_LEN:
        raise ImageInvalid("partition too small for an image header")
    rd = _Reader(flash, part_offset)
    hdr = rd.take(HEADER_LEN)
    if hdr[0] != 0xE9:
        raise ImageInvalid("image at 0x%x has invalid magic byte 0x%02x (nothing flashed here?)" % (part_offset, hdr[0]))
    seg_count = hdr[1]
    chip_id, _min_rev, min_rev_full, max_rev_full = struct.unpack("<HBHH", hdr[12:19])
    hash_appended = hdr[23]
    info.chip_id = chip_id
    if chip_id != spec["chip_id"]:
        raise ImageInvalid("mismatch chip ID, expected %d, found %d" % (spec["chip_id"], chip_id))
    if chip_rev < min_rev_full:
        raise ImageInvalid("image needs chip revision >= v%d.%d, this chip is v%d.%d" % (
            min_rev_full // 100, min_rev_full % 100, chip_rev // 100, chip_rev % 100))
    if max_rev_full not in (0, 0xFFFF) and chip_rev > max_rev_full:
        raise ImageInvalid("image supports chip revisions up to v%d.%d only" % (max_rev_full // 100, max_rev_full % 100))
    if seg_count > MAX_SEGMENTS:
        raise ImageInvalid("segment count %d exceeds max %d" % (seg_count, MAX_SEGMENTS))
    checksum = 0xEF
    for i in range(seg_count):
        if rd.pos + SEG_HEADER_LEN - part_offset > part_size:
            raise ImageInvalid("segment %d header beyond the partition" % i)
        load_addr, data_len = struct.unpack("<II", rd.take(SEG_HEADER_LEN))
        data_off = rd.pos
        if data_len & 3 or data_len >= SIXTEEN_MB:
            raise ImageInvalid("invalid segment length 0x%x" % data_len)
        mapped = _in(load_addr, spec["irom"]) or _in(load_addr, spec["drom"])
        if mapped and (data_off % MMU_PAGE) != (load_addr % MMU_PAGE):
            raise ImageInvalid("segment %d load address 0x%08x doesn't match data 0x%08x" % (i, load_addr, data_off))
        if data_off + data_len - part_offset > part_size:
            raise ImageInvalid("segment %d data runs past the end of the partition" % i)
        if bootloader and not mapped and load_addr >= 0x10000000 and data_len:
            for lo, hi in spec["bootloader_ram"]:
                if load_addr < hi and load_addr + data_len > lo:
                    raise ImageInvalid("segment %d (0x%08x+0x%x) overlaps the bootloader's RAM" % (i, load_addr, data_len))
        if i == 0 and data_len >= 4:
            first = rd.take(4)
            checksum ^= first[0] ^ first[1] ^ first[2] ^ first[3]
            info.app_desc = struct.unpack("<I", first)[0] == APP_DESC_MAGIC
            checksum = rd.take(data_len - 4, checksum)
        else:
            checksum = rd.take(data_len, checksum)
        info.segments.append((load_addr, data_len, data_off))
    unpadded = rd.pos - part_offset
    pad = ((unpadded + 1 + 15) & ~15) - unpadded
    if unpadded + pad > part_size:
        raise ImageInvalid("image checksum beyond the partition")
    tail = rd.take(pad)
    if tail[pad - 1] != checksum:
        raise ImageInvalid("checksum failed. Calculated 0x%02x read 0x%02x" % (checksum, tail[pad - 1]))
    info.length = unpadded + pad
    if hash_appended:
        if info.length + 32 > part_size:
            raise ImageInvalid("image length %d doesn't fit in partition length %d" % (info.length + 32, part_size))
        calc = rd.sha.digest()
        stored = flash.read(part_offset + info.length, 32)
        if calc != stored:
            raise ImageInvalid("image hash failed - image is corrupt")
        info.length += 32
        info.hash_appended = True
        info.digest = stored
    return info

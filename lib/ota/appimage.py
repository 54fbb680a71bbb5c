# The ESP32 application image format (esp_app_format.h), checked while it streams past, one block
# at a time, so a bad image is refused as early as possible and nothing is held in RAM:
#   header (24 bytes): magic 0xE9, segment count, SPI settings, entry, chip_id, revisions, hash flag
#   segments: load_addr u32, data_len u32, data; the first starts with the esp_app_desc_t
#   zero padding to 15 mod 16, a checksum byte (0xEF xor every segment data byte)
#   if hash_appended: SHA-256 of everything before it
import hashlib
import struct

from .compat import collect, const, xor_fold
from .errors import OTAError

MAGIC = const(0xE9)
HEADER_LEN = const(24)
SEG_HEADER_LEN = const(8)
PROLOGUE_LEN = const(0x24)  # header + first segment header + the app descriptor's magic
MAX_SEGMENTS = const(16)
APP_DESC_OFFSET = const(0x20)
APP_DESC_MAGIC = const(0xABCD5432)
APP_DESC_LEN = const(256)  # sizeof(esp_app_desc_t)
_MAX_SEGMENT_LEN = const(0x1000000)

CHIP_NAMES = {0x0000: "ESP32", 0x0002: "ESP32-S2", 0x0005: "ESP32-C3", 0x0009: "ESP32-S3",
              0x000C: "ESP32-C2", 0x000D: "ESP32-C6", 0x0010: "ESP32-H2", 0x0012: "ESP32-P4"}

# Stages of the walk.
_HEADER = const(0)
_SEG_HEADER = const(1)
_SEG_DATA = const(2)
_PADDING = const(3)
_DIGEST = const(4)
_END = const(5)

_WRONG_FILE = ("this is not an application image. MicroPython's firmware.bin is bootloader + "
               "partition table + app merged for flashing by cable; an OTA update needs the app "
               "image alone: micropython.bin from the same build folder")


def chip_name(chip_id):
    return CHIP_NAMES.get(chip_id, "chip id %d" % chip_id)


def check_header(block, chip_id):
    """Checks on the first PROLOGUE_LEN bytes of an image, before anything is written.

    Returns the header fields (segment_count, chip_id, hash_appended)."""
    if len(block) < PROLOGUE_LEN:
        raise OTAError("truncated", "image shorter than its header")
    if block[0] != MAGIC:
        if block[0] == 0xAA and block[1] == 0x50:
            raise OTAError("not_app_image", "this is a partition table, not an app image")
        raise OTAError("bad_image", "no ESP32 image magic (0xE9) at the start: got 0x%02x" % block[0])
    seg_count = block[1]
    img_chip = block[12] | (block[13] << 8)
    if struct.unpack_from("<I", block, APP_DESC_OFFSET)[0] != APP_DESC_MAGIC:
        raise OTAError("not_app_image", _WRONG_FILE)
    if chip_id is not None and img_chip != chip_id:
        raise OTAError("wrong_chip", "image is built for %s, this device is %s" % (chip_name(img_chip), chip_name(chip_id)))
    if seg_count == 0 or seg_count > MAX_SEGMENTS:
        raise OTAError("bad_image", "segment count %d (must be 1..%d)" % (seg_count, MAX_SEGMENTS))
    if block[23] > 1:
        raise OTAError("bad_image", "hash_appended flag 0x%02x (must be 0 or 1)" % block[23])
    return seg_count, img_chip, block[23]


class ImageCheck:
    """Walks an app image fed in order, in pieces of any size; `finish()` says whether it was whole.

    Verifies: the header (via check_header), every segment header (length multiple of 4, < 16 MiB,
    inside the declared image length), the checksum byte, the appended SHA-256, that the image
    ends exactly at `length`, and (finish) that the chip's bootloader would load every segment
    where it says (ota.memmap). Holds a 24-byte scratch buffer and one SHA-256 state, nothing else.
    """

    def __init__(self, length, chip_id=None):
        # length None: the image's own structure says where it ends (checking a slot in place);
        # feed() then stops at the end and `length` becomes the image length.
        self.length = length
        self.chip_id = chip_id
        self.pos = 0  # bytes consumed so far
        self.segments = []  # (load_addr, data_len)
        self._stage = _HEADER
        self._want = PROLOGUE_LEN  # bytes left in the current stage
        self._scratch = bytearray(PROLOGUE_LEN)
        self._have = 0  # bytes gathered into _scratch
        self._seg_count = 0
        self._img_chip = None
        self._offsets = []  # where each segment's data starts in the image
        self._checksum = 0xEF
        self._hash_appended = 0
        self._sha = hashlib.sha256()  # everything before the appended digest

    def feed(self, mv, n=None):
        """Consume mv[:n]. Raises OTAError as soon as the bytes cannot be a valid image."""
        if n is None:
            n = len(mv)
        if self.length is not None and self.pos + n > self.length:
            raise OTAError("length_mismatch", "image data goes past the expected %d bytes" % self.length)
        i = 0
        while i < n:
            st = self._stage
            k = self._want if self._want < n - i else n - i
            if st == _SEG_DATA:
                self._checksum = xor_fold(mv, i, i + k, self._checksum)
                self._sha.update(mv if (i == 0 and k == len(mv)) else mv[i:i + k])
            elif st == _HEADER or st == _SEG_HEADER:
                self._scratch[self._have:self._have + k] = mv[i:i + k]
                self._have += k
                self._sha.update(mv[i:i + k])
            elif st == _PADDING:
                self._sha.update(mv[i:i + k])
                if k == self._want:  # the last padding byte is the checksum
                    got = mv[i + k - 1]
                    if got != self._checksum:
                        raise OTAError("bad_image", "image checksum 0x%02x, calculated 0x%02x" % (got, self._checksum))
            elif st == _DIGEST:
                self._scratch[self._have:self._have + k] = mv[i:i + k]
                self._have += k
            elif self.length is None:
                self.length = self.pos + i
                self.pos = self.length
                return
            else:
                raise OTAError("length_mismatch", "data continues after the end of the image at byte %d" % (self.pos + i))
            i += k
            self._want -= k
            if not self._want:
                self._advance(self.pos + i)
        self.pos += n

    def _advance(self, here):
        # The current stage is complete at absolute offset `here`: move to the next one.
        st = self._stage
        if st == _HEADER:
            # The prologue holds the header, the first segment's header and 4 bytes of its data
            # (the app descriptor's magic).
            self._seg_count, self._img_chip, self._hash_appended = check_header(self._scratch, self.chip_id)
            self._segment(HEADER_LEN, here - 4, 4)
            d = self._scratch
            self._checksum ^= d[32] ^ d[33] ^ d[34] ^ d[35]
        elif st == _SEG_HEADER:
            self._segment(0, here, 0)
        elif st == _SEG_DATA:
            self._to_segment_or_padding(here)
        elif st == _PADDING:
            if self._hash_appended:
                self._stage = _DIGEST
                self._want = 32
                self._have = 0
            else:
                self._stage = _END
        elif st == _DIGEST:
            if self._sha.digest() != bytes(self._scratch[:32]):
                raise OTAError("bad_image", "the SHA-256 appended to the image does not match it")
            self._stage = _END

    def _segment(self, at, data_start, already):
        # A segment header sits in _scratch[at:at+8]; its data starts at absolute `data_start`,
        # of which `already` bytes were consumed with the header.
        load_addr, data_len = struct.unpack_from("<II", self._scratch, at)
        index = len(self.segments)
        if data_len & 3 or data_len >= _MAX_SEGMENT_LEN or data_len < already:
            raise OTAError("bad_image", "segment %d: invalid length 0x%x" % (index, data_len))
        if self.length is not None and data_start + data_len > self.length:
            raise OTAError("bad_image", "segment %d (0x%x bytes at %d) runs past the image length %d" % (
                index, data_len, data_start, self.length))
        if not index and data_len < APP_DESC_LEN:  # esp_image_format.c verify_segment_header()
            raise OTAError("bad_image", "segment 0 (0x%x bytes) is too short for the app descriptor" % data_len)
        self.segments.append((load_addr, data_len))
        self._offsets.append(data_start)
        self._stage = _SEG_DATA
        self._want = data_len - already
        if not self._want:
            self._to_segment_or_padding(data_start + data_len)

    def _to_segment_or_padding(self, here):
        self._have = 0
        if len(self.segments) < self._seg_count:
            self._stage = _SEG_HEADER
            self._want = SEG_HEADER_LEN
        else:
            self._stage = _PADDING
            self._want = ((here + 1 + 15) & ~15) - here

    @property
    def done(self):
        return self._stage == _END

    def finish(self):
        """Raise unless exactly one whole, valid image of `length` bytes was fed."""
        if self._stage != _END:
            raise OTAError("truncated", "image ends after %d bytes, inside its %s" % (
                self.pos, ("header", "segment headers", "segment data", "checksum", "digest")[self._stage]))
        if self.length is None:
            self.length = self.pos
        if self.pos != self.length:
            raise OTAError("length_mismatch", "image is %d bytes, expected %d" % (self.pos, self.length))
        # Where the bootloader would load each segment (ota.memmap): judged once the image is whole,
        # so the table is loaded after the download, not next to it.
        collect()
        from .memmap import check_segments

        check_segments(self._img_chip, self.segments, self._offsets)

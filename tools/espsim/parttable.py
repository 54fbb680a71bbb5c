# The binary partition table at flash 0x8000, read the way esp_partition / the bootloader read it
# (esp_partition_table_verify): 32-byte entries with magic 0x50AA, an optional MD5 entry
# (magic 0xEBEB) over the entries before it, the first blank (0xFFFF) entry ends the table.
import hashlib
import struct

TABLE_OFFSET = 0x8000
TABLE_MAX_LEN = 0xC00
ENTRY_FMT = "<2sBBII16sI"
ENTRY_LEN = 32
MAGIC = b"\xaa\x50"
MD5_MAGIC = b"\xeb\xeb"

TYPE_APP = 0x00
TYPE_DATA = 0x01
SUBTYPE_FACTORY = 0x00
SUBTYPE_OTA_0 = 0x10
SUBTYPE_TEST = 0x20
SUBTYPE_DATA_OTA = 0x00
SUBTYPE_DATA_NVS = 0x02
SUBTYPE_DATA_FAT = 0x81
FLAG_ENCRYPTED = 0x01


class TableError(Exception):
    pass


class Part:
    def __init__(self, type, subtype, offset, size, label, flags):
        self.type = type
        self.subtype = subtype
        self.offset = offset
        self.size = size
        self.label = label
        self.flags = flags

    @property
    def encrypted(self):
        return bool(self.flags & FLAG_ENCRYPTED)

    def is_ota_app(self):
        return self.type == TYPE_APP and SUBTYPE_OTA_0 <= self.subtype < SUBTYPE_OTA_0 + 16

    def __repr__(self):
        return "<Part %s type=%d subtype=0x%02x 0x%x+0x%x>" % (
            self.label, self.type, self.subtype, self.offset, self.size)


def _label(raw):
    # ESP-IDF compares labels as bytes, so any bytes are a label: text if they are UTF-8, else
    # escaped (a corrupt dump must be reported, not crash the reader).
    raw = bytes(raw).split(b"\x00")[0]
    try:
        return raw.decode()
    except UnicodeError:
        return "".join(chr(c) if 32 <= c < 127 else "\\x%02x" % c for c in raw)


def parse(data, flash_size=None):
    """Partitions in `data` (the 0xC00 bytes at 0x8000). Raises TableError naming the bad entry."""
    parts = []
    md5 = hashlib.md5()
    for i in range(TABLE_MAX_LEN // ENTRY_LEN):
        raw = data[i * ENTRY_LEN:(i + 1) * ENTRY_LEN]
        if len(raw) < ENTRY_LEN:
            break
        magic = raw[:2]
        if magic == MAGIC:
            _, ptype, subtype, offset, size, label, flags = struct.unpack(ENTRY_FMT, raw)
            label = _label(label)
            if flash_size is not None and offset + size > flash_size:
                raise TableError("entry %d (%s) ends at 0x%x, beyond the 0x%x-byte flash" % (
                    i, label, offset + size, flash_size))
            parts.append(Part(ptype, subtype, offset, size, label, flags))
            md5.update(raw)
        elif magic == MD5_MAGIC:
            if bytes(raw[16:32]) != md5.digest():
                raise TableError("entry %d: MD5 of the partition table does not match" % i)
        elif magic == b"\xff\xff":
            break
        else:
            raise TableError("entry %d: bad magic 0x%02x%02x (no partition table at 0x8000?)" % (
                i, magic[1], magic[0]))
    if not parts:
        raise TableError("no partition table at 0x%x" % TABLE_OFFSET)
    return parts


def read(flash):
    return parse(flash.read(TABLE_OFFSET, TABLE_MAX_LEN), flash.size)


def find_first(parts, ptype, subtype=0xFF, label=None):
    # esp_partition_find_first: ESP_PARTITION_SUBTYPE_ANY is 0xff.
    for p in parts:
        if p.type == ptype and (subtype == 0xFF or p.subtype == subtype) and (label is None or p.label == label):
            return p
    return None


def ota_slots(parts):
    """OTA app partitions in slot order (ota_0, ota_1...), like get_ota_partition_count() walks them."""
    slots = []
    for n in range(16):
        p = find_first(parts, TYPE_APP, SUBTYPE_OTA_0 + n)
        if p is None:
            break
        slots.append(p)
    return slots


def vfs_partition(parts, flash_size, auto=True):
    """The partition MicroPython keeps its filesystem in: the table's data partition labelled
    "vfs", else (`auto`: MicroPython >= 1.26, ports/esp32 main.c boardctrl_startup) one it registers at boot
    from the end of the last partition to the end of flash (type data, subtype fat, label "vfs";
    none if the table has an "ffat" partition or no room is left). None when there is neither."""
    labels = [p.label for p in parts if p.type == TYPE_DATA]
    if "vfs" in labels:
        return find_first(parts, TYPE_DATA, label="vfs")
    if "ffat" in labels or not auto:
        return None  # a FAT filesystem (TinyUF2 layouts): not simulated; or MicroPython < 1.26
    end = max(p.offset + p.size for p in parts) if parts else 0
    if end <= 0 or flash_size <= end:
        return None
    return Part(TYPE_DATA, SUBTYPE_DATA_FAT, end, flash_size - end, "vfs", 0)

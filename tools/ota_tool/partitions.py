"""Partition tables: CSV (gen_esp32part's format) -> validated definitions -> the binary at 0x8000.

Validation errors name the CSV row: a table that would brick a board or break OTA is refused here,
before it is ever flashed.
"""
import hashlib
import struct

from espsim import parttable

TABLE_OFFSET = parttable.TABLE_OFFSET
TABLE_LEN = parttable.TABLE_MAX_LEN
APP_ALIGN = 0x10000
DATA_ALIGN = 0x1000

TYPES = {"app": 0x00, "data": 0x01}
APP_SUBTYPES = {"factory": 0x00, "test": 0x20}
APP_SUBTYPES.update({"ota_%d" % i: 0x10 + i for i in range(16)})
DATA_SUBTYPES = {"ota": 0x00, "phy": 0x01, "nvs": 0x02, "coredump": 0x03, "nvs_keys": 0x04,
                 "efuse": 0x05, "undefined": 0x06, "esphttpd": 0x80, "fat": 0x81, "spiffs": 0x82,
                 "littlefs": 0x83}
FLAGS = {"encrypted": 0x01, "readonly": 0x02}


class PartitionTableError(ValueError):
    pass


class Partition:
    def __init__(self, name, ptype, subtype, offset, size, flags=0, line=None):
        self.name = name
        self.type = ptype
        self.subtype = subtype
        self.offset = offset
        self.size = size
        self.flags = flags
        self.line = line

    @property
    def end(self):
        return self.offset + self.size

    def is_app(self):
        return self.type == TYPES["app"]

    def is_ota_slot(self):
        return self.is_app() and 0x10 <= self.subtype < 0x20

    def to_dict(self):
        return {"name": self.name, "type": self.type, "subtype": self.subtype, "offset": self.offset,
                "size": self.size, "flags": self.flags}

    def __repr__(self):
        return "Partition(%r, 0x%x, 0x%02x, 0x%x, 0x%x)" % (self.name, self.type, self.subtype, self.offset, self.size)


def _number(text, what, where):
    t = text.strip().lower()
    mult = 1
    if t.endswith("k"):
        mult, t = 1024, t[:-1]
    elif t.endswith("m"):
        mult, t = 1024 * 1024, t[:-1]
    try:
        return int(t, 0) * mult
    except ValueError:
        raise PartitionTableError("%s: %s %r is not a number (use 0x... or a K/M suffix)" % (where, what, text))


def parse_csv(text, flash_size=4 * 1024 * 1024):
    """Parse and validate CSV text; returns a list of Partition (offsets filled in)."""
    parts = []
    next_free = TABLE_OFFSET + 0x1000
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = "row %d" % lineno
        cols = [c.strip() for c in line.split(",")]
        while len(cols) < 6:
            cols.append("")
        name, ptype_s, subtype_s, offset_s, size_s, flags_s = cols[:6]
        if not name:
            raise PartitionTableError("%s: the partition needs a name" % where)
        where = "row %d (%s)" % (lineno, name)
        if len(name.encode()) > 16:
            raise PartitionTableError("%s: name longer than 16 bytes" % where)
        ptype = TYPES.get(ptype_s.lower())
        if ptype is None:
            ptype = _number(ptype_s, "type", where) if ptype_s else None
            if ptype is None or not 0 <= ptype <= 0xFE:
                raise PartitionTableError("%s: unknown type %r (app or data)" % (where, ptype_s))
        names = APP_SUBTYPES if ptype == 0 else DATA_SUBTYPES if ptype == 1 else {}
        subtype = names.get(subtype_s.lower())
        if subtype is None:
            if not subtype_s:
                raise PartitionTableError("%s: subtype missing" % where)
            subtype = _number(subtype_s, "subtype", where)
            if not 0 <= subtype <= 0xFE:
                raise PartitionTableError("%s: subtype %r out of range" % (where, subtype_s))
        align = APP_ALIGN if ptype == 0 else DATA_ALIGN
        if offset_s:
            offset = _number(offset_s, "offset", where)
        else:
            offset = (next_free + align - 1) // align * align
        if not size_s:
            raise PartitionTableError("%s: size missing" % where)
        size = _number(size_s, "size", where)
        flags = 0
        for f in (x.strip() for x in flags_s.split(":") if x.strip()):
            if f not in FLAGS:
                raise PartitionTableError("%s: unknown flag %r (encrypted, readonly)" % (where, f))
            flags |= FLAGS[f]
        part = Partition(name, ptype, subtype, offset, size, flags, lineno)
        parts.append(part)
        next_free = part.end
    validate(parts, flash_size)
    return parts


def _where(p):
    return "row %d (%s)" % (p.line, p.name) if p.line else p.name


def validate(parts, flash_size=4 * 1024 * 1024):
    """Refuse tables that cannot work: raises PartitionTableError naming the partition."""
    if not parts:
        raise PartitionTableError("the partition table is empty")
    if len(parts) > TABLE_LEN // 32 - 1:
        raise PartitionTableError("too many partitions (%d): the table holds %d" % (len(parts), TABLE_LEN // 32 - 1))
    seen = {}
    for p in parts:
        w = _where(p)
        if p.name in seen:
            raise PartitionTableError("%s: name already used by %s" % (w, _where(seen[p.name])))
        seen[p.name] = p
        align = APP_ALIGN if p.is_app() else DATA_ALIGN
        if p.offset % align:
            raise PartitionTableError("%s: offset 0x%x is not aligned to 0x%x" % (w, p.offset, align))
        if p.size <= 0:
            raise PartitionTableError("%s: size must be positive" % w)
        if p.size % DATA_ALIGN:
            raise PartitionTableError("%s: size 0x%x is not a multiple of 0x1000" % (w, p.size))
        if p.offset < TABLE_OFFSET + 0x1000:
            raise PartitionTableError("%s: offset 0x%x overlaps the bootloader or the partition table (start at 0x9000 or later)" % (w, p.offset))
        if p.end > flash_size:
            raise PartitionTableError("%s: ends at 0x%x, beyond the 0x%x-byte flash" % (w, p.end, flash_size))
        if p.type == 1 and p.subtype == DATA_SUBTYPES["ota"] and p.size != 0x2000:
            raise PartitionTableError("%s: otadata must be exactly 0x2000 bytes (two 4 KiB copies)" % w)
    ordered = sorted(parts, key=lambda p: p.offset)
    for a, b in zip(ordered, ordered[1:]):
        if b.offset < a.end:
            raise PartitionTableError("%s overlaps %s (0x%x < 0x%x)" % (_where(b), _where(a), b.offset, a.end))
    slots = [p for p in parts if p.is_ota_slot()]
    ids = sorted(p.subtype - 0x10 for p in slots)
    if ids != list(range(len(ids))):
        raise PartitionTableError("OTA slots must be ota_0, ota_1, ... without gaps (found %s)" % ", ".join("ota_%d" % i for i in ids))
    if len(set(ids)) != len(ids):
        raise PartitionTableError("an OTA slot subtype appears twice")
    otadata = [p for p in parts if p.type == 1 and p.subtype == DATA_SUBTYPES["ota"]]
    if slots and not otadata:
        raise PartitionTableError("OTA slots without an otadata partition: add 'otadata, data, ota, , 0x2000'")
    if len(otadata) > 1:
        raise PartitionTableError("more than one otadata partition")
    if otadata and len(slots) < 2:
        raise PartitionTableError("OTA needs at least two slots (ota_0 and ota_1); found %d" % len(slots))
    sizes = set(p.size for p in slots)
    if len(sizes) > 1:
        raise PartitionTableError("OTA slots of different sizes (%s): every image must fit every slot" % ", ".join(
            "%s 0x%x" % (p.name, p.size) for p in slots))
    if not any(p.is_app() for p in parts):
        raise PartitionTableError("no app partition: nothing could boot")


def to_binary(parts):
    """The 0xC00-byte binary table (entries, MD5 entry, 0xFF padding), as gen_esp32part writes it."""
    out = bytearray()
    for p in parts:
        out += struct.pack("<2sBBII16sI", b"\xaa\x50", p.type, p.subtype, p.offset, p.size,
                           p.name.encode(), p.flags)
    out += b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(bytes(out)).digest()
    out += b"\xff" * (TABLE_LEN - len(out))
    return bytes(out)


def from_binary(data, flash_size=None):
    """Parse a binary table (the chip's own reader, espsim.parttable) into Partition objects."""
    try:
        rows = parttable.parse(data, flash_size)
    except parttable.TableError as e:
        raise PartitionTableError(str(e))
    return [Partition(r.label, r.type, r.subtype, r.offset, r.size, r.flags) for r in rows]


def load_csv(path, flash_size=4 * 1024 * 1024):
    with open(path) as f:
        return parse_csv(f.read(), flash_size)


def vfs_region(parts, flash_size):
    """Where MicroPython (>= 1.26) puts its filesystem when the table has none: after the last partition."""
    end = max(p.end for p in parts)
    return end, flash_size - end


def check_filesystem(parts, micropython):
    """Refuse a table that leaves MicroPython `micropython` ("1.25"...; None: not checked) without
    a filesystem: before 1.26 the firmware makes no "vfs" partition by itself (espsim.profiles), and
    without one the board has no settings, keys or main.py."""
    if micropython is None:
        return
    from espsim import profiles

    try:
        auto = profiles.profile(micropython)["vfs_auto"]
    except (ValueError, IndexError):
        raise PartitionTableError("MicroPython %s is not supported (1.23 or later)" % micropython)
    if auto or any(p.name in ("vfs", "ffat") and not p.is_app() for p in parts):
        return
    end = max(p.offset + p.size for p in parts)
    raise PartitionTableError(
        "MicroPython %s makes no filesystem partition by itself (from 1.26 only) and this table has none: "
        "the board would have no settings, keys or main.py. Add a row such as 'vfs, data, fat, 0x%x, <size>' "
        "after the last partition" % (micropython, end))

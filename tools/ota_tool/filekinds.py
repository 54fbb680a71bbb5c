"""What kind of file the user handed a command, so that a refusal can name what it got and what it
wants ("firmware.bin is a merged firmware.bin (bootloader + partition table + app), not an app
image"), and taking the app out of a merged image (`ota-tool release firmware.bin --extract-app`).
"""
import json
import os
import struct

from .errors import ToolError

SNIFF = 64 * 1024  # enough for every signature below and a whole signed document
TABLE_MAGIC = b"\xaa\x50"
MERGED_BASE = 0x1000  # MicroPython's firmware.bin is merged for flash offset 0x1000 (ESP32)
TABLE_OFFSET = 0x8000

# What each command wants, and where to get it.
WANTED = {
    "app": ("an ESP32 app image", "use micropython.bin from the build folder (an ELF: esptool elf2image makes an "
                                  "image of it; a merged firmware.bin: add --extract-app)"),
    "manifest": ("a signed manifest", "give the <channel>.json that ota-tool release wrote (e.g. repo/stable.json)"),
    "flash": ("a whole-flash image", "read a board with esptool read-flash 0 0x400000 dump.bin, or give a simulated "
                                     "device file (ota-tool demo, ota-tool sim-port --new)"),
    "csv": ("a partition table CSV", "give a CSV in ESP-IDF's format, e.g. partitions.csv"),
    "json": ("a JSON settings file", "write the settings as a JSON object (see lib/ota/config.py)"),
}


def _is_esp_image(data):
    return len(data) >= 24 and data[0] == 0xE9 and 1 <= data[1] <= 16


def _has_table(data, at):
    return len(data) >= at + 32 and data[at:at + 2] == TABLE_MAGIC


def kind(data, total=None):
    """A short phrase naming what `data` (the start of a file, `total` bytes long) is."""
    total = len(data) if total is None else total
    if total == 0:
        return "an empty file"
    if data[:4] == b"\x7fELF":
        return "an ELF executable (a linker's output, not an image)"
    if _is_esp_image(data) and _has_table(data, TABLE_OFFSET - MERGED_BASE):
        return "a merged firmware.bin (bootloader + partition table + app, for flash offset 0x1000)"
    if len(data) > MERGED_BASE and _is_esp_image(data[MERGED_BASE:]) and (
            _has_table(data, TABLE_OFFSET) or data[:16] == b"\xff" * 16):
        return "a whole-flash image (from flash offset 0x0: a dump, or esptool merge-bin output)"
    if _is_esp_image(data):
        if data[0x20:0x24] == b"\x32\x54\xcd\xab":
            return "an ESP32 app image"
        return "an ESP image that is not an app (a bootloader?)"
    if data[:2] == TABLE_MAGIC:
        return "a binary partition table"
    if data[:16] == b"SQLite format 3\x00":
        return "an SQLite database"
    if data[:2] == b"\x1f\x8b":
        return "a gzip file"
    if data[:2] == b"PK":
        return "a zip file"
    if data[:1] == b"\x78" and (data[0] * 256 + data[1]) % 31 == 0:
        return "a zlib stream (a compressed artifact?)"
    signed = _signed_kind(data)
    if signed:
        return signed
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return "binary data"
    if any(c in text for c in "\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0e\x0f\x10\x1a\x1b\x7f"):
        return "binary data"
    head = text.lstrip()[:64]
    for marker, what in (("-----BEGIN CERTIFICATE", "a PEM certificate"), ("-----BEGIN PUBLIC KEY", "a PEM public key"),
                         ("-----BEGIN ENCRYPTED PRIVATE KEY", "a PEM private key"),
                         ("-----BEGIN PRIVATE KEY", "a PEM private key")):
        if head.startswith(marker):
            return what
    try:
        doc = json.loads(text)
        return "a JSON %s" % ("object" if isinstance(doc, dict) else "document")
    except ValueError:
        pass
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if lines and all("," in ln for ln in lines) and any(",app," in ln.replace(" ", "") or ",data," in ln.replace(" ", "")
                                                        for ln in lines):
        return "a partition table CSV"
    return "a text file"


def _signed_kind(data):
    from ota import manifest as device_manifest
    from ota.errors import OTAError

    try:
        _, doc = device_manifest.split(bytes(data))
        d = json.loads(doc)
    except (OTAError, ValueError, UnicodeError, TypeError):
        return None
    if not isinstance(d, dict):
        return None
    t = d.get("type")
    names = {"firmware": "a signed firmware manifest", "app": "a signed app bundle document",
             "config": "a signed configuration document"}
    if t in names:
        return "%s (version %s)" % (names[t], d.get("version"))
    if "keys" in d:
        return "a signed key list"
    return "a signed document"


def read_head(path):
    """(first SNIFF bytes, size) of a file; ToolError when it cannot be read."""
    try:
        with open(path, "rb") as f:
            return f.read(SNIFF), os.fstat(f.fileno()).st_size
    except OSError as e:
        from .files import os_error

        raise os_error(e, path)


def of_path(path):
    head, size = read_head(path)
    return kind(head, size)


def refuse(path, wanted, got=None):
    """ToolError: `path` is <what it is>, not <what the command wants>, with where to get that."""
    what, hint = WANTED[wanted]
    raise ToolError("%s is %s, not %s" % (path, got or of_path(path), what), hint)


def check_replaceable(path, writes, keeps=(), protect=()):
    """Before a command writes `writes` (a phrase, e.g. "a key list") to `path`: a ToolError when
    `path` is a folder, one of the files in `protect` (e.g. the signing key it was given), or an
    existing file of another kind than `keeps` (the start of a kind() phrase). Missing and empty
    files may be written."""
    if os.path.isdir(path):
        raise ToolError("%s is a folder: cannot write %s there" % (path, writes),
                        "give a file name, e.g. %s" % os.path.join(path, "keys.json"))
    for other in protect:
        try:
            same = os.path.samefile(path, other)
        except OSError:
            same = False
        if same:
            raise ToolError("%s is %s given to this command: refusing to write %s over it" % (path, protect[other], writes),
                            "give another output file, e.g. repo/keys.json")
    if not os.path.exists(path):
        return
    head, size = read_head(path)
    got = kind(head, size)
    if size and not any(got.startswith(k) for k in keeps):
        raise ToolError("%s is %s: refusing to replace it with %s" % (path, got, writes),
                        "give another output file (e.g. repo/keys.json), or move that file away first")


# --- the app inside a merged image


def image_length(data, at=0):
    """Length of the ESP image starting at data[at] (header, segments, padding and checksum, the
    appended SHA-256): the layout of esp_app_format.h. ToolError if it runs past the data."""
    if not _is_esp_image(data[at:at + 24]):
        raise ToolError("no ESP image at 0x%x" % at, "give micropython.bin itself")
    pos = at + 24
    for _ in range(data[at + 1]):
        if pos + 8 > len(data):
            raise ToolError("the image at 0x%x is cut short in its segment headers" % at, "the file is cut short: give micropython.bin from the build")
        _, n = struct.unpack_from("<II", data, pos)
        pos += 8 + n
    pos = ((pos - at) // 16 + 1) * 16 + at  # zero padding to 15 mod 16, then the checksum byte
    if data[at + 23] == 1:
        pos += 32
    if pos > len(data):
        raise ToolError("the image at 0x%x runs past the end of the file" % at, "the file is cut short: give micropython.bin from the build")
    return pos - at


def extract_app(data):
    """The app image inside a merged firmware.bin (offset 0x1000) or a whole-flash image (offset
    0x0), found with the image's own partition table: (app bytes, a sentence saying where)."""
    from . import partitions as ptable

    if _has_table(data, TABLE_OFFSET - MERGED_BASE) and _is_esp_image(data):
        base = MERGED_BASE
    elif _has_table(data, TABLE_OFFSET):
        base = 0
    else:
        raise ToolError("no partition table at 0x8000 in this file (looked for a merged firmware.bin at offset "
                        "0x1000 and a whole-flash image at 0x0)", "give micropython.bin itself")
    start = TABLE_OFFSET - base
    try:
        parts = ptable.from_binary(data[start:start + ptable.TABLE_LEN])
    except Exception as e:  # the table's own checks (MD5, overlaps) in its words
        raise ToolError("the partition table inside is not valid: %s" % e, "give micropython.bin itself")
    apps = [p for p in parts if p.is_app()]
    app_part = next((p for p in apps if p.subtype == 0x00), None) or next((p for p in apps if p.subtype == 0x10), None)
    if app_part is None:
        raise ToolError("the partition table inside has no factory or ota_0 partition to hold the app", "give micropython.bin itself")
    at = app_part.offset - base
    if at < 0 or at >= len(data) or not _is_esp_image(data[at:at + 24]):
        raise ToolError("%s (0x%x) holds no app image in this file" % (app_part.name, app_part.offset),
                        "the merged image may be cut short: give micropython.bin")
    n = image_length(data, at)
    if n > app_part.size:
        raise ToolError("the app at %s is %d bytes, more than its %d-byte partition" % (app_part.name, n, app_part.size), "the image is damaged: give micropython.bin from the build")
    where = ("the app in %s at 0x%x (from the partition table at 0x%x of an image for flash offset 0x%x): %d bytes"
             % (app_part.name, app_part.offset, TABLE_OFFSET, base, n))
    return bytes(data[at:at + n]), where

"""What is on an ESP32's flash and what the bootloader will do with it.

Works on a simulated device's flash file and on a real dump (`esptool read-flash 0 0x400000
dump.bin`). The partition table, otadata and images are read with the simulator's ESP-IDF-side
code (espsim), cross-checked with esptool's image parser; the boot decision is the simulated
bootloader run on a scratch copy, so the dump itself is never changed.
"""
import hashlib
import os
import shutil
import tempfile

from espsim import board as sim_board
from espsim import image as sim_image
from espsim import otadata as sim_otadata
from espsim import parttable
from espsim.bootloader import Brick
from espsim.flash import Flash

from . import images


def _app_info(flash, part, chip, chip_rev):
    info = {"label": part.label, "offset": part.offset, "size": part.size,
            "subtype": "factory" if part.subtype == 0 else "ota_%d" % (part.subtype - 0x10)
            if 0x10 <= part.subtype < 0x20 else "0x%02x" % part.subtype}
    head = flash.read(part.offset, 1)
    if head[0] == 0xFF:
        info["image"] = None
        info["valid"] = False
        info["problem"] = "empty (erased)"
        return info
    try:
        meta = sim_image.verify(flash, part.offset, part.size, chip, chip_rev, bootloader=True)
        info["valid"] = True
        info["length"] = meta.length
        data = flash.read(part.offset, meta.length)
        info["sha256"] = hashlib.sha256(data).hexdigest()
        info["app"] = images.describe(data)
        _, problems = images.parse(data, chip)
        info["esptool_agrees"] = not problems
        if problems:
            info["esptool_problems"] = problems
    except sim_image.ImageInvalid as e:
        info["valid"] = False
        info["problem"] = str(e)
        info["app"] = images.describe(flash.read(part.offset, 0x200))
    return info


FLASH_SIZES = {n: 1 << (20 + n) for n in range(8)}  # esp_image_flash_size_t: 0 = 1 MB .. 7 = 128 MB


def declared_size(head):
    """(the flash size a whole-flash image is made for, from where) from its first 0x9000 bytes: the
    bootloader header's flash-size field (esp_image_header_t.spi_size, high nibble of byte 3, at
    0x1000 or 0x0), else the partition table's end rounded up to a flash size; (None, None)."""
    for off in (0x1000, 0x0):
        if len(head) > off + 3 and head[off] == 0xE9 and head[off + 3] >> 4 in FLASH_SIZES:
            return FLASH_SIZES[head[off + 3] >> 4], "the bootloader header at 0x%x" % off
    end = 0
    for at in range(0x8000, min(len(head), 0x8C00) - 31, 32):
        if head[at:at + 2] != b"\xaa\x50":
            break
        end = max(end, int.from_bytes(head[at + 4:at + 8], "little") + int.from_bytes(head[at + 8:at + 12], "little"))
    for size in sorted(FLASH_SIZES.values()):
        if end and end <= size:
            return size, "the partition table's end"
    return None, None


def check_device_file(path):
    """Refuse a file that cannot be a simulated board's flash: not a whole-flash image, or shorter
    than the flash it is made for (the simulator reads and writes the whole flash in the file)."""
    from . import filekinds
    from .errors import ToolError

    head, file_size = filekinds.read_head(path)
    got = filekinds.kind(head, file_size)
    if not got.startswith("a whole-flash image"):
        filekinds.refuse(path, "flash", got)
    size, source = declared_size(head)
    if size is not None and file_size < size:
        raise ToolError("%s is %d bytes, shorter than the %d MiB flash it is made for (by %s): a simulated board's "
                        "file holds the whole flash" % (path, file_size, size >> 20, source),
                        "pad it to the flash size (ota-tool flash --merge-only --pad -o FILE), or make a new board "
                        "with ota-tool sim-port --new")


def inspect(path):
    """A dict describing the flash image at `path`. An image shorter than its flash (ota-tool flash
    --merge-only without --pad, esptool merge-bin) is read as if the rest were erased (0xFF)."""
    with open(path, "rb") as f:
        head = f.read(0x9000)
        file_size = os.fstat(f.fileno()).st_size
    size, source = declared_size(head)
    if size is None or file_size >= size:
        return _inspect(path)
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "flash.bin")
        shutil.copyfile(path, copy)
        with open(copy, "r+b") as f:
            f.seek(file_size)
            f.write(b"\xff" * (size - file_size))
        out = _inspect(copy)
    out.update(file=path, file_size=file_size, flash_size_from=source)
    return out


def _inspect(path):
    flash = Flash(path)
    try:
        cfg = sim_board.read_config(flash)
        out = {"file": path, "flash_size": flash.size, "chip": cfg["chip"], "bootloader": None,
               "partitions": [], "otadata": None, "apps": [], "boot": None}
        boot_off = cfg.get("bootloader_offset")
        if boot_off is not None:
            simulated = sim_board.CONFIG_TAG + b"{" in flash.read(boot_off, 512)
            out["bootloader"] = {"offset": boot_off, "simulated": simulated}
            if not simulated:  # a real dump: say what the boot prediction assumes
                out["bootloader"]["assumed"] = ("ESP-IDF bootloader with app rollback enabled (MicroPython "
                                                "builds since v1.21), chip revision v3.0")
        try:
            parts = parttable.read(flash)
        except parttable.TableError as e:
            out["partition_table_error"] = str(e)
            return out
        for p in parts:
            out["partitions"].append({"label": p.label, "type": p.type, "subtype": p.subtype,
                                      "offset": p.offset, "size": p.size, "flags": p.flags})
        od = parttable.find_first(parts, parttable.TYPE_DATA, parttable.SUBTYPE_DATA_OTA)
        slots = parttable.ota_slots(parts)
        if od is not None:
            entries = sim_otadata.read(flash, od.offset)
            active = sim_otadata.active_index(entries)
            out["otadata"] = {"offset": od.offset, "active": active, "entries": [{
                "seq": e.seq, "state": e.state_name(), "crc_ok": e.crc_ok(), "usable": e.valid(),
                "slot": slots[(e.seq - 1) % len(slots)].label if slots and e.seq != 0xFFFFFFFF else None,
            } for e in entries]}
        for p in parts:
            if p.type == parttable.TYPE_APP:
                out["apps"].append(_app_info(flash, p, cfg["chip"], cfg["chip_rev"]))
        if "nvs" in [p.label for p in parts]:
            out["nvs"] = _nvs_summary(flash, parts)
    finally:
        flash.close()
    out["boot"] = predict_boot(path)
    return out


def _nvs_summary(flash, parts):
    try:
        from espsim import nvs
    except ImportError:
        return None
    p = parttable.find_first(parts, parttable.TYPE_DATA, parttable.SUBTYPE_DATA_NVS)
    try:
        out = nvs.dump(flash, p.offset, p.size)
    except Exception as e:  # a corrupt NVS is worth reporting, not worth failing the whole report
        return {"error": str(e)}
    out["offset"] = p.offset
    for e in out.get("entries", []):
        if isinstance(e.get("value"), (bytes, bytearray)):  # blobs: text when they are, else hex (JSON)
            try:
                e["value"] = bytes(e["value"]).decode("utf-8")
                e["encoding"] = "utf-8"
            except UnicodeDecodeError:
                e["value"] = bytes(e["value"]).hex()
                e["encoding"] = "hex"
    return out


def predict_boot(path):
    """Run the simulated bootloader on a copy of the flash: what boots next, and why."""
    with tempfile.TemporaryDirectory() as tmp:
        copy = os.path.join(tmp, "flash.bin")
        shutil.copyfile(path, copy)
        b = sim_board.Board(copy)
        try:
            part = b.boot()
            return {"partition": part.label, "offset": part.offset, "log": b.messages,
                    "flash_writes": b.flash.ops}
        except Brick as e:
            return {"partition": None, "brick": str(e), "log": b.messages}
        finally:
            b.close()


def format_text(info):
    """The report as lines a person reads."""
    short = ""
    if info.get("file_size") is not None:
        short = " (by %s; the file holds its first %d bytes, the rest is read as erased)" % (
            info["flash_size_from"], info["file_size"])
    lines = ["%s: %d MiB flash%s, chip %s" % (info["file"], info["flash_size"] // (1024 * 1024), short, info["chip"])]
    if info.get("partition_table_error"):
        lines.append("partition table: ERROR %s" % info["partition_table_error"])
        return "\n".join(lines)
    bl = info.get("bootloader")
    if bl and bl.get("assumed"):
        lines.append("bootloader at 0x%x (real): the prediction assumes an %s" % (bl["offset"], bl["assumed"]))
    lines.append("partition table:")
    for p in info["partitions"]:
        lines.append("  %-10s type %d subtype 0x%02x  0x%06x  %7d KiB" % (
            p["label"], p["type"], p["subtype"], p["offset"], p["size"] // 1024))
    od = info["otadata"]
    if od:
        lines.append("otadata at 0x%x:" % od["offset"])
        for i, e in enumerate(od["entries"]):
            if e["seq"] == 0xFFFFFFFF:
                lines.append("  [%d] blank" % i)
                continue
            lines.append("  [%d] seq %-4d -> %-6s %-15s crc %s%s" % (
                i, e["seq"], e["slot"], e["state"], "ok" if e["crc_ok"] else "BAD",
                "  (active)" if i == od["active"] else ""))
    else:
        lines.append("otadata: none (no OTA)")
    lines.append("apps:")
    for a in info["apps"]:
        if a.get("valid"):
            app = a.get("app") or {}
            lines.append("  %-8s valid  %8d bytes  version %-10s %s  sha256 %s…" % (
                a["label"], a["length"], repr(app.get("version", "")), app.get("project", ""), a["sha256"][:16]))
        else:
            lines.append("  %-8s INVALID  %s" % (a["label"], a.get("problem")))
    nv = info.get("nvs")
    if nv and nv.get("error"):
        lines.append("nvs: unreadable: %s" % nv["error"])
    elif nv:
        states = {}
        for pg in nv.get("pages", []):
            states[pg["state"]] = states.get(pg["state"], 0) + 1
        ents = nv.get("entries", [])
        lines.append("nvs at 0x%x: %d pages (%s), %d entries%s" % (
            nv.get("offset", 0), len(nv.get("pages", [])), ", ".join("%d %s" % (n, s) for s, n in sorted(states.items())),
            len(ents), ":" if ents else ""))
        for e in ents:
            v = e.get("value")
            text = repr(v) if not isinstance(v, str) else v if e.get("encoding") != "hex" else "0x" + v
            if e.get("error"):
                text = "unreadable: %s" % e["error"]
            lines.append("  %-20s %-5s %s" % ("%s/%s" % (e.get("namespace"), e.get("key")), e.get("type"),
                                                text if len(text) <= 100 else text[:97] + "..."))
    b = info.get("boot") or {}
    if b.get("partition"):
        lines.append("next boot: %s" % b["partition"])
    else:
        lines.append("next boot: NOTHING BOOTS: %s" % b.get("brick"))
    for m in b.get("log", []):
        lines.append("  bootloader: " + m)
    return "\n".join(lines)

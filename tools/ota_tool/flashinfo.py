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


def inspect(path):
    """A dict describing the flash image at `path`."""
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
    lines = ["%s: %d MiB flash, chip %s" % (info["file"], info["flash_size"] // (1024 * 1024), info["chip"])]
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

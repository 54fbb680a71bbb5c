"""Flashing a board by cable: what goes where, checked before anything is written.

A board is set up for OTA with four regions: the 2nd-stage bootloader (0x1000 on the ESP32), the
partition table (0x8000), a blank otadata (so the bootloader starts from the first app slot and
no stale boot choice survives) and the app image in the first app slot (`factory` when the table
has one, else `ota_0`). `plan()` checks every piece with the same code the device and esptool use;
`write()` sends them with esptool (as a library: its own progress bars, its MD5 verify);
`merge()` makes one whole-flash image for factory programming (esptool's merge_bin).
"""
import contextlib
import hashlib
import sys

from espsim.chips import CHIPS

from . import images
from . import partitions as ptable
from .errors import ToolError

APP_DESC_MAGIC = b"\x32\x54\xcd\xab"  # esp_app_desc_t magic, little-endian, at image offset 0x20
ESP_IMAGE_MAGIC = 0xE9


class Region:
    def __init__(self, name, offset, data):
        self.name = name
        self.offset = offset
        self.data = data

    @property
    def end(self):
        return self.offset + len(self.data)

    def to_dict(self):
        return {"name": self.name, "offset": self.offset, "size": len(self.data),
                "sha256": hashlib.sha256(self.data).hexdigest()}


class Layout:
    """What `ota-tool flash` writes: regions in flash order, and where the app went."""

    def __init__(self, chip, flash_size, parts, regions, app_partition, notes):
        self.chip = chip
        self.flash_size = flash_size
        self.parts = parts
        self.regions = regions
        self.app_partition = app_partition
        self.notes = notes

    def to_dict(self):
        return {"chip": self.chip, "flash_size": self.flash_size, "app_partition": self.app_partition.name,
                "regions": [r.to_dict() for r in self.regions], "notes": list(self.notes)}


def read_file(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ToolError("cannot read %s %s: %s" % (what, path, e.strerror))


def load_table(path=None, flash_size=4 * 1024 * 1024):
    """Partitions from a CSV (gen_esp32part format) or a binary table; default: the project's
    partitions.csv. Returns (parts, 0xC00-byte binary)."""
    from . import sim

    if path is None:
        text = sim.default_partitions_csv()
        where = "partitions.csv"
    else:
        raw = read_file(path, "partition table")
        where = path
        if raw[:2] == b"\xaa\x50":  # already binary (partition-table.bin from a build)
            try:
                parts = ptable.from_binary(raw[:ptable.TABLE_LEN], flash_size)
                ptable.validate(parts, flash_size)
            except ptable.PartitionTableError as e:
                raise ToolError("%s: %s" % (path, e), "check the table, or give the CSV instead")
            return parts, ptable.to_binary(parts)
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise ToolError("%s is neither a partition table CSV nor a binary table" % path)
    try:
        parts = ptable.parse_csv(text, flash_size)
    except ptable.PartitionTableError as e:
        raise ToolError("%s: %s" % (where, e), "fix that row and run again")
    return parts, ptable.to_binary(parts)


def app_target(parts):
    """The partition a cable-flashed app goes to: factory if the table has one, else ota_0."""
    factory = next((p for p in parts if p.is_app() and p.subtype == 0x00), None)
    if factory is not None:
        return factory
    first = next((p for p in parts if p.is_app() and p.subtype == 0x10), None)
    if first is not None:
        return first
    apps = [p for p in parts if p.is_app()]
    if apps:
        return apps[0]
    raise ToolError("the partition table has no app partition", "use partitions.csv (ota_0/ota_1)")


def _whole_flash(data):
    # A merged image for offset 0 (esptool merge_bin, a read-flash dump): erased bytes, then the
    # ESP32 bootloader at 0x1000.
    return len(data) > 0x1000 and data[0] == 0xFF and data[0x1000] == ESP_IMAGE_MAGIC


def check_bootloader(data, chip, where="bootloader"):
    """Refuse what cannot be a 2nd-stage bootloader for `chip` at its offset."""
    base = CHIPS[chip]["bootloader_offset"]
    room = ptable.TABLE_OFFSET - base
    if _whole_flash(data):
        raise ToolError("%s is a whole-flash image (merged for offset 0x0), not a bootloader" % where,
                        "use build/bootloader/bootloader.bin")
    if len(data) < 24 or data[0] != ESP_IMAGE_MAGIC:
        raise ToolError("%s is not an ESP image (no 0xE9 magic byte)" % where,
                        "use bootloader/bootloader.bin from the MicroPython build folder")
    if data[0x20:0x24] == APP_DESC_MAGIC:
        raise ToolError("%s is an application image, not a bootloader" % where,
                        "--bootloader takes build/bootloader/bootloader.bin; the app goes to --firmware")
    if len(data) > room:
        raise ToolError("%s is %d bytes: more than the %d bytes between 0x%x and the partition table"
                        % (where, len(data), room, base),
                        "a merged firmware.bin is not a bootloader: use bootloader/bootloader.bin")
    _, problems = images.parse(data, chip)
    if problems:
        raise ToolError("%s is not a valid %s image: %s" % (where, chip, "; ".join(problems)),
                        "rebuild it, or use the bootloader.bin of the same build as the app")


def check_app(data, chip, where="firmware"):
    from .release import check_image

    if _whole_flash(data):
        raise ToolError("%s is a whole-flash image (merged for offset 0x0 or a flash dump), not an app" % where,
                        "use micropython.bin (the app alone) from the build folder")
    try:
        found = check_image(data)
    except ToolError as e:
        raise ToolError("%s: %s" % (where, e.message), e.hint)
    if found != chip:
        raise ToolError("%s is built for %s, not %s" % (where, found, chip),
                        "pass --chip %s, or use the image built for this board" % found)


def plan(app, bootloader=None, table_path=None, chip="esp32", flash_size=4 * 1024 * 1024, micropython=None):
    """Check everything and lay it out. `app`, `bootloader`: bytes (bootloader None: keep the one
    already on the board). Returns a Layout; raises ToolError naming the problem."""
    if chip not in CHIPS:
        raise ToolError("unknown chip %r" % chip, "one of: %s" % ", ".join(sorted(CHIPS)))
    notes = []
    check_app(app, chip)
    parts, table = load_table(table_path, flash_size)
    try:
        ptable.check_filesystem(parts, micropython)
    except ptable.PartitionTableError as e:
        raise ToolError(str(e), "add a vfs partition to the table, or flash MicroPython 1.26 or later")
    target = app_target(parts)
    if len(app) > target.size:
        raise ToolError("the app is %d bytes but %s holds %d" % (len(app), target.name, target.size),
                        "build a smaller firmware, or a table with larger app partitions")
    slots = [p for p in parts if p.is_ota_slot()]
    if any(len(app) > p.size for p in slots):
        notes.append("the app is larger than an OTA slot: it can run from %s but could never be "
                     "sent over the air" % target.name)
    if not slots:
        notes.append("the table has no OTA slots: this board will not take OTA updates")
    regions = []
    if bootloader is not None:
        check_bootloader(bootloader, chip)
        regions.append(Region("bootloader", CHIPS[chip]["bootloader_offset"], bootloader))
    else:
        notes.append("no --bootloader: the bootloader already on the board is kept")
    regions.append(Region("partition-table", ptable.TABLE_OFFSET, table))
    otadata = next((p for p in parts if p.type == 1 and p.subtype == 0x00), None)
    if otadata is not None:
        regions.append(Region("otadata", otadata.offset, b"\xff" * otadata.size))
    regions.append(Region(target.name, target.offset, app))
    return Layout(chip, flash_size, parts, regions, target, notes)


def merge(layout, pad=False):
    """One image of the whole flash from offset 0 (esptool merge_bin), for a programmer or
    `esptool write-flash 0x0 full.bin`. pad: fill up to the flash size with 0xFF."""
    from esptool.cmds import merge_bin

    addr_data = [(r.offset, r.data) for r in layout.regions]
    kw = {"pad_to_size": "%dMB" % (layout.flash_size // (1024 * 1024))} if pad else {}
    with contextlib.redirect_stdout(sys.stderr):
        return merge_bin(addr_data, layout.chip, output=None, flash_mode="keep", flash_freq="keep",
                         flash_size="keep", **kw)


def _connect(port, chip, before, no_stub, baud):
    import serial
    from esptool.cmds import connect_esp, run_stub
    from esptool.util import FatalError, NotImplementedInROMError

    try:
        esp = connect_esp(port=port, chip=chip, before=before)
    except (FatalError, serial.SerialException, OSError) as e:
        raise ToolError("cannot reach an %s bootloader on %s: %s" % (chip, port, " ".join(str(e).split())),
                        "check the port (ls /dev/ttyUSB* /dev/ttyACM*), close other programs using it "
                        "(mpremote, a serial monitor), or hold BOOT while pressing RESET")
    try:
        if not no_stub:
            esp = run_stub(esp)
        if baud and baud > esp.ESP_ROM_BAUD and not port.startswith(("socket://", "rfc2217://")):
            try:
                esp.change_baud(baud)
            except NotImplementedInROMError:
                pass
    except Exception:
        esp._port.close()
        raise
    return esp


def write(layout, port, baud=460800, no_stub=False, before="default-reset", after="hard-reset",
          erase_all=False, read_back=False, log=sys.stdout):
    """Write the layout to the board on `port` with esptool, verify it (esptool's MD5 of each
    region; read_back also reads every byte back) and reset it. Returns a report dict."""
    import serial
    from esptool.cmds import (
        attach_flash,
        read_flash,
        reset_chip,
        verify_flash,
        write_flash,
    )
    from esptool.util import FatalError

    addr_data = [(r.offset, r.data) for r in layout.regions]
    report = {"port": port, "verified": False, "read_back": None}
    with contextlib.redirect_stdout(log):
        esp = _connect(port, layout.chip, before, no_stub, baud)
        try:
            attach_flash(esp)
            write_flash(esp, addr_data, flash_size="keep", erase_all=erase_all)
            verify_flash(esp, addr_data, flash_size="keep")
            report["verified"] = True
            if read_back:
                for r in layout.regions:
                    got = read_flash(esp, r.offset, len(r.data))
                    if got != r.data:
                        bad = next(i for i in range(len(r.data)) if got[i] != r.data[i])
                        raise ToolError("read-back of %s differs at 0x%x" % (r.name, r.offset + bad),
                                        "the flash may be worn or the connection unreliable: try a lower --baud")
                report["read_back"] = True
            reset_chip(esp, after)
        except FatalError as e:
            raise ToolError("esptool failed: %s" % e, "run again; if it persists try --baud 115200 or --no-stub")
        except serial.SerialException as e:
            raise ToolError("the serial connection failed: %s" % e, "check the cable and that nothing else uses the port")
        finally:
            try:
                esp._port.close()
            except Exception:
                pass
    return report


def read_regions(port, regions, chip="esp32", no_stub=True, before="default-reset", after="no-reset",
                 log=sys.stderr):
    """Read (offset, length) regions from a board with esptool; returns a list of bytes."""
    from esptool.cmds import attach_flash, read_flash, reset_chip
    from esptool.util import FatalError

    out = []
    with contextlib.redirect_stdout(log):
        esp = _connect(port, chip, before, no_stub, None)
        try:
            attach_flash(esp)
            for offset, n in regions:
                out.append(read_flash(esp, offset, n))
            reset_chip(esp, after)
        except FatalError as e:
            raise ToolError("esptool failed to read: %s" % e, "ROM reads need --no-stub on some adapters")
        finally:
            esp._port.close()
    return out


def assemble(regions, flash_size=4 * 1024 * 1024):
    """A whole-flash image (0xFF where nothing was written) from (offset, bytes) pairs."""
    img = bytearray(b"\xff" * flash_size)
    for offset, data in regions:
        if offset + len(data) > flash_size:
            raise ToolError("region at 0x%x runs past the 0x%x-byte flash" % (offset, flash_size))
        img[offset:offset + len(data)] = data
    return bytes(img)

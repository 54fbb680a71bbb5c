# One simulated board: its flash, the chip it is, and what is running on it now.
#
# The chip's settings (chip model, revision, whether the bootloader was built with app rollback,
# MAC address) travel inside the flash image itself, in a data segment of the simulated bootloader
# tagged ESPSIM{...json...}, so a device is exactly one file. A real flash dump has no such tag:
# it is read as an ESP32 v3.0 with app rollback enabled (MicroPython's own build since v1.21).
import json

from . import parttable
from .chips import CHIPS, by_id
from .flash import Flash

CONFIG_TAG = b"ESPSIM"

def read_config(flash, bootloader_offset=None):
    cfg = {"chip": "esp32", "chip_rev": 300, "rollback": True, "mac": "24:0a:c4:00:00:01"}
    offsets = (bootloader_offset,) if bootloader_offset is not None else (0x1000, 0x0)
    for off in offsets:
        head = flash.read(off, 512)
        if head[0] != 0xE9:
            continue
        chip = by_id(head[12] | (head[13] << 8))
        if chip:
            cfg["chip"] = chip
        i = head.find(CONFIG_TAG + b"{")
        if i >= 0:
            end = head.find(b"}", i)
            if end > 0:
                cfg.update(json.loads(head[i + len(CONFIG_TAG):end + 1]))
        cfg["bootloader_offset"] = off
        break
    return cfg


class Board:
    def __init__(self, path, cut_at=None, cut_mode="before", verbose=False, oplog=None):
        self.flash = Flash(path, cut_at, cut_mode, oplog)
        cfg = read_config(self.flash)
        self.config = cfg
        self.chip = cfg["chip"]
        self.chip_rev = cfg["chip_rev"]
        self.rollback_enabled = cfg["rollback"]
        self.mac = cfg["mac"]
        self.bootloader_offset = cfg.get("bootloader_offset", CHIPS[self.chip]["bootloader_offset"])
        self.parts = []
        self.running = None
        self.messages = []
        self.verbose = verbose
        self._nvs = None

    def log(self, msg):
        self.messages.append(msg)
        if self.verbose:
            print("[espsim] " + msg)

    def boot(self):
        """Power on / reset: run the bootloader; afterwards `running` is the app partition."""
        from . import bootloader  # host side only: MicroPython runs start after the boot

        self.running = None
        self._nvs = None
        return bootloader.boot(self)

    def firmware_flags(self):
        """Behaviour the running firmware was built with (the SIMFW{...} tag of simulated images)."""
        if self.running is None:
            return {}
        head = self.flash.read(self.running.offset, 4096)
        i = head.find(b"SIMFW{")
        if i < 0:
            return {}
        end = head.find(b"}", i)
        return json.loads(head[i + 5:end + 1]) if end > 0 else {}

    def nvs(self):
        if self._nvs is None:
            from .nvs import NvsError, NvsStorage

            p = parttable.find_first(self.parts, parttable.TYPE_DATA, parttable.SUBTYPE_DATA_NVS)
            if p is None:
                raise OSError(2, "no nvs partition")
            try:
                self._nvs = NvsStorage(self.flash, p.offset, p.size)
            except NvsError as e:
                if e.reason not in ("no_free_pages", "new_version"):
                    raise
                # what MicroPython's ESP32 port does at boot (ports/esp32/main.c): erase, start over
                self.flash.erase(p.offset, p.size)
                self._nvs = NvsStorage(self.flash, p.offset, p.size)
        return self._nvs

    def close(self):
        self.flash.close()

# One simulated board: its flash, the chip it is, and what is running on it now.
#
# The chip's settings (chip model, revision, whether the bootloader was built with app rollback,
# MAC address) travel inside the flash image itself, in a data segment of the simulated bootloader
# tagged ESPSIM{...json...}, so a device is exactly one file. A real flash dump has no such tag:
# it is read as an ESP32 v3.0 with app rollback enabled (MicroPython's own build since v1.21).
# "micropython" names the firmware's release (espsim.profiles); "rollback" is the BOOTLOADER's
# build (a board flashed before v1.21 keeps a bootloader without app rollback: it is never updated
# over the air).
#
# What a power cycle loses and a reset keeps: the RTC keeps counting through machine.reset() and
# deep sleep (ESP-IDF keeps the boot time in RTC registers: esp_time_impl.c) and reads 2000-01-01
# after power-on until something sets it (ports/esp32/machine_rtc.c reads gettimeofday); the
# ESP-IDF heap (espsim.idfheap) starts afresh at every boot.
import json

from . import parttable, profiles
from .chips import CHIPS, by_id
from .flash import Flash

CONFIG_TAG = b"ESPSIM"

def read_config(flash, bootloader_offset=None):
    cfg = {"chip": "esp32", "chip_rev": 300, "rollback": True, "mac": "24:0a:c4:00:00:01",
           "micropython": profiles.DEFAULT}
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


EPOCH_2000 = 946684800  # 2000-01-01 in Unix time: what the RTC reads at power-on


class Board:
    def __init__(self, path, cut_at=None, cut_mode="before", verbose=False, oplog=None, rtc_offset=None,
                 wake_from=None, timing=None):
        """rtc_offset: the RTC's lead over the host clock (seconds) kept from before a reset, or None
        at power-on. wake_from: label of the app that ran before a deep sleep this boot wakes from
        (None: not a wake)."""
        self.flash = Flash(path, cut_at, cut_mode, oplog, timing)
        cfg = read_config(self.flash)
        self.config = cfg
        self.chip = cfg["chip"]
        self.chip_rev = cfg["chip_rev"]
        self.rollback_enabled = cfg["rollback"]
        self.mac = cfg["mac"]
        self.micropython = cfg["micropython"]
        self.profile = profiles.profile(self.micropython)
        self.app_rollback = self.profile["app_rollback"]
        import time

        self.rtc_offset = EPOCH_2000 - time.time() if rtc_offset is None else rtc_offset
        self.wake_from = wake_from
        from .idfheap import IdfHeap

        self.idf_heap = IdfHeap()  # also for boards attached without a boot here (simrun)
        # machine.reset_cause(): a wake, a reset that kept the RTC (machine.reset()), or power-on
        self.reset_cause = 4 if wake_from is not None else 2 if rtc_offset is not None else 1
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

        from .idfheap import IdfHeap

        self.running = None
        self._nvs = None
        self.idf_heap = IdfHeap()
        part = bootloader.boot(self)
        self._nvs_flash_init()
        return part

    def _nvs_flash_init(self):
        # MicroPython initialises NVS once at start-up, before any Python runs (ports/esp32/main.c,
        # boardctrl_startup(): nvs_flash_init(), erased and again on NO_FREE_PAGES/NEW_VERSION_FOUND,
        # any other result ignored): its page scan, repairs and erase happen at boot, not at the
        # app's first NVS call. An error it ignores shows at that call instead (nvs() raises there).
        from .nvs import NvsError

        try:
            self.nvs()
        except (NvsError, OSError):
            self._nvs = None

    def rtc_now(self):
        import time

        return time.time() + self.rtc_offset

    def rtc_set(self, t):
        import time

        self.rtc_offset = t - time.time()

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

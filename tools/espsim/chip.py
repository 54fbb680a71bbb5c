# The chip as the fake MicroPython modules see it: partitions, flash reads/writes/erases, the
# ESP-IDF OTA calls and NVS. Two implementations with the same methods:
#   LocalChip   acts on an espsim Board in this process (CPython tests; MicroPython portability)
#   rpc.RemoteChip  forwards every call to a Board in the host process (MicroPython runs whose
#               heap limit must measure the device code alone, as on a chip whose esp32 module is C)
# Errors are ESP-IDF codes (0 = ESP_OK), as the C API returns them.
class PowerCut(BaseException):
    # BaseException, so that device code's `except Exception` cannot swallow the end of the world.
    pass


ESP_ERR_NVS_NOT_FOUND = 0x1102
ESP_ERR_NVS_INVALID_LENGTH = 0x110C
ESP_ERR_NVS_KEY_TOO_LONG = 0x110F
ESP_ERR_NVS_TYPE_MISMATCH = 0x1104

current = None  # the chip the fake esp32/machine modules act on


def attach(chip):
    global current
    current = chip
    return chip


def get():
    if current is None:
        raise RuntimeError("no simulated chip: boot a board first (ota_tool.sim / espsim.modules.simrun)")
    return current


class LocalChip:
    def __init__(self, board):
        self.board = board

    def partitions(self):
        from .parttable import vfs_partition

        parts = list(self.board.parts)
        vfs = vfs_partition(parts, self.board.flash.size, auto=self.board.profile["vfs_auto"])
        if vfs is not None and vfs not in parts:
            parts.append(vfs)  # registered at boot by MicroPython (esp_partition_register_external)
        return [(p.type, p.subtype, p.offset, p.size, p.label, p.flags) for p in parts]

    def running(self):
        return self.board.running.offset

    def _part(self, offset):
        for p in self.board.parts:
            if p.offset == offset:
                return p
        return None

    def boot_partition(self):
        from . import ota_ops

        p = ota_ops.boot_partition(self.board)
        return -1 if p is None else p.offset

    def next_update(self, offset):
        from . import ota_ops

        p = ota_ops.next_update_partition(self.board, self._part(offset))
        return -1 if p is None else p.offset

    def read(self, addr, buf):
        self.board.flash.readinto(addr, buf)

    def erase(self, addr, n):
        self.board.flash.erase(addr, n)

    def write(self, addr, data):
        self.board.flash.write(addr, data)

    def set_boot(self, offset):
        from . import ota_ops

        return ota_ops.set_boot_partition(self.board, self._part(offset))

    def mark_valid(self):
        from . import ota_ops

        return ota_ops.mark_app_valid_cancel_rollback(self.board)

    def nvs(self, op, ns, key, value=None):
        """op: get_i32 set_i32 get_blob set_blob erase. Returns (esp_err, value)."""
        from .nvs import NvsError, NvsNotFound

        try:
            store = self.board.nvs()
            if op == "get_i32":
                return 0, store.get_i32(ns, key)
            if op == "get_blob":
                return 0, store.get_blob(ns, key)
            if op == "set_i32":
                store.set_i32(ns, key, value)
            elif op == "set_blob":
                store.set_blob(ns, key, value)
            elif op == "erase":
                store.erase_key(ns, key)
            return 0, None
        except NvsNotFound:
            return ESP_ERR_NVS_NOT_FOUND, None
        except NvsError as e:
            if e.reason == "type_mismatch" and op.startswith("get"):
                return ESP_ERR_NVS_NOT_FOUND, None  # what nvs_get_* answers for another type
            return {"key_too_long": ESP_ERR_NVS_KEY_TOO_LONG, "type_mismatch": ESP_ERR_NVS_TYPE_MISMATCH}.get(
                e.reason, 0x1100), None  # ESP_ERR_NVS_BASE for the rest

    def firmware_flags(self):
        return self.board.firmware_flags()

    # --- the ESP-IDF heap (espsim.idfheap)

    def idf_heap_info(self):
        return self.board.idf_heap.info()

    def idf_charge(self, kind):
        """Allocate what one `kind` costs (idfheap.CHARGES): a token, or None when it does not fit."""
        got = self.board.idf_heap.charge(kind)
        return None if got is None else ",".join(str(h) for h in got)

    def idf_release(self, token):
        self.board.idf_heap.release([int(h) for h in token.split(",")])

    def idf_held(self, kind):
        return self.board.idf_heap.held(kind)

    def idf_peak(self, n):
        """Can `n` bytes be had at once now (a transient peak, freed at once)?"""
        h = self.board.idf_heap.alloc(n, "peak")
        if h is None:
            return False
        self.board.idf_heap.free(h)
        return True

    # --- the RTC (seconds since 1970, float)

    def rtc_now(self):
        return self.board.rtc_now()

    def rtc_set(self, t):
        self.board.rtc_set(t)

    def micropython(self):
        return self.board.micropython

    def reset_cause(self):
        return self.board.reset_cause

    def mac(self):
        return self.board.mac

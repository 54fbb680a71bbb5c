# Stand-in for MicroPython's `esp32` module (ports/esp32/esp32_partition.c, esp32_nvs.c) on a
# simulated chip (espsim.chip: in this process or in the host). Same API, same errors:
# OSError(code, name) as check_esp_err raises them, OSError(ENOENT) for a missing partition.
# The ESP-IDF heap is simulated too (espsim.idfheap): idf_heap_info() reports it, and every
# esp32.NVS() costs it an nvs_open that is never closed, as on the chip.
import errno

from espsim import chip as _chip

# esp_err_t -> (errno, name), as ports/esp32/mphalport.c check_esp_err_ maps them: ESP_ERR_NO_MEM
# becomes ENOMEM, ESP_ERR_TIMEOUT the port's ETIMEDOUT (newlib: 116), ESP_ERR_NOT_SUPPORTED
# EOPNOTSUPP (newlib: 95); any other code is raised negated. The message is esp_err_to_name().
_ESP_ERRORS = {
    0x101: (12, "ESP_ERR_NO_MEM"),
    0x102: (-0x102, "ESP_ERR_INVALID_ARG"),
    0x104: (-0x104, "ESP_ERR_INVALID_SIZE"),
    0x105: (-0x105, "ESP_ERR_NOT_FOUND"),
    0x106: (95, "ESP_ERR_NOT_SUPPORTED"),
    0x107: (116, "ESP_ERR_TIMEOUT"),
    0x1102: (-0x1102, "ESP_ERR_NVS_NOT_FOUND"),
    0x1104: (-0x1104, "ESP_ERR_NVS_TYPE_MISMATCH"),
    0x110C: (-0x110C, "ESP_ERR_NVS_INVALID_LENGTH"),
    0x110F: (-0x110F, "ESP_ERR_NVS_KEY_TOO_LONG"),
    0x1503: (-0x1503, "ESP_ERR_OTA_VALIDATE_FAILED"),
}
HEAP_DATA = 4  # MALLOC_CAP_8BIT (modesp32.c)
HEAP_EXEC = 1  # MALLOC_CAP_EXEC

_NATIVE_BLOCK = 4096
_ESP_ERR_INVALID_ARG = 0x102
_ESP_ERR_INVALID_SIZE = 0x104
_ESP_ERR_NVS_INVALID_LENGTH = 0x110C
_ESP_ERR_NVS_KEY_TOO_LONG = 0x110F
_TYPE_APP = 0
_TYPE_DATA = 1


def _check(err):
    if err:
        if err < 0:
            raise OSError(-err, "ESP_FAIL")  # ESP_FAIL (-1): raised as 1
        code, name = _ESP_ERRORS.get(err, (-err, "ERROR"))
        raise OSError(code, name)


def idf_heap_info(capabilities):
    """The simulated ESP-IDF heap's regions, [(total, free, largest free block, minimum free)]:
    the data regions for HEAP_DATA (the executable ones are not simulated: [] for HEAP_EXEC)."""
    if not capabilities & HEAP_DATA:
        return []
    return _chip.get().idf_heap_info()


def _find(pred):
    for p in _chip.get().partitions():
        if pred(p):
            return p
    return None


def _at(offset):
    return _find(lambda p: p[2] == offset)


def _wrap(info, block_size):
    obj = object.__new__(Partition)
    obj._info = info
    obj._bs = block_size
    return obj


class Partition:
    BOOT = 0
    RUNNING = 1
    TYPE_APP = _TYPE_APP
    TYPE_DATA = _TYPE_DATA

    def __init__(self, id, block_size=4096):
        c = _chip.get()
        if isinstance(id, int):
            if id == Partition.BOOT:
                info = _at(c.boot_partition())
            elif id == Partition.RUNNING:
                info = _at(c.running())
            else:
                raise ValueError()
        else:
            # esp_partition_find_first: app partitions are searched before data ones
            info = _find(lambda p: p[0] == _TYPE_APP and p[4] == id) or _find(lambda p: p[0] == _TYPE_DATA and p[4] == id)
        if info is None:
            raise OSError(errno.ENOENT)
        self._info = info
        self._bs = block_size

    @staticmethod
    def find(type=_TYPE_APP, subtype=0xFF, label=None, block_size=4096):
        return [_wrap(p, block_size) for p in _chip.get().partitions()
                if p[0] == type and (subtype == 0xFF or p[1] == subtype) and (label is None or p[4] == label)]

    def __repr__(self):
        t, st, addr, size, label, flags = self._info
        return "<Partition type=%u, subtype=%u, address=%u, size=%u, label=%s, encrypted=%u>" % (
            t, st, addr, size, label, flags & 1)

    def info(self):
        t, st, addr, size, label, flags = self._info
        return (t, st, addr, size, label, bool(flags & 1))

    def _addr(self, offset, n):
        if offset < 0 or offset + n > self._info[3]:
            _check(_ESP_ERR_INVALID_SIZE)
        return self._info[2] + offset

    def readblocks(self, block_num, buf, offset=0):
        _chip.get().read(self._addr(block_num * self._bs + offset, len(buf)), buf)

    def writeblocks(self, block_num, buf, offset=None):
        c = _chip.get()
        off = block_num * self._bs
        if offset is None:
            # esp_partition_erase_range needs sector alignment, then the write.
            if off % _NATIVE_BLOCK or len(buf) % _NATIVE_BLOCK:
                _check(_ESP_ERR_INVALID_ARG)
            c.erase(self._addr(off, len(buf)), len(buf))
        else:
            off += offset
        c.write(self._addr(off, len(buf)), buf)

    def ioctl(self, op, arg):
        if op in (1, 2, 3):
            return 0
        if op == 4:
            return self._info[3] // self._bs
        if op == 5:
            return self._bs
        if op == 6:
            if self._bs != _NATIVE_BLOCK:
                return -errno.EINVAL
            _chip.get().erase(self._addr(arg * _NATIVE_BLOCK, _NATIVE_BLOCK), _NATIVE_BLOCK)
            return 0
        return None

    def set_boot(self):
        _check(_chip.get().set_boot(self._info[2]))

    def get_next_update(self):
        info = _at(_chip.get().next_update(self._info[2]))
        if info is None:
            raise OSError(errno.ENOENT)
        return _wrap(info, self._bs)

    @classmethod
    def mark_app_valid_cancel_rollback(cls):
        _check(_chip.get().mark_valid())


class NVS:
    def __init__(self, namespace):
        # esp32_nvs_make_new (esp32_nvs.c): nvs_open() on every construction, and MicroPython has
        # no close and no finaliser for it: the handle's C heap stays taken until the next boot.
        if not namespace or len(namespace) > 15:
            _check(_ESP_ERR_NVS_KEY_TOO_LONG)
        if _chip.get().idf_charge("nvs_handle") is None:
            _check(0x101)  # nvs_open: ESP_ERR_NO_MEM
        self._ns = namespace

    def _do(self, op, key, value=None):
        if not key or len(key) > 15:
            _check(_ESP_ERR_NVS_KEY_TOO_LONG)
        err, v = _chip.get().nvs(op, self._ns, key, value)
        _check(err)
        return v

    def get_i32(self, key):
        return self._do("get_i32", key)

    def set_i32(self, key, value):
        self._do("set_i32", key, value)

    def get_blob(self, key, buf):
        data = self._do("get_blob", key)
        if len(data) > len(buf):
            _check(_ESP_ERR_NVS_INVALID_LENGTH)
        buf[: len(data)] = data
        return len(data)

    def set_blob(self, key, value):
        self._do("set_blob", key, bytes(value))

    def erase_key(self, key):
        self._do("erase", key)

    def commit(self):
        pass  # ESP-IDF's NVS writes through to flash on every set

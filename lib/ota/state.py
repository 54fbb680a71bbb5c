# The NVS store under ota.ledger (namespace "ota"): typed get/set of one entry each. Only the
# ledger decides what is stored; this module only knows how.
#
# One handle for the life of the process: esp32.NVS() opens an ESP-IDF handle (nvs_open) that
# MicroPython never closes (no close(), no finaliser: ports/esp32/esp32_nvs.c), so every
# construction leaks it into the C heap that TLS needs.
import json

import esp32

from .compat import const

NAMESPACE = "ota"
MAX_BLOB = const(512)
_handle = []


def _nvs():
    if not _handle:
        _handle.append(esp32.NVS(NAMESPACE))
    return _handle[0]


def get_int(key, default=None):
    try:
        return _nvs().get_i32(key)
    except OSError:
        return default


def set_int(key, value):
    nvs = _nvs()
    nvs.set_i32(key, value)
    nvs.commit()


def get_json(key):
    buf = bytearray(MAX_BLOB)
    try:
        n = _nvs().get_blob(key, buf)
    except OSError:
        return None
    try:
        return json.loads(bytes(buf[:n]))
    except ValueError:
        return None  # unreadable: treated as absent (the counter lives apart, as an i32)


def set_json(key, value):
    data = json.dumps(value).encode()
    if len(data) > MAX_BLOB:
        raise ValueError("state %s too large" % key)
    nvs = _nvs()
    nvs.set_blob(key, data)
    nvs.commit()


def erase(key):
    try:
        nvs = _nvs()
        nvs.erase_key(key)
        nvs.commit()
    except OSError:
        pass  # already absent

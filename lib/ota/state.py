# What the device remembers across reboots, in NVS (namespace "ota"): ESP-IDF's NVS writes each
# entry atomically, so a power cut leaves an entry old or new, never torn.
#   secver  i32   anti-rollback counter: raised only after a new image confirmed itself
#   rb      i32   1/0 once seen whether the bootloader has app rollback
#   cur     blob  summary of the signed release running now (JSON)
#   prev    blob  summary of the release before it (what a rollback returns to)
#   pend    blob  summary of a release installed but not confirmed yet, with its slot
#   bad     blob  image SHA-256, version and failure count of the last release whose self-test failed
#   seen    blob  version and `created` of the newest manifest seen for the highest version (replays)
#   jrnl    blob  the download in progress: release, artifact, ETag, bytes written (resume)
#   probe   blob  boots of an unconfirmed image so far (the agent's boot retry limit)
#   rep     blob  a report to send once the network is up (e.g. a rollback, sent by the old image)
import json

import esp32

from .compat import const

NAMESPACE = "ota"
_MAX_BLOB = const(512)


def _nvs():
    return esp32.NVS(NAMESPACE)


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
    buf = bytearray(_MAX_BLOB)
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
    if len(data) > _MAX_BLOB:
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


def security_counter():
    return get_int("secver", 0)

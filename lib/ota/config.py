# The device's update settings: one JSON file, `ota.json`, in the device filesystem. Mirrors the
# `update config ...` verbs of the seed talk (source, key add/delete/update, schedule, log,
# verify, boot-retry-limit, secure). Written atomically (new file, then rename), so a power cut
# leaves the old settings or the new ones, never half of them.
import json

from .compat import fs
from .errors import OTAError

PATH = "ota.json"
MAX_BYTES = 4096

DEFAULTS = {
    "source": None,          # manifest URL: https://host/path/<channel>.json
    "channel": "stable",
    "keys": {},              # name -> public key (base64): the keys releases must be signed with
    "key_threshold": 1,      # signatures needed from distinct trusted keys
    "keys_version": 0,       # version of the signed key list the keys came from (rotation)
    "revoked": [],           # key ids no longer trusted
    "keys_url": None,        # signed key list (default: keys.json next to the manifest)
    "verify": True,          # signature verification; off only on purpose, and said on every check
    "secure": True,          # TLS required (plain http:// refused)
    "ca": "ota_ca.der",      # CA certificate (or pinned server certificate), DER, in the filesystem
    "client_cert": None,     # mutual TLS: DER certificate and PKCS#8 key files
    "client_key": None,
    "interval": 3600,        # seconds between checks
    "jitter": 0.25,          # +- this share of the interval, so fleets do not poll in step
    "retry": 60,             # first retry after a failure (seconds), doubled up to retry_max
    "retry_max": 86400,
    "log": "ota.log",        # audit log file ("" or None: no log)
    "log_max": 8192,         # bytes before the log rotates to <log>.1
    "boot_retry_limit": 1,   # boots a new image gets to pass its self-test (1: ESP-IDF's own rollback)
    "device_id": None,       # default: from machine.unique_id()
    "report_url": None,      # status reports are POSTed here (best effort)
    "allow_downgrade": False,
    "board": None,
    "min_free_heap": 0,      # bytes of free heap needed to start a download (0: no check)
    "min_free_idf_heap": 0,  # bytes of the ESP-IDF heap's largest free block needed likewise (TLS's
                             # 16.7 KB input buffer is one block: 20000 is a sensible floor; 0: no check)
    "ntp": ["pool.ntp.org"],  # NTP servers (at most 4) that set the clock before the first TLS connection
    "window": None,          # [start_hour, end_hour] UTC when updates may start (needs a set clock)
    "app_source": None,      # signed app bundle document URL (ota.bundle), checked after the firmware
    "config_source": None,   # signed config document URL (settings files in the app root)
}

_TYPES = {"source": str, "channel": str, "keys": dict, "key_threshold": int, "keys_version": int, "revoked": list,
          "keys_url": str, "verify": bool, "secure": bool,
          "ca": str, "client_cert": str, "client_key": str, "interval": int, "jitter": float, "retry": int,
          "retry_max": int, "log": str, "log_max": int, "boot_retry_limit": int, "device_id": str,
          "report_url": str, "allow_downgrade": bool, "board": str, "min_free_heap": int, "window": list,
          "min_free_idf_heap": int, "ntp": list,
          "app_source": str, "config_source": str}


def check_value(key, value):
    if key not in _TYPES:
        raise OTAError("bad_config", "unknown setting %r" % key)
    if value is None:
        return value
    t = _TYPES[key]
    if t is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, t) or (t is int and isinstance(value, bool)):
        raise OTAError("bad_config", "setting %r must be %s" % (key, t.__name__))
    if key in ("interval", "retry", "retry_max") and value < 1:
        raise OTAError("bad_config", "setting %r must be at least 1 second" % key)
    if key == "boot_retry_limit" and not 1 <= value <= 10:
        raise OTAError("bad_config", "boot_retry_limit must be 1..10")
    if key == "jitter" and not 0 <= value < 1:
        raise OTAError("bad_config", "jitter must be in 0..1")
    if key == "window" and not _hours(value):
        raise OTAError("bad_config", "window is [start_hour, end_hour] in UTC")
    if key == "ntp" and not _names(value, 4, 64):
        raise OTAError("bad_config", "ntp is a list of at most 4 NTP server names")
    return value


def _names(value, most, longest):
    if not isinstance(value, list) or len(value) > most:
        return False
    for h in value:
        if not isinstance(h, str) or not 0 < len(h) <= longest:
            return False
    return True


def _hours(value):
    if not isinstance(value, list) or len(value) != 2:
        return False
    for h in value:
        if not isinstance(h, int) or not 0 <= h <= 24:
            return False
    return True


def load(path=PATH):
    """The settings: the file merged over DEFAULTS. A missing file gives the defaults; an
    unreadable one is an error (a device must not silently lose its trusted keys)."""
    cfg = dict(DEFAULTS)
    try:
        size = fs.stat(path)
    except OSError:
        return cfg
    if size > MAX_BYTES:
        raise OTAError("bad_config", "%s is %d bytes, over %d" % (path, size, MAX_BYTES))
    with fs.open(path, "r") as f:
        text = f.read(MAX_BYTES)
    try:
        data = json.loads(text)
    except ValueError:
        raise OTAError("bad_config", "%s is not valid JSON" % path)
    if not isinstance(data, dict):
        raise OTAError("bad_config", "%s must hold a JSON object" % path)
    for k in data:
        cfg[k] = check_value(k, data[k])
    return cfg


def save(cfg, path=PATH):
    """Write the settings that differ from the defaults, atomically."""
    out = {}
    for k in cfg:
        v = check_value(k, cfg[k])
        if v != DEFAULTS.get(k):
            out[k] = v
    if out.get("keys"):
        # the trusted keys, threshold and revocations are validated whole, as a signed key list
        # is (ota.trust): a set that could never verify a release, or fails to revoke, is not stored
        from .trust import from_settings

        full = dict(DEFAULTS)
        full.update(out)
        from_settings(full)
    text = json.dumps(out)
    if len(text) > MAX_BYTES:
        raise OTAError("bad_config", "settings too large")
    tmp = path + ".tmp"
    with fs.open(tmp, "w") as f:
        f.write(text)
    fs.rename(tmp, path)
    fs.sync()


def set(key, value, path=PATH):  # noqa: A001 (the verb of `update config`)
    cfg = load(path)
    cfg[key] = check_value(key, value)
    save(cfg, path)
    return cfg


def key(action, name, public_key=None, path=PATH):
    """`update config key add|delete|update NAME [PUBLIC_KEY]`."""
    from .trust import decode_key

    cfg = load(path)
    keys = dict(cfg["keys"])
    if action in ("add", "update"):
        decode_key(public_key)  # refuse a malformed key before it is stored; save() checks the set
        if action == "add" and name in keys:
            raise OTAError("bad_config", "key %r exists: use update" % name)
        if action == "update" and name not in keys:
            raise OTAError("bad_config", "no key %r to update" % name)
        keys[name] = public_key
    elif action == "delete":
        if name not in keys:
            raise OTAError("bad_config", "no key %r" % name)
        if len(keys) == 1:
            raise OTAError("bad_config", "refusing to delete the last trusted key: the device could never update again")
        del keys[name]
    else:
        raise OTAError("bad_config", "key action must be add, delete or update")
    cfg["keys"] = keys
    save(cfg, path)
    return cfg

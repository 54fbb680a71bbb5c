# How the board joins the network at boot: the settings file wifi.json, {"ssid": ..., "password":
# ...}, written by `ota-tool deploy --wifi SSID`. MicroPython on an ESP32 keeps Wi-Fi credentials
# in RAM only (ports/esp32/network_wlan.c: esp_wifi_set_storage(WIFI_STORAGE_RAM)): a network
# joined by hand at the REPL is gone after the reset that boots a new image, and a new image that
# cannot reach its update server is rolled back. So the agent installs nothing while saved() says
# the settings are missing (main.py wires it: Agent(network_saved=...)).
import json

from .compat import fs
from .errors import OTAError

PATH = "wifi.json"
_MAX = 512


def load(path=PATH):
    """(ssid, password) from the settings file; OTAError("network_settings") when it is missing
    or not usable."""
    try:
        with fs.open(path, "r") as f:
            doc = json.loads(f.read(_MAX + 1))
    except OSError:
        raise OTAError("network_settings", "no %s: the board cannot join the network after a reset" % path)
    except ValueError:
        raise OTAError("network_settings", "%s is not valid JSON" % path)
    ssid = doc.get("ssid") if isinstance(doc, dict) else None
    password = doc.get("password", "") if isinstance(doc, dict) else None
    if not isinstance(ssid, str) or not 1 <= len(ssid) <= 32 or not isinstance(password, str) or len(password) > 64:
        raise OTAError("network_settings", "%s must hold {\"ssid\": 1..32 characters, \"password\": at most 64}" % path)
    return ssid, password


def saved(path=PATH):
    """Raise OTAError("network_settings") unless the settings that bring the network up at boot
    are there (the check before an install that ends in a reboot)."""
    load(path)


def connect(timeout_ms=20000, path=PATH):
    """Join the Wi-Fi network of the settings file; True when connected."""
    import network

    from .compat import sleep_ms, ticks_diff, ticks_ms

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if wlan.isconnected():
        return True
    try:
        ssid, password = load(path)
    except OTAError as e:
        print("ota: %s" % e.message)
        return False
    wlan.connect(ssid, password)
    t0 = ticks_ms()
    while not wlan.isconnected() and ticks_diff(ticks_ms(), t0) < timeout_ms:
        sleep_ms(100)
    return wlan.isconnected()

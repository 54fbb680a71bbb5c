# Stand-in for MicroPython's `network` module on a simulated board: Wi-Fi "connects" at once,
# unless the running firmware was built broken ({"wifi_broken": true} in its SIMFW tag), as a
# firmware with a bad radio driver would be. The sockets themselves are the host's.
from espsim import chip as _chip

STA_IF = 0
AP_IF = 1
_ram = {"ssid": None, "key": None}  # what connect() joined this boot (the driver keeps it in RAM)


def _access_point():
    # ESPSIM_WIFI, {"ssid": ..., "password": ...} in JSON, is the one access point in reach (ota-tool
    # sim-port --wifi); without it every network answers. Read once, at import: connect() must not
    # allocate in the device's heap (the simulator is C on a chip).
    import json
    import os

    ap = os.getenv("ESPSIM_WIFI")
    return None if not ap else tuple(json.loads(ap)[k] for k in ("ssid", "password"))


_AP = _access_point()


def _in_reach(ssid, key):
    return _AP is None or (ssid == _AP[0] and (key or "") == _AP[1])


class WLAN:
    def __init__(self, interface=STA_IF):
        self._if = interface
        self._active = False
        self._up = False

    def active(self, on=None):
        if on is not None:
            self._active = bool(on)
        return self._active

    def connect(self, ssid=None, key=None):
        # The credentials are kept in RAM only (ports/esp32/network_wlan.c: esp_wifi_set_storage(
        # WIFI_STORAGE_RAM)): connect() without an SSID rejoins what this boot joined, else nothing.
        if ssid is None:
            ssid, key = _ram.get("ssid"), _ram.get("key")
        _ram["ssid"], _ram["key"] = ssid, key
        self._up = (self._active and ssid is not None and _in_reach(ssid, key)
                    and not _chip.get().firmware_flags().get("wifi_broken"))

    def disconnect(self):
        self._up = False

    def isconnected(self):
        return self._up

    def ifconfig(self):
        return ("10.0.0.2", "255.255.255.0", "10.0.0.1", "10.0.0.1") if self._up else ("0.0.0.0",) * 4

    def config(self, name):
        if name == "mac":
            return bytes([int(x, 16) for x in _chip.get().mac().split(":")])
        raise ValueError("unknown config param")

"""Shared helpers for tests that run device code on the simulated ESP32."""
import hashlib
import io

from ota_tool import images, sim

SMALL = 24 * 1024  # small images keep exhaustive sweeps fast; still several blocks and segments


def small_app(version, seed=None, size=SMALL, **kw):
    return images.app_image(version, size=size, seed=seed if seed is not None else abs(hash(version)) % 1000, **kw)


def new_device(tmp_path, app=None, name="dev.bin", **kw):
    return sim.create(str(tmp_path / name), app if app is not None else small_app("1.0.0", 1), **kw)


def installer(image, sha=True, length=None, reboot=True, source=None):
    """A device app that installs `image` from memory (then resets)."""
    import ota

    def app():
        src = source if source is not None else io.BytesIO(image)
        ota.install_image(src, len(image) if length is None else length,
                          hashlib.sha256(image).digest() if sha is True else sha, reboot=reboot)

    return app


def confirmer(healthy=True):
    import ota

    return lambda: ota.confirm(lambda: healthy)


def otadata_bytes(dev):
    return dev.read(0xD000, 0x2000)


def running_version(dev):
    import ota

    out = dev.run(lambda: ota.status())
    st = out.value
    me = [s for s in st["slots"] if s["running"]][0]
    return me["image"]["version"], me["state"], out


# The agent's hooks on a simulated board: the Wi-Fi (simulated) and the firmware's health flag.
def connect():
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect("lab", "secret")
    return wlan.isconnected()


def healthy():
    import simhw

    return simhw.healthy()


def remembered(key):
    """A device app returning what the device keeps in NVS under `key` (ota.ledger's records,
    through ota.state), or None."""
    def app():
        from ota import state

        return state.get_json(key)

    return app

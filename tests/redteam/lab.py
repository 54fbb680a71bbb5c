"""The second review's harness (issue 14-16 review): a signed release repo over HTTPS and a simulated board,
device code run in this CPython process (ota-tool's sim, as README "The simulated ESP32")."""
import json
import os
import sys

from ota_tool import devfs, images, keys, release, server, sim

SIZE = 64 * 1024


class Lab:
    def __init__(self, tmp, version="1.0.0", settings=None, **create):
        self.tmp = str(tmp)
        self.repo = os.path.join(self.tmp, "repo")
        os.makedirs(self.repo, exist_ok=True)
        self.key = keys.generate(os.path.join(self.tmp, "k.pem"))
        self.pub = keys.public_text(self.key)
        self.srv = server.start_server(self.repo, tls_dir=os.path.join(self.tmp, "tls"), reports=False)
        self.url = self.srv.url.rstrip("/") + "/stable.json"
        self.images = {}
        v1 = self.image(version, seed=1)
        self.dev = sim.create(os.path.join(self.tmp, "dev.bin"), v1, **create)
        cfg = {"source": self.url, "keys": {"release": self.pub}, "device_id": "rev-1"}
        cfg.update(settings or {})
        self.put("ota.json", json.dumps(cfg).encode())
        self.put("ota_ca.der", self.srv.ca_der)

    def put(self, name, data):
        devfs.put(self.dev.path, name, data)

    def image(self, version, seed=None, size=SIZE, **flags):
        data = images.app_image(version, size=size, seed=seed if seed is not None else hash(version) & 0xFFFF,
                                flags=flags or None)
        self.images[version] = data
        return data

    def publish(self, version, security_version=0, signing=None, **kw):
        data = self.images.get(version) or self.image(version)
        return release.build(data, version, signing or [self.key], self.repo,
                             security_version=security_version, **kw)

    def run(self, fn, *a):
        return self.dev.run(fn, *a)

    def slot_version(self, label):
        return images.describe(self.dev.slot_image(label, 0x200)) if False else self._ver(label)

    def _ver(self, label):
        head = self.dev.slot_image(label, 0x80)
        return head[0x30:0x50].split(b"\0")[0].decode(errors="replace")

    def close(self):
        self.srv.stop()


def agent(**kw):
    import ota.agent
    import simhw

    kw.setdefault("self_test", simhw.healthy)
    return ota.agent.Agent(**kw)


def fresh():
    """A power cycle starts with no library in memory (as a new process / a reset board)."""
    import ota

    for name in list(sys.modules):
        if name.startswith("ota.") and not name.startswith("ota.compat") and name != "ota.errors":
            del sys.modules[name]
            short = name[4:]
            if "." not in short and short in ota.__dict__:
                delattr(ota, short)


class NtpDown:
    """The LAN's time server unreachable: the fake ntptime raises the ESP32's ETIMEDOUT."""

    def __init__(self):
        import ntptime

        self.mod = ntptime
        self.orig = ntptime.settime
        self.down = True

        def settime():
            if self.down:
                raise OSError(116)
            return self.orig()

        ntptime.settime = settime

    def restore(self):
        self.mod.settime = self.orig

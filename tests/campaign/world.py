"""Shared pieces of the campaign: firmware images, a release key, release repositories served by a
real `ota-tool serve` (or a faulty mirror), simulated boards provisioned as a deployed device is
(ota.json, the server's CA, the release it runs), and the device's main.py (the agent)."""
import binascii
import contextlib
import hashlib
import json
import os
import shutil

from ota_tool import sim  # noqa: I001 (first: puts the fake esp32/machine/network modules on the path)
from ota import agent as ota_agent
from ota_tool import devfs, images, keys, release, server
from tests.simhelpers import connect, healthy

SIZE = 24 * 1024  # app_image's size argument: the images come out ~64 KiB, 17 flash blocks
V1 = images.app_image("1.0.0", size=SIZE, seed=1)
V2 = images.app_image("2.0.0", size=SIZE, seed=1, base=V1, changes=40)  # a point release: deltas pay
V3_BAD = images.app_image("3.0.0", size=SIZE, seed=3, flags={"selftest_fails": True})
IMAGES = {"1.0.0": V1, "2.0.0": V2, "3.0.0": V3_BAD}

# Refusals that prove the device fetched and verified the manifest and decided on it: an update
# check that ends in one of these reached the server.
POLICY_REASONS = ("up_to_date", "downgrade", "security_version", "halted", "not_in_rollout", "expired",
                  "wrong_board", "board_unknown", "wrong_channel", "wrong_chip", "too_large", "requires_micropython",
                  "requires_idf", "known_bad", "replayed")


def sha_hex(data):
    return hashlib.sha256(data).hexdigest()


class CampaignAgent(ota_agent.Agent):
    """The device's own Agent, with the reason of its last refusal kept for the figures, and
    timeouts a subclass can shorten (the network campaign's stalls: the device's are seconds)."""

    connect_ms = 10000
    read_ms = 5000
    stall_ms = 10000

    def __init__(self, **kw):
        kw.setdefault("self_test", healthy)
        kw.setdefault("connect", connect)
        super().__init__(**kw)
        self.reason = None

    def _fetcher(self, cfg, timeout=15000):
        f = super()._fetcher(cfg, timeout=min(timeout, self.connect_ms))
        f.read_timeout = self.read_ms
        f.stall_timeout = self.stall_ms
        return f

    def check_now(self, reboot=True, **overrides):
        self.reason = None
        return super().check_now(reboot, **overrides)

    def _refused(self, e, target=None):
        self.reason = e.reason
        return super()._refused(e, target)

    def report(self, event, **fields):
        EVENTS.append(event)  # "installed" is reported just before the reset into the new image
        return super().report(event, **fields)


EVENTS = []  # events the agent reported in this process (the harness clears it per power cycle)


def main_py():
    """What main.py runs at every boot: confirm (or roll back) the image, then one update check.
    Returns (boot result, check event, refusal reason)."""
    a = CampaignAgent()
    first = a.boot()
    event = a.check_now()
    return first, event, a.reason


def reached_server(event, reason):
    return event in ("up_to_date", "installed") or (event == "refused" and reason in POLICY_REASONS)


class Repo:
    """A release folder and the HTTPS server that serves it."""

    def __init__(self, world, name, serve=True):
        self.world = world
        self.path = os.path.join(world.dir, "repo-" + name)
        os.makedirs(self.path, exist_ok=True)
        self.srv = None
        if serve:
            self.srv = server.start_server(self.path, tls_dir=world.tls_dir, reports=False)
            world.servers.append(self.srv)

    @property
    def url(self):
        return self.srv.url + "stable.json"

    @property
    def ca_der(self):
        return self.srv.ca_der

    def publish(self, image, version, **kw):
        return release.build(image, version, [self.world.key], self.path, **kw)


class World:
    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.tls_dir = os.path.join(workdir, "tls")
        self.key = keys.generate(os.path.join(workdir, "release.pem"), force=True)
        self.servers = []

    def repo(self, name, serve=True):
        return Repo(self, name, serve)

    def close(self):
        for s in self.servers:
            s.stop()
        self.servers = []


def provision(world, path, url, ca_der, image=V1, version="1.0.0", **settings):
    """A board as it leaves the factory and first boots: `image` in ota_0, ota.json and the CA in
    its filesystem, and the signed release it runs remembered in NVS (as a first update leaves it),
    so that the policy knows its version."""
    dev = sim.create(path, image)
    cfg = {"source": url, "keys": {"release": keys.public_text(world.key)}, "device_id": os.path.basename(path),
           "interval": 60, "log_max": 1024}
    cfg.update(settings)
    devfs.put(dev.path, "ota.json", json.dumps(cfg).encode())
    devfs.put(dev.path, "ota_ca.der", ca_der)
    cur = {"version": version, "security_version": 0, "channel": "stable", "image_sha256": sha_hex(image),
           "manifest_sha256": "00" * 32, "keys": []}

    def first_boot():
        from ota import ledger

        ledger.provisioned(cur)

    out = dev.run(first_boot)
    assert out.kind == sim.RETURNED, out
    return dev


@contextlib.contextmanager
def board_offered_v2(tmp_path):
    """(world, repository "r" with 2.0.0 published, a board on 1.0.0 pointed at it); closed after."""
    w = World(str(tmp_path))
    try:
        repo = w.repo("r")
        repo.publish(V2, "2.0.0")
        yield w, repo, provision(w, str(tmp_path / "d.bin"), repo.url, repo.ca_der)
    finally:
        w.close()


def copy_device(src_path, dst_path):
    shutil.copyfile(src_path, dst_path)
    return sim.Device(dst_path)


def running(dev):
    """(version in the running image's app descriptor, its otadata state, slot label, image ok):
    one power cycle that runs nothing but ota.status()."""
    def app():
        import ota

        st = ota.status()
        me = [s for s in st["slots"] if s["running"]][0]
        return (me["image"] or {}).get("version"), me["state"], st["running"]

    out = dev.run(app)
    if out.kind != sim.RETURNED:
        return None, None, None, False
    version, state, label = out.value
    image = IMAGES.get(version)
    intact = image is not None and dev.slot_image(label, len(image)) == image
    return version, state, label, intact


def hexlify(b):
    return binascii.hexlify(b).decode()

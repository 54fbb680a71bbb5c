"""Key revocation while the agent runs. README: keys rotate through a signed key list; main.py
keeps ONE Agent for the life of the board (agent.run() or app.main(agent)), and the public
ota.update_now() makes its own Agent. A revocation applied by one (saved to ota.json) and a key
removed with ota.config.key('delete', ...) must not leave the other still trusting the revoked key.
Hostile sequence: key k0 leaks; the publisher rotates (k1 in, k0 revoked); the device applies it
through ota.update_now(); the attacker then withholds keys.json (404, "normal": ignored silently)
and serves a manifest signed by k0. Property: the long-running agent refuses it (revoked_key)."""
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota_tool import keys, sim

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def test_revocation_applied_elsewhere_reaches_the_running_agent(world):
    k0, k1 = world.key, Ed25519PrivateKey.generate()
    keylist = keys.key_list([("k1", keys.public_bytes(k1))], 1, [k0], revoked=[keys.key_id(k0)])
    keys_path = os.path.join(world.repo, "keys.json")

    def firmware():
        import simhw
        import ota
        from ota import agent, audit

        a = agent.Agent(self_test=simhw.healthy)  # main.py's agent
        a.boot()
        first = a.check_now(reboot=False)  # nothing published yet
        with open(keys_path, "wb") as f:  # the publisher rotates: k1 in, leaked k0 revoked
            f.write(keylist)
        world.publish("1.5.0", created=rt.NOW + 50, signers=[k1], extra={"rollout": {"percent": 0, "salt": "s"}})  # staged: not installed
        via_api = ota.update_now(reboot=False)  # e.g. a button: its own Agent applies the key list
        os.remove(keys_path)  # the attacker withholds keys.json ...
        world.publish("6.6.6", signers=[k0], created=rt.NOW + 100)  # ... and serves a release signed by the revoked key
        last = a.check_now(reboot=False)
        return first, via_api, last, audit.read("ota.log", 1)[-1]

    out = world.dev.run(firmware)
    assert out.kind == sim.RETURNED, out
    first, via_api, last, log = out.value
    cfg = rt.devfs.get(world.dev.path, "ota.json")
    assert b"revoked" in cfg, cfg
    assert last != "installed", ("the running agent installed 6.6.6 signed by the revoked key %s (ota.json already "
                                 "revokes it; ota.update_now() -> %s): %s" % (keys.key_id(k0), via_api, log))

"""Key lists (Issue 14 class 3: "Key lists that lock the device out"). A signed key list's version
is an integer 1..2**31-1 and a device applies only a higher one than it has. Property: no key list
that ota-tool signs leaves the device unable to rotate keys ever again."""
import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota_tool import keys
from ota_tool.errors import ToolError

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def _put_keylist(world, blob):
    with open(world.repo + "/keys.json", "wb") as f:
        f.write(blob)


def test_key_list_at_the_top_version_ends_rotation_for_ever(world):
    """A key list at version 2**31-1 (ota-tool keylist --version 2147483647, e.g. a typo or a date
    as a version) is signed by ota-tool and applied by the device; after it no key list can ever
    be applied, so a compromised key can never be revoked."""
    b = Ed25519PrivateKey.generate()
    try:
        blob = keys.key_list([("a", keys.public_bytes(world.key)), ("b", keys.public_bytes(b))], 0x7FFFFFFF,
                             [world.key])
    except ToolError:
        return  # the tool refuses it: fine
    _put_keylist(world, blob)
    world.check()
    cfg = rt.devfs.get(world.dev.path, "ota.json")
    assert b'"keys_version": 2147483647' in cfg.replace(b":", b": ").replace(b":  ", b": "), cfg
    # key a leaks: revoke it. No version above the last one exists.
    c = Ed25519PrivateKey.generate()
    try:
        keys.key_list([("b", keys.public_bytes(b)), ("c", keys.public_bytes(c))], 0x80000000, [world.key],
                      revoked=[keys.key_id(world.key)])
        can_sign = True
    except ToolError:
        can_sign = False
    pytest.fail("a key list at version 2**31-1 was signed and applied; the next rotation %s" %
                ("is refused by the device" if can_sign else "cannot even be signed: revocation is impossible"))

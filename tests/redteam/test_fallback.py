"""Issue 14 class 11: "A delta or compressed artifact that fails by itself (a wrong patch, a wrong or
missing file, an image that does not hash to the signed value) is replaced, once, in the same check,
by the raw image ... network and device-state failures do not fall back".

Hostile (signed) artifacts that decode to a SHORT image: a zlib stream of a smaller image, a patch
whose data ends before the image does. Their decoders say "truncated", which the update flow also
uses for a network that drops the connection. Property: the device installs the raw image (in the
same check), and does not retry a bad artifact for ever."""
import binascii
import hashlib
import json
import os
import zlib

import pytest

from ota import manifest as device_manifest
from ota_tool import keys

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def _resign(world, info, encoding, new_bytes, drop_extra=True):
    """Replace the artifact of `encoding` by `new_bytes` (a new content-named file) and sign the
    manifest again with the release key: a signed release whose artifact is bad by itself."""
    doc = json.loads(device_manifest.split(info["blob"])[1])
    name = "sha256-%s.bad" % hashlib.sha256(new_bytes).hexdigest()[:16]
    with open(os.path.join(world.repo, name), "wb") as f:
        f.write(new_bytes)
    for lst in ("artifacts", "extra_artifacts"):
        for a in doc.get(lst, []):
            if a["encoding"] == encoding:
                a.update(url=name, size=len(new_bytes), sha256=hashlib.sha256(new_bytes).hexdigest())
    if drop_extra and encoding != "rdelta":
        doc.pop("extra_artifacts", None)
    doc["created"] += 1
    blob = keys.sign(doc, [world.key])
    world.serve_manifest(blob)
    return doc


def _short_zlib(raw, cut, wbits=12):
    c = zlib.compressobj(9, zlib.DEFLATED, wbits, 9)
    return c.compress(raw[:-cut]) + c.flush()


def _patch_raw(patch):
    return zlib.decompress(patch)


def test_zlib_artifact_of_a_short_image_falls_back_to_raw(world):
    info = world.publish("2.0.0", compress=True)
    _resign(world, info, "zlib", _short_zlib(info["image"], 4096))
    r = world.check()
    assert r["event"] == "installed", (r["event"], rt.reason(r), r["last"].get("message"))


@pytest.mark.parametrize("encoding", ["delta", "rdelta"])
def test_patch_that_ends_early_falls_back_to_raw(world, encoding):
    v2 = world.image("2.0.0", base=world.v1, changes=20, seed=1)
    info = world.publish("2.0.0", image=v2, bases=[world.v1])
    arts = {a["encoding"]: a for a in info["artifacts"]}
    if encoding not in arts:
        pytest.skip("no %s artifact for these images" % encoding)
    with open(os.path.join(world.repo, arts[encoding]["url"]), "rb") as f:
        patch = f.read()
    raw = _patch_raw(patch)
    short = _short_zlib(raw, 64)  # the patch's last 64 bytes are missing, its header says the full size
    _resign(world, info, encoding, short)
    r = world.check()
    assert r["event"] == "installed", (r["event"], rt.reason(r), r["last"].get("message"))

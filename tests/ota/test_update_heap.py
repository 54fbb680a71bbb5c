"""The signed update when the heap is short (review 4): a release with a raw image next to a zlib
or delta artifact is installed from its raw image when the heap has no room for a decoder, a
decoder that finds no room part-way falls back to the raw image, and a MemoryError anywhere in
update.update() is an OTAError ("out_of_memory") with the board unchanged. The heap-limited
MicroPython cases are tests/redteam/review4/test_decoder_room_heap.py."""
import copy
import os

import pytest

from ota import OTAError
from ota_tool import keys, release
from tests.simhelpers import new_device, small_app


@pytest.fixture
def world(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    v1 = small_app("1.0.0", 1)
    v2 = small_app("2.0.0", 1)
    repo = str(tmp_path / "repo")
    info = release.build(v2, "2.0.0", [key], repo, compress=True)
    assert sorted(a["encoding"] for a in info["artifacts"]) == ["raw", "zlib"]
    return new_device(tmp_path, v1), os.path.join(repo, "stable.json"), keys.public_text(key)


def updater(url, pub):
    def app():
        from ota import ledger, trust, update
        from ota.fetch import FileFetcher

        try:
            r = update.update(FileFetcher(), url, trust.Trust.from_list([pub]), reboot=False)
            return r["artifact"], r.get("fallback_from"), ledger.hold()
        except OTAError as e:
            return "OTAError", e.reason, ledger.hold()

    return app


def test_a_heap_with_room_for_a_decoder_takes_the_smaller_zlib_artifact(world):
    dev, url, pub = world
    assert dev.run(updater(url, pub)).value == ("zlib", None, None)


def test_no_room_for_a_decoder_takes_the_raw_image(world, monkeypatch):
    from ota import update

    dev, url, pub = world
    monkeypatch.setattr(update, "_room", lambda: None)
    assert dev.run(updater(url, pub)).value == ("raw", None, None)


def test_a_decoder_out_of_memory_part_way_falls_back_to_the_raw_image(world, monkeypatch):
    # Not the network's failure (no retries from zero), not the artifact's (not held).
    from ota import inflate

    dev, url, pub = world
    calls = []

    def window_fails(self, buf):
        calls.append(1)
        raise MemoryError("memory allocation failed, allocating 4096 bytes")

    monkeypatch.setattr(inflate.Inflate, "readinto", window_fails)
    assert dev.run(updater(url, pub)).value == ("raw", "zlib", None)
    assert len(calls) == 1


@pytest.mark.parametrize("where", ["fetch_bytes", "install"])
def test_a_memory_error_anywhere_is_an_out_of_memory_refusal_and_changes_nothing(world, monkeypatch, where):
    from ota import install, update

    dev, url, pub = world

    def no_heap(*a, **kw):
        raise MemoryError("memory allocation failed, allocating 8193 bytes")

    monkeypatch.setattr(*((update, "fetch_bytes", no_heap) if where == "fetch_bytes" else (install, "install", no_heap)))
    before = dev.boot_only()[0]
    assert dev.run(updater(url, pub)).value == ("OTAError", "out_of_memory", None)
    assert dev.boot_only()[0] == before


def test_choose_without_a_decoder_needs_a_raw_image(tmp_path):
    from ota import manifest, slot, update
    from tests.ota import manifest_cases as mc

    dev = new_device(tmp_path)
    d = copy.deepcopy(mc.DOC)
    d["artifacts"] = [{"url": "a.zlib", "size": 9000, "sha256": mc.SHA, "encoding": "zlib", "wbits": 12}]
    only_zlib = manifest.Manifest(d, [], b"")
    d = copy.deepcopy(d)
    d["artifacts"].append({"url": "a.bin", "size": 200000, "sha256": mc.SHA})
    both = manifest.Manifest(d, [], b"")

    def app():
        out = [update.choose(both, slot.running(), bytearray(4096))[0].encoding,
               update.choose(both, slot.running(), bytearray(4096), decoder=False)[0].encoding]
        try:
            update.choose(only_zlib, slot.running(), bytearray(4096), decoder=False)
        except OTAError as e:
            out.append(e.reason)
        return out

    assert dev.run(app).value == ["zlib", "raw", "out_of_memory"]

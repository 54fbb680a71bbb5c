"""Review 4: update.reserve() keeps the 4 KiB block buffer when the 6 KiB decoder room does not fit.

What it shows: between the heap where a raw signed update completes (129 KiB with this app, 64-bit
unix port) and the one where a compressed or delta update does (156 KiB), `update.update()` of a
signed release that carries the raw image AND a zlib (or delta/rdelta) artifact ends with a bare
`MemoryError` (not an `ota.OTAError`): reserve() got the buffer but no room, choose() still takes
the smaller artifact, and `_install_artifact` then allocates the room, 6144 bytes in one piece
(update.py: `room = [bytearray((1 << art.wbits) + _DECODER_STATE)]`), which fails. No fallback
to the raw artifact the same signed release offers (the fallback runs on OTAError only), though it
would install at that very heap (the control below). Scan, 1 KiB steps, 200 KiB image, one server
and key (bench_update.py --targets' inline app): raw fails 118-128, passes 129-160; zlib fails
118-155 (129-155 all at that 6144-byte allocation), passes 156-160; delta and rdelta the same
(131/133-155 at that allocation). A board in that window never installs a compressed or delta
release through the public API, and sees a traceback the README says it will not get ("Every
refusal is an ota.OTAError"). The agent turns it into out_of_memory (transient, retried forever).

Fixed: without room for a decoder the raw image is chosen (update.choose(decoder=False)); a decoder
that runs out part-way falls back to the raw image; a MemoryError out of update.update() is
OTAError("out_of_memory") (tests/ota/test_update_heap.py).
"""
import os
import shutil

import pytest

from ota_tool import images, keys, release, server, sim

pytestmark = pytest.mark.micropython

SIZE = 200 * 1024
# Inside the window for zlib, delta and rdelta (129/131/133 .. 155 KiB): several sizes, as the
# heap a run needs moves by a KiB or two with the server's port and the key.
HEAPS = ("138k", "144k", "150k")

APP = """
import gc
gc.collect()
import time, ntptime
ntptime.settime()
import ota
from ota import http, trust, update
try:
    r = update.update(http.HttpFetcher(ca=open(%(ca)r, "rb").read()), %(url)r, trust.Trust.from_list([%(key)r]), reboot=False)
    print("DONE", r["artifact"])
except ota.OTAError as e:
    print("OTAERROR", e.reason)
except MemoryError as e:
    print("BARE_MEMORYERROR", e)
"""


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = str(tmp_path_factory.mktemp("rv4"))
    key = keys.generate(os.path.join(tmp, "k.pem"))
    v1 = images.app_image("1.0.0", size=SIZE, seed=1)
    v2 = images.app_image("2.0.0", size=SIZE, seed=1, base=v1, changes=40)
    for kind, kw in (("raw", {}), ("zlib", {"compress": True}),
                     ("delta", {"compress": True, "bases": [v1], "rdelta": False}),
                     ("rdelta", {"compress": True, "bases": [v1]})):
        release.build(v2, "2.0.0", [key], os.path.join(tmp, "repo-" + kind), **kw)
    srv = server.start_server(tmp, tls_dir=os.path.join(tmp, "tls"))
    ca = os.path.join(tmp, "ca.der")
    with open(ca, "wb") as f:
        f.write(srv.ca_der)
    base = os.path.join(tmp, "base.bin")
    sim.create(base, v1)
    yield {"tmp": tmp, "srv": srv, "ca": ca, "key": keys.public_text(key), "base": base}
    srv.stop()


def run(world, kind, heap):
    dev = sim.Device(os.path.join(world["tmp"], "dev.bin"))
    shutil.copyfile(world["base"], dev.path)
    code = APP % {"ca": world["ca"], "url": world["srv"].url + "repo-%s/stable.json" % kind, "key": world["key"]}
    return dev.run_micropython(code, heap=heap)


@pytest.mark.parametrize("heap", HEAPS)
def test_control_raw_only_release_installs_at_this_heap(world, heap):
    # Passes: the heap is enough for the signed update of the raw image.
    out = run(world, "raw", heap)
    assert "DONE raw" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("heap", HEAPS)
@pytest.mark.parametrize("kind", ("zlib", "delta", "rdelta"))
def test_release_with_raw_and_compressed_artifacts_installs_or_refuses_cleanly(world, kind, heap):
    # Failed before the fix: BARE_MEMORYERROR "allocating 6144 bytes" from update._install_artifact,
    # where the release's own raw artifact would have installed (the control above).
    out = run(world, kind, heap)
    assert "BARE_MEMORYERROR" not in out.stdout, "update.update() raised a bare MemoryError: " + out.stdout
    assert "DONE" in out.stdout, out.stdout + out.stderr

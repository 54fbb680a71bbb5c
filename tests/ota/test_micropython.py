"""The update life cycle under the real MicroPython unix port, heap-limited (64 KiB).

The simulated board stays in the test process and the device process reaches it over a socket
(espsim.rpc), so the heap limit measures the device code, as on an ESP32 whose esp32 module is C.
One test also runs the whole simulator inside MicroPython (local=True) to show it is portable.
"""
import hashlib

import pytest

from ota_tool import partitions, sim
from tests.simhelpers import SMALL, new_device, small_app

pytestmark = pytest.mark.micropython

HEAP = "64k"
V1 = small_app("1.0.0", 1)
V2 = small_app("2.0.0", 2)
V3_BAD = small_app("3.0.0", 3, flags={"selftest_fails": True})


def install_code(path, image, sha=None, length=None, reset=True):
    return """
import ota, binascii
try:
    with open(%r, "rb") as f:
        r = ota.install_image(f, %d, %s)
    print("installed", r["slot"])
except ota.OTAError as e:
    print("refused", e.reason)
%s
""" % (path, len(image) if length is None else length,
       "binascii.unhexlify(%r)" % (sha or hashlib.sha256(image).hexdigest()) if sha is not False else "None",
       "import machine; machine.reset()" if reset else "")


BOOT = """
import ota, simhw
from ota import slot
# what a main.py does first: confirm (or roll back) the image on probation
print("running", slot.label(slot.running()), ota.pending_verify())
print("confirm", ota.confirm(simhw.healthy))
st = ota.status()
print("version", [s["image"]["version"] for s in st["slots"] if s["running"]][0])
"""


def write(tmp_path, name, data):
    p = tmp_path / name
    p.write_bytes(data)
    return str(p)


def test_life_cycle(tmp_path):
    dev = new_device(tmp_path, V1)
    out = dev.run_micropython(BOOT, heap=HEAP)
    assert out.kind == sim.RETURNED, out.stderr
    assert "running ota_0 False" in out.stdout and "confirm already_valid" in out.stdout and "version 1.0.0" in out.stdout

    out = dev.run_micropython(install_code(write(tmp_path, "v2.bin", V2), V2), heap=HEAP)
    assert out.kind == sim.RESET and "installed ota_1" in out.stdout, out.stderr
    out = dev.run_micropython(BOOT, heap=HEAP)
    assert "running ota_1 True" in out.stdout and "confirm confirmed" in out.stdout, out.stdout + out.stderr
    assert "version 2.0.0" in out.stdout

    out = dev.run_micropython(install_code(write(tmp_path, "v3.bin", V3_BAD), V3_BAD), heap=HEAP)
    assert out.kind == sim.RESET, out.stderr
    out = dev.run_micropython(BOOT, heap=HEAP)  # v3 fails its self-test: rolls back
    assert out.kind == sim.RESET and "running ota_0 True" in out.stdout, out.stdout + out.stderr
    out = dev.run_micropython(BOOT, heap=HEAP)
    assert out.kind == sim.RETURNED and "running ota_1 False" in out.stdout, out.stdout + out.stderr
    assert "version 2.0.0" in out.stdout
    assert dev.boots == ["ota_0", "ota_0", "ota_1", "ota_1", "ota_0", "ota_1"]


def merged():
    table = partitions.to_binary(partitions.parse_csv(sim.default_partitions_csv()))
    from ota_tool import images

    return images.merged_firmware(images.bootloader_image(), table, V2)


@pytest.mark.parametrize("name,image,kw,reason", [
    ("truncated", V2[:-100], {"length": len(V2)}, "truncated"),
    ("wrong hash", V2, {"sha": "00" * 32}, "hash_mismatch"),
    ("bit flip", V2[:9000] + bytes([V2[9000] ^ 4]) + V2[9001:], {"sha": False}, "bad_image"),
    ("wrong chip", small_app("2.0.0", 2, chip="esp32s3"), {}, "wrong_chip"),
    ("merged firmware.bin", merged(), {}, "not_app_image"),
    ("bigger than the slot", V2, {"length": 0x180000 + 1}, "too_large"),
])
def test_bad_input_changes_nothing(tmp_path, name, image, kw, reason):
    dev = new_device(tmp_path, V1)
    dev.run_micropython("", heap=HEAP)
    before = dev.read(0xD000, 0x2000)
    out = dev.run_micropython(install_code(write(tmp_path, "x.bin", image), image, reset=False, **kw), heap=HEAP)
    assert out.kind == sim.RETURNED, out.stderr
    assert "refused %s" % reason in out.stdout, out.stdout + out.stderr
    assert dev.read(0xD000, 0x2000) == before
    assert dev.boot_only()[0] == "ota_0"


def test_power_cuts_under_micropython(tmp_path):
    """A sample of cut points through install + reboot + confirm, in the MicroPython process."""
    import shutil

    base = new_device(tmp_path, V1, name="base.bin")
    base.run_micropython("", heap=HEAP)
    path = write(tmp_path, "v2.bin", V2)

    def cycle(dev):
        for code in (install_code(path, V2), BOOT):
            out = dev.run_micropython(code, heap=HEAP)
            if out.kind == sim.POWER_CUT:
                return False
            assert out.kind in (sim.RESET, sim.RETURNED), out.stderr
        return True

    probe = sim.Device(str(tmp_path / "probe.bin"))
    shutil.copyfile(base.path, probe.path)
    assert cycle(probe)
    total = probe.ops
    points = sorted(set(range(0, total, max(1, total // 12))) | {total - 1, total - 2, total - 3})
    for cut in points:
        dev = sim.Device(str(tmp_path / "cut.bin"))
        shutil.copyfile(base.path, dev.path)
        dev.arm_power_cut(cut, "torn")
        assert not cycle(dev)
        out = dev.run_micropython(BOOT, heap=HEAP)  # power back: boots a valid image
        assert out.kind == sim.RETURNED and ("version 1.0.0" in out.stdout or "version 2.0.0" in out.stdout), out.stdout + out.stderr
        if "version 2.0.0" not in out.stdout:
            assert cycle(dev)
    assert len(points) >= 10


def test_whole_simulator_runs_inside_micropython(tmp_path):
    # The fake esp32/machine modules and the simulated chip are MicroPython code too.
    dev = new_device(tmp_path, V1)
    out = dev.run_micropython(install_code(write(tmp_path, "v2.bin", V2), V2), heap="512k", local=True)
    assert out.kind == sim.RESET and out.ops > 2 * (SMALL // 4096), out.stderr
    out = dev.run_micropython(BOOT, heap="512k", local=True)
    assert "confirm confirmed" in out.stdout, out.stderr


# see README "Heap": ~35 KB of it is the library's bytecode on this 64-bit port; the image walk's
# load-address check (ota.memmap, issue 14 item 10) loads at its end: 63k before it, 68k with it; 71k
# since the client's kept connection, minimum body rate, handshake and caller deadlines (issues 17, 14),
# where 72k fails (a 3-4 KB block finds no hole: README "Heap") and 74k-80k pass: run at 76k
HTTPS_HEAP = "76k"


def test_https_download_into_the_slot(tmp_path):
    """Issue 4's end to end: a 1.5 MB image from ota-tool serve over real TLS (mbedTLS) straight
    into the simulated device's slot, under MicroPython with a heap limit (HTTPS_HEAP). The
    streaming itself allocates nothing per block; the limit is set by the code loaded as .mpy."""
    from ota_tool import images, server

    big = images.app_image("2.0.0", size=1500 * 1024, seed=2)
    root = tmp_path / "www"
    root.mkdir()
    (root / "app.bin").write_bytes(big)
    srv = server.start_server(str(root), tls_dir=str(tmp_path / "tls"))
    try:
        (tmp_path / "ca.der").write_bytes(srv.ca_der)
        dev = new_device(tmp_path, V1)
        code = """
import gc
gc.collect()  # as main.py does: the garbage of compiling this app goes before the library loads
import ota, binascii
buf = bytearray(4096)
from ota import clock
clock.ensure(["pool.ntp.org"])  # the RTC reads 2000 after power-on: mbedTLS would refuse the certificate
from ota.http import HttpFetcher
f = HttpFetcher(ca=open(%r, "rb").read())
body = f.open(%r, 0, %d)
r = ota.install_image(body, %d, binascii.unhexlify(%r), buf=buf)
body.close()
gc.collect()
print("installed", r["slot"], gc.mem_free())
""" % (str(tmp_path / "ca.der"), srv.url + "app.bin", len(big), len(big), hashlib.sha256(big).hexdigest())
        out = dev.run_micropython(code, heap=HTTPS_HEAP)
        assert out.kind == sim.RETURNED and "installed ota_1" in out.stdout, out.stdout + out.stderr
    finally:
        srv.stop()
    assert dev.slot_image("ota_1", len(big)) == big
    assert dev.boot_only()[0] == "ota_1"

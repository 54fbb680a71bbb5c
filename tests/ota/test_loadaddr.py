"""Issue 14 item 10 (load addresses): an image whose segments the 2nd-stage bootloader would refuse
to load (esp_image_format.c verify_load_addresses / should_load / should_map / verify_segment_header;
the rules and their sources are in lib/ota/memmap.py) is refused by `ota-tool release` and `verify`
and by the device before set_boot(). One test per rule; esptool's parser, which does not check load
addresses, accepts every one of these images (so nothing else would have stopped them)."""
import os

import pytest

from ota import memmap
from ota.appimage import ImageCheck
from ota.errors import OTAError
from ota_tool import images

SEG = b"\xa5" * 64  # one small loaded segment


def image(chip="esp32", extra=(), **kw):
    return images.app_image("2.0.0", size=24 * 1024, chip=chip, seed=3, extra_segments=extra, **kw)


def windows(chip_id):
    """(mapped [(lo, hi)], loadable [(lo, hi, checked)], reserved [(lo, hi)]) of the packed table."""
    out = []
    for v, n in zip(memmap.table(chip_id)[:3], (2, 3, 2)):
        out.append([v[i:i + n] for i in range(0, len(v), n)])
    return out


def device_check(data, chip="esp32"):
    """The device's streaming check (ota.appimage.ImageCheck, as install runs it): None or the reason."""
    c = ImageCheck(len(data), images.CHIPS[chip]["chip_id"])
    try:
        c.feed(memoryview(data))
        c.finish()
    except OTAError as e:
        return e.reason
    return None


def host_check(data):
    from ota_tool import release
    from ota_tool.errors import ToolError

    try:
        release.check_image(data)
    except ToolError as e:
        assert e.message
        return "refused"
    return None


def judged(chip, addr, data=SEG):
    img = image(chip, [(addr, data)])
    esptool_img, problems = images.parse(img, chip)
    assert esptool_img is not None and not problems  # esptool's parser sees nothing wrong
    got = device_check(img, chip)
    assert (host_check(img) == "refused") == (got is not None)  # host and device agree
    return got


@pytest.mark.parametrize("chip", ["esp32", "esp32s2", "esp32s3", "esp32c3"])
def test_loadaddr_standard_layouts_are_accepted(chip):
    assert device_check(image(chip), chip) is None and host_check(image(chip)) is None


@pytest.mark.parametrize("chip,addr", [
    ("esp32", 0x3FFE0000), ("esp32", 0x3FFF0000), ("esp32", 0x3FFFFFC0), ("esp32", 0x3FFE8000),
    ("esp32s2", 0x3FFE6000), ("esp32s3", 0x3FCE3800), ("esp32c3", 0x3FCD6000),
])
def test_loadaddr_bootloader_dram_is_refused(chip, addr):
    """dram_seg of the bootloader (its static data, _dram_start.._dram_end)."""
    assert judged(chip, addr) == "bad_load_address"


@pytest.mark.parametrize("chip,addr", [("esp32", 0x3FFDB000), ("esp32s3", 0x3FCEA000), ("esp32c3", 0x3FCDD000),
                                       ("esp32s2", 0x3FFFD000)])
def test_loadaddr_bootloader_stack_is_refused(chip, addr):
    """SP - STACK_LOAD_HEADROOM (0x8000) .. SOC_ROM_STACK_START."""
    assert judged(chip, addr) == "bad_load_address"


@pytest.mark.parametrize("chip,addr", [("esp32", 0x40078000), ("esp32", 0x4007FFC0), ("esp32s3", 0x403CC000),
                                       ("esp32c3", 0x403D0000), ("esp32s2", 0x40050000)])
def test_loadaddr_loader_iram_is_refused(chip, addr):
    """iram_loader_seg (_loader_text_start.._loader_text_end): the code that loads the app."""
    assert judged(chip, addr) == "bad_load_address"


@pytest.mark.parametrize("chip,addr", [("esp32s3", 0x3FCDC000), ("esp32c3", 0x3FCD0000), ("esp32s2", 0x3FFE0000)])
def test_loadaddr_diram_alias_of_the_loader_is_refused(chip, addr):
    """A DRAM segment outside the bootloader's DRAM whose IRAM view (D/IRAM) overlaps its loader code."""
    reserved = windows(images.CHIPS[chip]["chip_id"])[2]
    assert not any(lo < addr + len(SEG) and addr < hi for lo, hi in reserved)  # not directly
    assert judged(chip, addr) == "bad_load_address"


@pytest.mark.parametrize("chip,addr", [("esp32", 0x40070000), ("esp32", 0x3FF90000), ("esp32", 0x400A0000),
                                       ("esp32", 0x60000000), ("esp32c3", 0x60000000), ("esp32s3", 0x3FD00000),
                                       ("esp32", 0x3FFADFF0)])
def test_loadaddr_outside_ram_is_refused(chip, addr):
    """Neither DRAM nor IRAM nor RTC memory (or straddling an edge): "bad load address range"."""
    assert judged(chip, addr) == "bad_load_address"


@pytest.mark.parametrize("chip,addr", [("esp32", 0x400C0000), ("esp32", 0x3FF80000), ("esp32", 0x50000000),
                                       ("esp32s3", 0x600FE000), ("esp32c3", 0x50000000), ("esp32", 0x3FFC0000),
                                       ("esp32", 0x40090000)])
def test_loadaddr_rtc_and_free_ram_are_accepted(chip, addr):
    assert judged(chip, addr) is None


def test_loadaddr_unloaded_and_mapped_segments():
    assert judged("esp32", 0x00000004) is None  # below 0x10000000: reserved, not loaded
    assert judged("esp32c3", 0x0FFFFFF0) is None
    # a mapped (flash) segment must sit at its address modulo the 64 KiB MMU page
    assert memmap.check_segments(0, [(0x3F410020, 64)], [0x10020]) is None
    with pytest.raises(OTAError) as e:
        memmap.check_segments(0, [(0x3F410020, 64)], [0x10030])
    assert e.value.reason == "bad_load_address"
    memmap.check_segments(0x000C, [(0x3C010020, 64)], [0x10030])  # ESP32-C2: page size configurable, not judged


def test_loadaddr_segment_zero_too_short_for_the_app_descriptor():
    data = bytearray(image())
    # shrink segment 0's length below sizeof(esp_app_desc_t): the walk stops there
    data[24 + 4:24 + 8] = (252).to_bytes(4, "little")
    c = ImageCheck(len(data), 0)
    with pytest.raises(OTAError) as e:
        c.feed(memoryview(bytes(data)))
    assert e.value.reason == "bad_image" and "app descriptor" in e.value.message


def test_loadaddr_windows_agree_with_esptool():
    """Cross-check of the table's windows against esptool's own memory maps (targets/*.py)."""
    import esptool.targets as t

    for chip, rom in (("esp32", t.ESP32ROM), ("esp32s2", t.ESP32S2ROM), ("esp32s3", t.ESP32S3ROM),
                      ("esp32c3", t.ESP32C3ROM), ("esp32c2", t.ESP32C2ROM), ("esp32c6", t.ESP32C6ROM)):
        # (not the P4: esptool 5.6 maps its L2 memory only up to 0x4FFA0000, ESP-IDF's soc.h to 0x4FFC0000)
        mapped, loadable, reserved = windows(rom.IMAGE_CHIP_ID)
        regions = {}
        for lo, hi, name in rom.MEMORY_MAP:
            regions.setdefault(name, []).append((lo, hi))
        assert any(lo <= rom.IROM_MAP_START < hi for lo, hi in mapped), chip
        assert any(lo <= rom.DROM_MAP_START < hi for lo, hi in mapped), chip
        ram = regions.get("DRAM", []) + regions.get("IRAM", []) + regions.get("RTC_DRAM", []) + \
            regions.get("RTC_IRAM", []) + regions.get("RTC_DATA", []) + regions.get("MEM_INTERNAL2", []) + \
            regions.get("CACHE_APP", [])  # the ESP32's APP CPU cache: the loader's IRAM
        for lo, _, checked in loadable:
            if checked:  # DRAM / IRAM windows start inside esptool's RAM regions
                assert any(a <= lo < b for a, b in ram), (chip, hex(lo))
        for lo, _ in reserved:
            assert any(a <= lo < b for a, b in ram), (chip, hex(lo))


def test_loadaddr_release_and_verify_refuse(tmp_path, capsys):
    from ota_tool import cli, keys

    pem = str(tmp_path / "k.pem")
    keys.generate(pem, force=True)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(image(extra=[(0x3FFE0000, SEG)]))
    out = str(tmp_path / "repo")
    assert cli.main(["release", str(bad), "--key", pem, "--version", "2.0.0", "--out", out]) == 1
    err = capsys.readouterr().err
    assert "bootloader" in err and "hint:" in err and not os.path.exists(os.path.join(out, "stable.json"))
    # a repository made without the check (an older ota-tool): verify refuses it
    from ota_tool import release

    real = release.check_image
    release.check_image = lambda data: "esp32"
    try:
        release.build(bad.read_bytes(), "2.0.0", [keys.load_private(pem)], out)
    finally:
        release.check_image = real
    assert cli.main(["verify", os.path.join(out, "stable.json"), "--pubkey", pem + ".pub"]) == 1
    assert "bootloader" in capsys.readouterr().err


@pytest.mark.micropython
def test_loadaddr_device_check_under_micropython(mp, tmp_path):
    cases = {"ok": image(), "dram": image(extra=[(0x3FFF0000, SEG)]), "loader": image(extra=[(0x40078000, SEG)]),
             "rom": image(extra=[(0x40070000, SEG)]), "rtc": image(extra=[(0x400C0000, SEG)])}
    for name, data in cases.items():
        (tmp_path / (name + ".bin")).write_bytes(data)
    out = mp("""
from ota.appimage import ImageCheck
from ota.errors import OTAError
for name in %r:
    with open(%r + "/" + name + ".bin", "rb") as f:
        data = f.read()
    c = ImageCheck(len(data), 0)
    try:
        c.feed(memoryview(data))
        c.finish()
        print(name, "ok")
    except OTAError as e:
        print(name, e.reason)
""" % (list(cases), str(tmp_path)), heap="256k")
    assert out.split("\n")[:5] == ["ok ok", "dram bad_load_address", "loader bad_load_address", "rom bad_load_address",
                                   "rtc ok"]


def test_loadaddr_device_refuses_before_set_boot_and_takes_a_fixed_release(tmp_path, monkeypatch):
    """A release signed without the host check (an older ota-tool, a hand-made manifest): the device
    refuses it while streaming, before set_boot(), keeps running its image, and installs the next
    (fixed) release as usual."""
    from ota_tool import release
    from tests.campaign import world as W

    bad = images.app_image("2.0.0", size=W.SIZE, seed=1, base=W.V1, changes=40, extra_segments=[(0x40078000, SEG)])
    with W.board_offered_v2(tmp_path) as (w, repo, dev):
        with monkeypatch.context() as m:
            m.setattr(release, "check_image", lambda data: "esp32")
            repo.publish(bad, "2.0.0")

        def check():
            a = W.CampaignAgent()
            return a.check_now(reboot=False), a.reason

        assert dev.run(check).value == ("refused", "bad_load_address")
        assert W.running(dev)[:2] == ("1.0.0", "valid")  # nothing was made bootable
        fixed = images.app_image("2.1.0", size=W.SIZE, seed=1, base=W.V1, changes=41)
        repo.publish(fixed, "2.1.0")
        assert dev.run(check).value == ("installed", None)

"""The simulated chip's esp_image_verify, judged against esptool's own image parser."""
import random

import pytest

from espsim import flash as sim_flash
from espsim import image
from ota_tool import images

SLOT = 0x10000


def flash_with(tmp_path, data, size=0x80000):
    path = str(tmp_path / "f.bin")
    sim_flash.create(path, size)
    f = sim_flash.Flash(path)
    f.write(SLOT, data)
    return f


def verdict(f, n, chip="esp32", **kw):
    try:
        image.verify(f, SLOT, n, chip, **kw)
        return True
    except image.ImageInvalid:
        return False


def test_accepts_esptool_images(tmp_path):
    for chip in ("esp32", "esp32s3", "esp32c3"):
        data = images.app_image("1.2.3", size=40 * 1024, chip=chip)
        assert images.parse(data, chip)[1] == []
        f = flash_with(tmp_path, data)
        info = image.verify(f, SLOT, 0x60000, chip)
        assert info.length == len(data) and info.app_desc and info.hash_appended
        f.close()


def test_bit_flips_judged_like_esptool(tmp_path):
    data = images.app_image("1.0.0", size=20 * 1024, seed=5)
    rnd = random.Random(7)
    positions = list(range(0, 64)) + [rnd.randrange(len(data)) for _ in range(150)] + list(range(len(data) - 40, len(data)))
    disagreements = []
    for pos in positions:
        for bit in (0, 7):
            bad = bytearray(data)
            bad[pos] ^= 1 << bit
            _, problems = images.parse(bytes(bad))
            f = flash_with(tmp_path, bytes(bad))
            ours = verdict(f, 0x60000)
            f.close()
            if ours != (not problems) and not (ours is False and _header_only_field(pos)):
                disagreements.append((pos, bit, ours, problems))
    assert not disagreements


def _header_only_field(pos):
    # esptool's parser does not judge flash-mapping alignment or segment lengths beyond the file;
    # the chip does (esp_image_verify) and may refuse more. It must never accept more.
    return pos < 0x40


def test_never_accepts_what_esptool_refuses(tmp_path):
    data = images.app_image("1.0.0", size=16 * 1024, seed=9)
    rnd = random.Random(3)
    for _ in range(200):
        bad = bytearray(data)
        for _ in range(rnd.randrange(1, 4)):
            bad[rnd.randrange(len(bad))] = rnd.randrange(256)
        _, problems = images.parse(bytes(bad))
        f = flash_with(tmp_path, bytes(bad))
        if problems:
            assert not verdict(f, 0x60000)
        f.close()


def test_chip_revision_and_id(tmp_path):
    f = flash_with(tmp_path, images.app_image("1.0.0", size=16 * 1024, min_rev_full=301))
    assert not verdict(f, 0x60000, chip_rev=300)
    assert verdict(f, 0x60000, chip_rev=301)
    f.close()
    f = flash_with(tmp_path, images.app_image("1.0.0", size=16 * 1024, chip="esp32s3"))
    with pytest.raises(image.ImageInvalid, match="mismatch chip ID"):
        image.verify(f, SLOT, 0x60000, "esp32")
    f.close()


def test_image_larger_than_partition(tmp_path):
    data = images.app_image("1.0.0", size=40 * 1024)
    f = flash_with(tmp_path, data)
    with pytest.raises(image.ImageInvalid):
        image.verify(f, SLOT, len(data) - 64, "esp32")
    f.close()


def test_bootloader_refuses_images_that_overwrite_its_ram(tmp_path):
    # A merged firmware.bin written to a slot starts with the 2nd-stage bootloader: its hash and
    # checksum pass (set_boot accepts it) but the bootloader refuses to load it over itself.
    boot = images.bootloader_image()
    f = flash_with(tmp_path, boot)
    assert verdict(f, 0x60000)  # app-side esp_image_verify, as set_boot runs it
    assert not verdict(f, 0x60000, bootloader=True)
    f.close()

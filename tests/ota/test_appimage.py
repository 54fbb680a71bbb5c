"""The device's streaming image check, judged against esptool's parser."""
import random

import pytest

from ota.appimage import ImageCheck, check_header
from ota.errors import OTAError
from ota_tool import images, partitions


def feed(data, length=None, step=4096, chip=0):
    c = ImageCheck(len(data) if length is None else length, chip)
    mv = memoryview(data)
    for i in range(0, len(data), step):
        c.feed(mv[i:i + step])
    c.finish()
    return c


@pytest.mark.parametrize("step", [1, 3, 16, 4096, 1 << 20])
def test_valid_image_in_any_piece_size(step):
    data = images.app_image("1.0.0", size=30 * 1024)
    c = feed(data, step=step)
    assert c.length == len(data)
    img, _ = images.parse(data)
    assert [n for _, n in c.segments] == [len(s.data) for s in img.segments]


def test_agrees_with_esptool_on_mutations():
    data = images.app_image("1.0.0", size=12 * 1024, seed=4)
    rnd = random.Random(11)
    for _ in range(400):
        bad = bytearray(data)
        for _ in range(rnd.randrange(1, 3)):
            bad[rnd.randrange(len(bad))] ^= 1 << rnd.randrange(8)
        _, problems = images.parse(bytes(bad))
        try:
            feed(bytes(bad))
            ours = True
        except OTAError:
            ours = False
        # every byte is covered by the appended SHA-256: each mutation is refused, by both
        assert ours is False
        assert problems


def test_truncations_and_extensions():
    data = images.app_image("1.0.0", size=12 * 1024, seed=2)
    for cut in (1, 23, 24, 35, 36, 100, len(data) // 2, len(data) - 33, len(data) - 1):
        with pytest.raises(OTAError) as e:
            feed(data[:cut])
        assert e.value.reason in ("truncated", "bad_image")
    with pytest.raises(OTAError) as e:
        feed(data + b"\x00" * 16)
    assert e.value.reason == "length_mismatch"
    with pytest.raises(OTAError) as e:
        feed(data, length=len(data) + 100)
    assert e.value.reason == "length_mismatch"


def test_wrong_chip():
    data = images.app_image("1.0.0", size=12 * 1024, chip="esp32s3")
    with pytest.raises(OTAError) as e:
        feed(data, chip=0)
    assert e.value.reason == "wrong_chip" and "ESP32-S3" in e.value.message


def test_merged_firmware_names_the_right_file():
    app = images.app_image("1.0.0", size=12 * 1024)
    table = partitions.to_binary(partitions.parse_csv("nvs,data,nvs,0x9000,0x4000\notadata,data,ota,0xd000,0x2000\n"
                                                      "ota_0,app,ota_0,0x10000,0x180000\nota_1,app,ota_1,0x190000,0x180000\n"))
    merged = images.merged_firmware(images.bootloader_image(), table, app)
    with pytest.raises(OTAError) as e:
        feed(merged)
    assert e.value.reason == "not_app_image"
    assert "micropython.bin" in e.value.message and "firmware.bin" in e.value.message


def test_header_checks():
    data = bytearray(images.app_image("1.0.0", size=12 * 1024))
    assert check_header(data[:0x24], 0)[0] == data[1]
    for pos, value, reason in ((0, 0x00, "bad_image"), (1, 0, "bad_image"), (1, 17, "bad_image"),
                               (23, 2, "bad_image"), (0x20, 0, "not_app_image")):
        bad = bytearray(data)
        bad[pos] = value
        with pytest.raises(OTAError) as e:
            check_header(bad[:0x24], 0)
        assert e.value.reason == reason
    with pytest.raises(OTAError):
        check_header(b"\xaa\x50" + bytes(40), 0)


def test_walk_in_place_finds_the_end():
    data = images.app_image("1.0.0", size=12 * 1024)
    c = ImageCheck(None, 0)
    padded = data + b"\xff" * (4096 - len(data) % 4096)
    mv = memoryview(padded)
    for i in range(0, len(padded), 4096):
        if c.done:
            break
        c.feed(mv[i:i + 4096])
    c.finish()
    assert c.length == len(data)

import pytest

from espsim import flash


@pytest.fixture
def f(tmp_path):
    path = tmp_path / "f.bin"
    flash.create(str(path), 64 * 1024)
    fl = flash.Flash(str(path))
    yield fl
    fl.close()


def test_new_flash_is_erased(f):
    assert f.read(0, 4096) == b"\xff" * 4096


def test_program_only_clears_bits(f):
    f.write(100, b"\x0f\xf0")
    f.write(100, b"\xf3\x3f")
    assert f.read(100, 2) == bytes([0x0F & 0xF3, 0xF0 & 0x3F])
    f.erase(0, 4096)
    assert f.read(100, 2) == b"\xff\xff"


def test_erase_must_be_sector_aligned(f):
    with pytest.raises(flash.FlashError):
        f.erase(100, 4096)
    with pytest.raises(flash.FlashError):
        f.read(64 * 1024 - 1, 2)


def test_power_cut_before_leaves_nothing(tmp_path):
    path = str(tmp_path / "c.bin")
    flash.create(path, 8192)
    fl = flash.Flash(path, cut_at=1)
    fl.write(0, b"\x00" * 16)  # op 0 completes
    with pytest.raises(flash.PowerCut):
        fl.write(16, b"\x00" * 16)  # op 1: power fails first
    fl.close()
    data = flash.Flash(path).read(0, 32)
    assert data == b"\x00" * 16 + b"\xff" * 16


def test_torn_program_and_erase(tmp_path):
    path = str(tmp_path / "t.bin")
    flash.create(path, 8192)
    fl = flash.Flash(path, cut_at=0, cut_mode=flash.CUT_TORN)
    with pytest.raises(flash.PowerCut):
        fl.write(0, b"\x00" * 32)
    assert fl.read(0, 32) == b"\x00" * 16 + b"\xff" * 16
    fl.close()
    fl = flash.Flash(path, cut_at=0, cut_mode=flash.CUT_TORN)
    with pytest.raises(flash.PowerCut):
        fl.erase(0, 4096)
    assert fl.read(0, 32) == b"\xff" * 32  # first half erased
    fl.close()
    fl = flash.Flash(path)
    fl.write(4000, b"\x00" * 16)
    fl.close()
    fl = flash.Flash(path, cut_at=0, cut_mode=flash.CUT_TORN)
    with pytest.raises(flash.PowerCut):
        fl.erase(0, 4096)
    assert fl.read(4000, 16) == b"\x00" * 16  # second half kept its old bits
    fl.close()


def test_powercut_is_not_an_exception():
    # device code's `except Exception` must never swallow a simulated power cut
    assert not issubclass(flash.PowerCut, Exception)

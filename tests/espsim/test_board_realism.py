"""What a real ESP32 does that the simulator once did not (issue 15): the RTC at 2000 after power-on,
the ESP-IDF heap and its never-freed NVS handles, the deep-sleep wake path, MicroPython version
and bootloader profiles, the ESP32's error forms, and the flash timing model. Each test here failed
against the earlier simulator."""
import pytest

from espsim import board as sim_board
from espsim import flashtiming, idfheap, otadata, profiles, sntp
from ota_tool import sim
from tests.espsim.test_bootloader import entries, put_image, write_entry
from tests.simhelpers import new_device, small_app

Y2K = 946684800


def rtc_and_cause():
    import calendar

    import machine

    y, mo, d, _, h, mi, s, _ = machine.RTC().datetime()
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)), machine.reset_cause()


def set_clock_then(after):
    def app():
        import machine
        import ntptime

        ntptime.settime()  # the simulated LAN's time server
        if after == "reset":
            machine.reset()
        machine.deepsleep(1000)

    return app


@pytest.mark.parametrize("after, kept", [("reset", True), ("deepsleep", True)])
def test_rtc_starts_at_2000_and_survives_reset_and_deep_sleep_not_power_off(tmp_path, after, kept):
    dev = new_device(tmp_path)
    t, cause = dev.run(rtc_and_cause).value
    assert Y2K <= t < Y2K + 60 and cause == 1  # power-on: 2000-01-01, PWRON_RESET
    out = dev.run(set_clock_then(after))
    assert out.kind == (sim.RESET if after == "reset" else sim.DEEP_SLEEP)
    t, cause = dev.run(rtc_and_cause).value
    assert t > 1704067200  # set by NTP, kept
    assert cause == (2 if after == "reset" else 4)  # HARD_RESET / DEEPSLEEP_RESET
    t, cause = dev.run(rtc_and_cause).value  # that run returned: the board was switched off
    assert t < Y2K + 60 and cause == 1


def test_ntp_unreachable_is_an_esp32_timeout(tmp_path, monkeypatch):
    monkeypatch.setenv(sntp.ENV, "off")
    dev = new_device(tmp_path)

    def app():
        import ntptime

        ntptime.timeout = 0.2
        try:
            ntptime.settime()
        except OSError as e:
            return e.args[0]

    assert dev.run(app).value == 116  # newlib's ETIMEDOUT, as the ESP32 port raises it


def test_idf_heap_budget_and_nvs_handles_never_freed(tmp_path):
    heap = idfheap.IdfHeap()
    free = sum(r[1] for r in heap.info())
    assert 50000 < free < 56000 and 48000 < heap.largest_free() < 52000  # ESP32_GENERIC, Wi-Fi up
    dev = new_device(tmp_path)

    def app():
        import esp32

        from espsim import chip

        before = sum(r[1] for r in esp32.idf_heap_info(esp32.HEAP_DATA))
        for _ in range(100):
            esp32.NVS("ota")  # each one an nvs_open, never closed
        after = sum(r[1] for r in esp32.idf_heap_info(esp32.HEAP_DATA))
        held = chip.get().idf_held("nvs_handle")
        n = 0
        try:
            while True:
                esp32.NVS("ota")
                n += 1
        except OSError as e:
            return before - after, held, n, e.args
    lost, held, more, err = dev.run(app).value
    assert held == 100 and 5000 <= lost <= 7000  # two allocations of ~30 bytes per handle
    assert 700 < more < 1000  # the rest of the heap goes the same way
    assert err == (12, "ESP_ERR_NO_MEM")  # check_esp_err's form: (ENOMEM, esp_err_to_name)
    assert dev.run(lambda: __import__("espsim.chip").chip.get().idf_held("nvs_handle")).value == 0  # a reboot frees


def test_one_tls_session_fits_the_c_heap_two_do_not(tmp_path):
    dev = new_device(tmp_path)

    def app():
        import simnet

        a, b = object(), object()
        simnet.opened(a)
        simnet.tls(a)
        simnet.opened(b)
        try:
            simnet.tls(b)
            second = "fits"
        except OSError as e:
            second = e.args[0]
        simnet.closed(a)
        simnet.tls(b)  # the first one closed: room again
        simnet.closed(b)
        return second

    assert dev.run(app).value == 12


def test_deep_sleep_wake_skips_the_bootloaders_choice(tmp_path):
    dev = new_device(tmp_path)
    put_image(dev, "ota_1", small_app("2.0.0"))
    write_entry(dev, 0, 1, otadata.VALID)
    write_entry(dev, 1, 2, otadata.NEW)  # set_boot(ota_1) done, reboot=False
    dev.wake_from = "ota_0"  # the board deep-slept while ota_0 ran
    label, log = dev.boot_only()
    assert label == "ota_0" and entries(dev)[1].state == otadata.NEW  # not applied, not touched
    assert any("wake from deep sleep" in m for m in log)
    dev.wake_from = None
    assert dev.boot_only()[0] == "ota_1"  # a reset applies it
    dev.wake_from = "ota_1"
    assert dev.boot_only()[0] == "ota_1" and entries(dev)[1].state == otadata.PENDING_VERIFY  # never ABORTED
    dev.wake_from = None
    assert dev.boot_only()[0] == "ota_0" and entries(dev)[1].state == otadata.ABORTED  # a reset rolls back


def test_old_bootloader_leaves_new_entries_new(tmp_path):
    # a board flashed before v1.21 keeps a bootloader without app rollback; the firmware (>= 1.21)
    # still writes NEW (esp_ota_ops.c set_new_state_otadata): the app sees NEW at run time
    dev = new_device(tmp_path, rollback=False)
    img = small_app("2.0.0")

    def install():
        import io

        import ota

        ota.install_image(io.BytesIO(img), len(img))

    dev.run(install)
    assert entries(dev)[1].state == otadata.NEW
    for _ in range(2):
        assert dev.boot_only()[0] == "ota_1"
        assert entries(dev)[1].state == otadata.NEW


@pytest.mark.parametrize("version, has_vfs", [("1.23", False), ("1.25.0", False), ("1.26", True), ("1.28", True)])
def test_vfs_partition_appears_from_1_26(tmp_path, version, has_vfs):
    dev = new_device(tmp_path, micropython=version)
    b = sim_board.Board(dev.path)
    assert b.micropython == version
    b.close()

    def app():
        import esp32

        return [p.info()[4] for p in esp32.Partition.find(esp32.Partition.TYPE_DATA)]

    assert ("vfs" in dev.run(app).value) == has_vfs


def test_version_profiles():
    assert not profiles.viper("1.23", "esp32c3") and profiles.viper("1.24", "esp32c3")
    assert profiles.viper("1.23", "esp32") and profiles.profile("1.29")["vfs_auto"]
    with pytest.raises(ValueError):
        profiles.profile("1.22")


def test_flash_timing_model(tmp_path):
    dev = new_device(tmp_path)
    dev.flash_timing = flashtiming.FlashTiming()

    def app():
        import esp32

        since = dev.flash_timing.snapshot()  # after the filesystem mount
        p = esp32.Partition("ota_1")
        p.writeblocks(0, bytearray(8192))  # 2 sectors erased, 32 pages programmed
        p.readblocks(0, bytearray(4096))
        return since

    t = dev.flash_timing.ms(dev.run(app).value)
    assert t["erase"] == 2 * 45.0 and t["program"] == pytest.approx(32 * 0.4)
    assert t["read"] >= 4096 / flashtiming.READ_BYTES_PER_MS


NVS_OFFSET, NVS_SIZE = 0x9000, 0x4000  # partitions.csv


def _newer_nvs_format(dev):
    # An NVS partition a newer ESP-IDF wrote: page 0's header says format 0xFD (this IDF: 0xFE).
    import binascii
    import struct

    hdr = bytearray(b"\xff" * 32)
    struct.pack_into("<IIB", hdr, 0, 0xFFFFFFFC, 0, 0xFD)
    struct.pack_into("<I", hdr, 28, binascii.crc32(bytes(hdr[4:28]), 0xFFFFFFFF))
    with open(dev.path, "r+b") as f:
        f.seek(NVS_OFFSET)
        f.write(b"\xff" * NVS_SIZE)
        f.seek(NVS_OFFSET)
        f.write(hdr)


def _nvs_round_trip():
    import esp32

    n = esp32.NVS("t")
    n.set_i32("k", 7)
    n.commit()
    return n.get_i32("k")


def test_nvs_is_initialised_at_boot_before_the_app(tmp_path):
    # MicroPython runs nvs_flash_init() before any Python (ports/esp32/main.c, boardctrl_startup:
    # erase and init again on NEW_VERSION_FOUND/NO_FREE_PAGES): the partition is erased at boot,
    # under an app that never touches NVS too, and its load is not the app's first NVS call's time.
    dev = new_device(tmp_path)
    _newer_nvs_format(dev)
    assert dev.run(lambda: None).kind == sim.RETURNED
    assert dev.read(NVS_OFFSET + 8, 1) != b"\xfd"  # erased at that boot
    assert dev.run(_nvs_round_trip).value == 7


def test_power_cut_during_the_boot_time_nvs_erase(tmp_path):
    # A cut before or during each flash operation of that erase (and of the page the fresh NVS
    # starts): the next boot erases again and the app's NVS works.
    from espsim import flash as sim_flash

    dev = new_device(tmp_path)
    cuts = 0
    for mode in (sim_flash.CUT_BEFORE, sim_flash.CUT_TORN):
        for n in range(8):
            _newer_nvs_format(dev)
            dev.arm_power_cut(n, mode)
            out = dev.run(lambda: "ran")
            if out.kind == sim.RETURNED:
                assert n >= 1  # past the erase's last operation
                break
            assert out.kind == sim.POWER_CUT
            cuts += 1
            assert dev.run(_nvs_round_trip).value == 7
    assert cuts >= 2

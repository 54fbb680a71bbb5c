# What differs between the MicroPython releases this project supports, as far as an update sees
# it (read in the MicroPython sources at each release tag):
#   vfs_auto     the firmware registers a "vfs" filesystem partition by itself, from the end of the
#                last partition to the end of flash, when the table has none (ports/esp32/main.c
#                boardctrl_startup, from v1.26.0: commit 2a0e2b5782 "esp32/main: Auto detect the
#                size of flash and auto create vfs partition"). Before, a table without a "vfs" row
#                leaves the board without a filesystem.
#   viper_riscv  the native/viper emitters exist on RISC-V chips (ESP32-C3, C6): MICROPY_EMIT_RV32 in
#                ports/esp32/mpconfigport.h from v1.24.0. On Xtensa chips (ESP32, S2, S3) they exist
#                in every supported release.
#   app_rollback the firmware is built with CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE
#                (ports/esp32/boards/sdkconfig.base since v1.21), so esp_ota_set_boot_partition
#                writes a NEW otadata entry (esp_ota_ops.c set_new_state_otadata); the bootloader
#                flashed with the board may still predate it (the "rollback" bootloader setting).
PROFILES = {
    "1.23": {"vfs_auto": False, "viper_riscv": False, "app_rollback": True},
    "1.24": {"vfs_auto": False, "viper_riscv": True, "app_rollback": True},
    "1.25": {"vfs_auto": False, "viper_riscv": True, "app_rollback": True},
    "1.26": {"vfs_auto": True, "viper_riscv": True, "app_rollback": True},
}
DEFAULT = "1.28"
RISCV_CHIPS = ("esp32c3", "esp32c6", "esp32h2", "esp32c2", "esp32p4")


def profile(version):
    """The profile of MicroPython `version` ("1.24", "1.24.1", "1.28"...): releases from 1.26 on
    behave as 1.26 here."""
    parts = str(version).split(".")
    key = "%s.%s" % (parts[0], parts[1]) if len(parts) > 1 else str(version)
    if key in PROFILES:
        return PROFILES[key]
    if tuple(int(x) for x in key.split(".")) > (1, 26):
        return PROFILES["1.26"]
    raise ValueError("MicroPython %s is not supported (1.23 or later)" % version)


def viper(version, chip):
    return chip not in RISCV_CHIPS or profile(version)["viper_riscv"]

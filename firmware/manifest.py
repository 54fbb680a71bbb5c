# Frozen into the ESP32_OTA firmware (MICROPY_FROZEN_MANIFEST of boards/ESP32_OTA): everything the
# stock ESP32 firmware freezes, plus the OTA device library. Paths are relative to this file.
# A frozen `ota` comes before /lib on sys.path, so it is updated with the firmware (over the air),
# not by copying files: `ota-tool deploy` warns when the board imports the frozen copy.
include("$(PORT_DIR)/boards/manifest.py")

package("ota", base_path="../lib")

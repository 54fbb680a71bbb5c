// ESP32 with signed, fail-safe OTA updates (this project's board; see firmware/README.md).
// Both can be set by a variant's mpconfigvariant_*.cmake.

#ifndef MICROPY_HW_BOARD_NAME
#define MICROPY_HW_BOARD_NAME "ESP32 module with signed OTA"
#endif

#ifndef MICROPY_HW_MCU_NAME
#define MICROPY_HW_MCU_NAME "ESP32"
#endif

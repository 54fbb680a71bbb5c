# ESP32 (4 MiB flash) with signed, fail-safe OTA updates. MicroPython's ESP32_GENERIC plus:
#  - this project's partition table (../../../partitions.csv: two 1.5 MiB OTA slots), or with the
#    FACTORY variant ../../partitions-factory.csv (factory + ota_0 + ota_1);
#  - the bootloader's app rollback kept on (sdkconfig.board);
#  - the firmware version written into the app descriptor (esp_app_desc_t.version), which
#    MicroPython leaves blank by default;
#  - lib/ota frozen into the firmware (../../manifest.py).
# Build with firmware/build.sh (firmware/README.md), or from ports/esp32 of a MicroPython checkout:
#   make BOARD_DIR=<this folder> CMAKE_ARGS=-DOTA_FIRMWARE_VERSION=1.2.3

get_filename_component(OTA_REPO_DIR ${MICROPY_BOARD_DIR}/../../.. ABSOLUTE)

# The version: -DOTA_FIRMWARE_VERSION=... or the environment variable of that name. ESP-IDF takes
# PROJECT_VER (set before project(), which ports/esp32/CMakeLists.txt calls after including us).
if(NOT OTA_FIRMWARE_VERSION AND DEFINED ENV{OTA_FIRMWARE_VERSION})
    set(OTA_FIRMWARE_VERSION $ENV{OTA_FIRMWARE_VERSION})
endif()
if(NOT OTA_FIRMWARE_VERSION)
    message(WARNING "OTA_FIRMWARE_VERSION not set: the app descriptor says 0.0.0-dev")
    set(OTA_FIRMWARE_VERSION "0.0.0-dev")
endif()
string(LENGTH "${OTA_FIRMWARE_VERSION}" _ota_ver_len)
if(_ota_ver_len GREATER 31)
    message(FATAL_ERROR "OTA_FIRMWARE_VERSION '${OTA_FIRMWARE_VERSION}' is longer than the 31 characters of esp_app_desc_t.version")
endif()
set(PROJECT_VER "${OTA_FIRMWARE_VERSION}")

# The partition table: -DOTA_PARTITIONS=<csv> or the environment variable; default by variant.
if(NOT OTA_PARTITIONS AND DEFINED ENV{OTA_PARTITIONS})
    set(OTA_PARTITIONS $ENV{OTA_PARTITIONS})
endif()
if(NOT OTA_PARTITIONS)
    if(MICROPY_BOARD_VARIANT STREQUAL "FACTORY")
        set(OTA_PARTITIONS ${OTA_REPO_DIR}/firmware/partitions-factory.csv)
    else()
        set(OTA_PARTITIONS ${OTA_REPO_DIR}/partitions.csv)
    endif()
endif()
get_filename_component(OTA_PARTITIONS ${OTA_PARTITIONS} ABSOLUTE BASE_DIR ${OTA_REPO_DIR})
if(NOT EXISTS ${OTA_PARTITIONS})
    message(FATAL_ERROR "partition table ${OTA_PARTITIONS} not found")
endif()

# sdkconfig files cannot name a path relative to this board, so the table's absolute path goes
# into a fragment generated in the build folder, applied last.
set(OTA_SDKCONFIG_TABLE ${CMAKE_BINARY_DIR}/sdkconfig.ota_table)
file(WRITE ${OTA_SDKCONFIG_TABLE}
    "CONFIG_PARTITION_TABLE_CUSTOM=y\nCONFIG_PARTITION_TABLE_CUSTOM_FILENAME=\"${OTA_PARTITIONS}\"\n")

set(SDKCONFIG_DEFAULTS
    boards/sdkconfig.base
    ${SDKCONFIG_IDF_VERSION_SPECIFIC}
    boards/sdkconfig.ble
    ${MICROPY_BOARD_DIR}/sdkconfig.board
    ${OTA_SDKCONFIG_TABLE}
)

set(MICROPY_FROZEN_MANIFEST ${OTA_REPO_DIR}/firmware/manifest.py)

message(STATUS "ESP32_OTA: version ${OTA_FIRMWARE_VERSION}, partitions ${OTA_PARTITIONS}")

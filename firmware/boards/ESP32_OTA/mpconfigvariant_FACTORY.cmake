# For firmware/partitions-factory.csv (factory + ota_0 + ota_1, 1.25 MiB each): the image has to
# be smaller, so this variant drops BLE and the LAN/SPI Ethernet drivers and optimises for size,
# as ESP32_GENERIC's D2WD variant does to fit its 1.06 MiB partition.
list(APPEND SDKCONFIG_DEFAULTS
    ${MICROPY_BOARD_DIR}/sdkconfig.factory
)

list(APPEND MICROPY_DEF_BOARD
    MICROPY_HW_BOARD_NAME="ESP32 module with signed OTA (factory layout)"
    MICROPY_OPT_COMPUTED_GOTO=0
    MICROPY_PY_NETWORK_LAN=0
    MICROPY_PY_BLUETOOTH=0
)

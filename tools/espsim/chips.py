# What the simulator needs to know about each chip: its image chip_id, the flash-mapped address
# windows (esp_image_format.c should_map) and, for the ESP32, the RAM the 2nd-stage bootloader
# itself occupies (verify_load_addresses refuses segments that would overwrite it).
# Values from ESP-IDF soc.h / bootloader.ld and esptool's target definitions.

CHIPS = {
    "esp32": {
        "chip_id": 0x0000,
        "irom": (0x400D0000, 0x40400000),
        "drom": (0x3F400000, 0x3F800000),
        "bootloader_offset": 0x1000,
        # bootloader data + stack (0x3FFE0000..) and its loader text in IRAM (0x40078000..)
        "bootloader_ram": ((0x3FFE0000, 0x40000000), (0x40078000, 0x40080000)),
    },
    "esp32s2": {"chip_id": 0x0002, "irom": (0x40080000, 0x40B80000), "drom": (0x3F000000, 0x3F3F0000),
                "bootloader_offset": 0x1000, "bootloader_ram": ()},
    "esp32s3": {"chip_id": 0x0009, "irom": (0x42000000, 0x44000000), "drom": (0x3C000000, 0x3E000000),
                "bootloader_offset": 0x0, "bootloader_ram": ()},
    "esp32c3": {"chip_id": 0x0005, "irom": (0x42000000, 0x42800000), "drom": (0x3C000000, 0x3C800000),
                "bootloader_offset": 0x0, "bootloader_ram": ()},
}


def by_id(chip_id):
    for name, c in CHIPS.items():
        if c["chip_id"] == chip_id:
            return name
    return None

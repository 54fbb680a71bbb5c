"""A simulated ESP32 for running the `ota` device library without a board.

Everything here mirrors the chip and ESP-IDF side of an update, written from the ESP-IDF sources
(esp_partition, esp_ota_ops.c, esp_image_format.c, bootloader_utility.c) and independent of the
device library it judges. It runs under CPython and under the MicroPython unix port, so the same
device code can be exercised on both.

One simulated device is ONE flash image file (4 MiB by default), laid out like a real one:
bootloader at 0x1000, partition table at 0x8000, then the partitions.
"""

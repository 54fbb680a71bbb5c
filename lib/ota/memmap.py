# Where each chip's 2nd-stage bootloader lets an app image's segments load, so that an image the
# bootloader would refuse at boot is refused before it is signed (ota-tool release / verify) and
# before set_boot() on the device. set_boot() cannot catch it: esp_ota_set_boot_partition() runs
# esp_image_verify() in the app, and verify_load_addresses() is compiled only into the bootloader
# (#ifdef BOOTLOADER_BUILD). Rules of ESP-IDF's bootloader_support/src/esp_image_format.c:
#   should_map():  a segment in the chip's IROM/DROM window (and, on the P4, external RAM:
#                  SOC_MMU_PER_EXT_MEM_TARGET) is mapped from flash, not loaded; verify_segment_header()
#                  (app and bootloader) wants its flash offset and address equal modulo the MMU
#                  page, 64 KiB where the page size is fixed (not SOC_MMU_PAGE_SIZE_CONFIGURABLE).
#   should_load(): an address below 0x10000000 is a reserved (padding) segment: not loaded.
#   verify_load_addresses(), on every loaded segment of non-zero length: it must lie wholly in
#                  DRAM or in IRAM (esp_ptr_in_dram/iram: SOC_DRAM_*/SOC_IRAM_*), or in RTC fast
#                  or slow memory or the P4's SPM (accepted as they are); otherwise "bad load address
#                  range". In DRAM it must not overlap the bootloader's stack (SP - STACK_LOAD_HEADROOM
#                  0x8000 up to SOC_ROM_STACK_START) or its static data (_dram_start.._dram_end); in
#                  IRAM not its "loader" code (_loader_text_start.._loader_text_end); and the same
#                  checks apply to the other bus's view of D/IRAM (SOC_DIRAM_*, esp_ptr_diram_*_to_*).
# The bootloader's own data and loader code move with its build, and the bootloader is never
# updated over the air, so the reserved regions below are the union over ESP-IDF v5.0..v6.x
# (bootloader/subproject/main/ld/<chip>/bootloader.ld[.memory.ld.in]: dram_seg and
# iram_loader_seg), and the stack region reaches 0x2000 (the linker's bootloader_stack_overhead)
# below SOC_ROM_STACK_START - 0x8000 for the stack the bootloader itself uses. The windows are
# soc/<chip>/include/soc/soc.h; where versions differ, the narrower one (the ESP32's SOC_IRAM_HIGH
# is 0x400A0000 in v5.0). ESP32: the reserved DRAM also spans the ROM's own data between stack and
# dram_seg, 0x3FFE0000-0x40000000 as a whole.
from .errors import OTAError

# Per chip (image chip id): the words of each part, hex, "|" between parts:
#   mapped windows (lo hi ...) | loadable windows (lo hi judged ...: 0 = RTC memory or SPM, loaded
#   as it is) | reserved regions (lo hi ...) | D/IRAM (dram_lo dram_hi iram_lo iram_hi) | flags:
#   "a" mapped segments' 64 KiB page alignment judged (fixed MMU page), "i" D/IRAM in reverse order.
# Text, parsed for the one chip in hand: compact in the heap of a 32-bit port, where these
# addresses (above 2**30) would each be an object.
CHIPS = {
    0x0000: "400D0000 40400000 3F400000 3F800000"  # ESP32
            "|3FFAE000 40000000 1 40080000 400A0000 1 400C0000 400C2000 0 3FF80000 3FF82000 0 50000000 50002000 0"
            "|3FFD9F20 40000000 40078000 40080000|3FFE0000 40000000 400A0000 400C0000|ai",
    0x0002: "40080000 40800000 3F000000 3FF80000"  # ESP32-S2
            "|3FFB0000 40000000 1 40020000 40070000 1 40070000 40072000 0 3FF9E000 3FFA0000 0 50000000 50002000 0"
            "|3FFF470C 3FFFE70C 3FFE5000 3FFEAB00 4004E000 40056000|3FFB0000 40000000 40020000 40070000|a",
    0x0009: "42000000 44000000 3C000000 3E000000"  # ESP32-S3
            "|3FC88000 3FD00000 1 40370000 403E0000 1 600FE000 60100000 0 50000000 50002000 0"
            "|3FCE1710 3FCEB710 403CB700 403D3700|3FC88000 3FCF0000 40378000 403E0000|a",
    0x0005: "42000000 42800000 3C000000 3C800000"  # ESP32-C3
            "|3FC80000 3FCE0000 1 4037C000 403E0000 1 50000000 50002000 0"
            "|3FCD4710 3FCDE710 403CE710 403D5710|3FC80000 3FCE0000 40380000 403E0000|a",
    0x000C: "42000000 42400000 3C000000 3C400000"  # ESP32-C2 (MMU page size configurable)
            "|3FCA0000 3FCE0000 1 4037C000 403C0000 1"
            "|3FCD4B70 3FCDEB70 403AEB70 403B5B70|3FCA0000 3FCE0000 40380000 403C0000|",
    0x000D: "42000000 43000000"  # ESP32-C6: one address space (MMU page size configurable)
            "|40800000 40880000 1 50000000 50004000 0|4086E610 4087E610||",
    0x0010: "42000000 43000000"  # ESP32-H2 (MMU page size configurable)
            "|40800000 40850000 1 50000000 50001000 0|4083EFD0 4084F380||",
    0x0012: "40000000 44000000 48000000 4C000000"  # ESP32-P4 (with its PSRAM window)
            "|4FF00000 4FFC0000 1 50108000 50110000 0 30100000 30102000 0"
            "|4FF2BBD0 4FF3CFC0 4FFADFC0 4FFBCFC0||a",
}


def table(chip_id):
    """(mapped, loadable, reserved, diram, flags) of a chip: lists of ints and the flags text;
    None for a chip this table does not know."""
    t = CHIPS.get(chip_id)
    if t is None:
        return None
    parts = t.split("|")
    return [[int(w, 16) for w in p.split()] for p in parts[:4]] + [parts[4]]


def _hits(pairs, lo, hi):
    for i in range(0, len(pairs), 2):
        if lo < pairs[i + 1] and pairs[i] < hi:
            return True
    return False


def check_segments(chip_id, segments, offsets):
    """Raise OTAError("bad_load_address") when the bootloader of chip `chip_id` would refuse to
    load one of `segments` [(load_addr, data_len)], whose data start at `offsets` in the image."""
    t = table(chip_id)
    if t is None:
        return  # an unknown chip is refused elsewhere (wrong_chip)
    mapped, loadable, reserved, diram, flags = t
    for index in range(len(segments)):
        load_addr, data_len = segments[index]
        end = load_addr + data_len
        if not data_len:
            continue  # zero-length segments are fine
        if _hits(mapped, load_addr, load_addr + 1):
            if "a" in flags and (offsets[index] - load_addr) % 0x10000:
                raise OTAError("bad_load_address", "segment %d at 0x%08x: not at its flash offset 0x%x modulo the "
                               "64 KiB MMU page" % (index, load_addr, offsets[index]))
            continue
        if load_addr < 0x10000000:
            continue  # reserved for segments that are not loaded (padding)
        for i in range(0, len(loadable), 3):
            if loadable[i] <= load_addr and end <= loadable[i + 1]:
                bad = loadable[i + 2] and _hits(reserved, load_addr, end)
                if loadable[i + 2] and diram and not bad:  # the other bus's view of its part in D/IRAM
                    for a, b, x in ((diram[0], diram[1], diram[2]), (diram[2], diram[3], diram[0])):
                        s, e = max(load_addr, a), min(end, b)
                        if s < e:
                            s, e = (x + b - e, x + b - s) if "i" in flags else (x + s - a, x + e - a)
                            bad = _hits(reserved, s, e)
                            break
                if bad:
                    raise OTAError("bad_load_address", "segment %d (0x%08x-0x%08x) overlaps the RAM the 2nd-stage "
                                   "bootloader itself uses: it would refuse to boot this image" % (index, load_addr, end))
                break
        else:
            raise OTAError("bad_load_address", "segment %d (0x%08x-0x%08x) is not in this chip's DRAM, IRAM or RTC "
                           "memory: the bootloader would refuse to load it" % (index, load_addr, end))

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
import struct

from .errors import OTAError


def _u32(*values):
    # Addresses above 2**30 are heap objects on a 32-bit port: the table is kept as packed bytes,
    # and read (struct.unpack_from) only for the chip and segments in hand.
    return struct.pack("<%dI" % len(values), *values)


# chip_id: (mapped windows, loadable windows (lo, hi, checked), reserved regions,
#           D/IRAM (dram_lo, dram_hi, iram_lo, iram_hi, inverted) or None, 64 KiB page alignment checked)
_ESP32 = (_u32(0x400D0000, 0x40400000, 0x3F400000, 0x3F800000),
          _u32(0x3FFAE000, 0x40000000, 1, 0x40080000, 0x400A0000, 1,
           0x400C0000, 0x400C2000, 0, 0x3FF80000, 0x3FF82000, 0, 0x50000000, 0x50002000, 0),
          _u32(0x3FFD9F20, 0x40000000, 0x40078000, 0x40080000),
          _u32(0x3FFE0000, 0x40000000, 0x400A0000, 0x400C0000, 1),
          1)
_S2 = (_u32(0x40080000, 0x40800000, 0x3F000000, 0x3FF80000),
       _u32(0x3FFB0000, 0x40000000, 1, 0x40020000, 0x40070000, 1,
        0x40070000, 0x40072000, 0, 0x3FF9E000, 0x3FFA0000, 0, 0x50000000, 0x50002000, 0),
       _u32(0x3FFF470C, 0x3FFFE70C, 0x3FFE5000, 0x3FFEAB00, 0x4004E000, 0x40056000),
       _u32(0x3FFB0000, 0x40000000, 0x40020000, 0x40070000, 0),
       1)
_S3 = (_u32(0x42000000, 0x44000000, 0x3C000000, 0x3E000000),
       _u32(0x3FC88000, 0x3FD00000, 1, 0x40370000, 0x403E0000, 1,
        0x600FE000, 0x60100000, 0, 0x50000000, 0x50002000, 0),
       _u32(0x3FCE1710, 0x3FCEB710, 0x403CB700, 0x403D3700),
       _u32(0x3FC88000, 0x3FCF0000, 0x40378000, 0x403E0000, 0),
       1)
_C3 = (_u32(0x42000000, 0x42800000, 0x3C000000, 0x3C800000),
       _u32(0x3FC80000, 0x3FCE0000, 1, 0x4037C000, 0x403E0000, 1, 0x50000000, 0x50002000, 0),
       _u32(0x3FCD4710, 0x3FCDE710, 0x403CE710, 0x403D5710),
       _u32(0x3FC80000, 0x3FCE0000, 0x40380000, 0x403E0000, 0),
       1)
_C2 = (_u32(0x42000000, 0x42400000, 0x3C000000, 0x3C400000),
       _u32(0x3FCA0000, 0x3FCE0000, 1, 0x4037C000, 0x403C0000, 1),
       _u32(0x3FCD4B70, 0x3FCDEB70, 0x403AEB70, 0x403B5B70),
       _u32(0x3FCA0000, 0x3FCE0000, 0x40380000, 0x403C0000, 0),
       0)
_C6 = (_u32(0x42000000, 0x43000000),
       _u32(0x40800000, 0x40880000, 1, 0x50000000, 0x50004000, 0),
       _u32(0x4086E610, 0x4087E610),
       None,
       0)
_H2 = (_u32(0x42000000, 0x43000000),
       _u32(0x40800000, 0x40850000, 1, 0x50000000, 0x50001000, 0),
       _u32(0x4083EFD0, 0x4084F380),
       None,
       0)
_P4 = (_u32(0x40000000, 0x44000000, 0x48000000, 0x4C000000),
       _u32(0x4FF00000, 0x4FFC0000, 1, 0x50108000, 0x50110000, 0, 0x30100000, 0x30102000, 0),
       _u32(0x4FF2BBD0, 0x4FF3CFC0, 0x4FFADFC0, 0x4FFBCFC0),
       None,
       1)
CHIPS = {0x0000: _ESP32, 0x0002: _S2, 0x0009: _S3, 0x0005: _C3, 0x000C: _C2, 0x000D: _C6, 0x0010: _H2,
         0x0012: _P4}
_PAGE = 0x10000


def _at(table, i):
    return struct.unpack_from("<I", table, 4 * i)[0]


def _overlaps(pairs, lo, hi):
    # Whether [lo, hi) overlaps one of the (lo, hi) pairs packed in `pairs`.
    for i in range(0, len(pairs) // 4, 2):
        if lo < _at(pairs, i + 1) and _at(pairs, i) < hi:
            return True
    return False


def _alias(diram, lo, hi):
    # The other bus's view of the part of [lo, hi) inside D/IRAM (esp_ptr_diram_dram_to_iram and
    # back; the ESP32's D/IRAM is mapped in reverse word order), or None.
    dlo, dhi, ilo, ihi, inverted = struct.unpack("<5I", diram)
    for a, b, x in ((dlo, dhi, ilo), (ilo, ihi, dlo)):
        s, e = max(lo, a), min(hi, b)
        if s < e:
            if inverted:
                return x + (b - e), x + (b - s)
            return x + (s - a), x + (e - a)
    return None


def windows(chip_id):
    """(mapped, loadable, reserved) of a chip as lists: mapped [(lo, hi)], loadable [(lo, hi,
    checked)], reserved [(lo, hi)]; None for a chip this table does not know."""
    chip = CHIPS.get(chip_id)
    if chip is None:
        return None
    out = []
    for table, n in ((chip[0], 2), (chip[1], 3), (chip[2], 2)):
        v = struct.unpack("<%dI" % (len(table) // 4), table)
        out.append([v[i:i + n] for i in range(0, len(v), n)])
    return out


def check_segment(chip_id, index, load_addr, data_len, data_offset):
    """Raise OTAError("bad_load_address") when the bootloader of chip `chip_id` would refuse to
    load segment `index` (`data_len` bytes for `load_addr`, its data at `data_offset` in the image)."""
    chip = CHIPS.get(chip_id)
    if chip is None or not data_len:
        return  # an unknown chip is refused elsewhere (wrong_chip); zero-length segments are fine
    mapped, loadable, reserved, diram, aligned = chip
    end = load_addr + data_len
    if _overlaps(mapped, load_addr, load_addr + 1):
        if aligned and data_offset % _PAGE != load_addr % _PAGE:
            raise OTAError("bad_load_address", "segment %d: load address 0x%08x does not match its flash offset 0x%x "
                           "modulo the 64 KiB MMU page" % (index, load_addr, data_offset))
        return
    if load_addr < 0x10000000:
        return  # reserved for segments that are not loaded (padding)
    for i in range(0, len(loadable) // 4, 3):
        if _at(loadable, i) <= load_addr and end <= _at(loadable, i + 1):
            if not _at(loadable, i + 2):
                return  # RTC memory or SPM: loaded as it is
            other = _alias(diram, load_addr, end) if diram else None
            if _overlaps(reserved, load_addr, end) or (other and _overlaps(reserved, other[0], other[1])):
                raise OTAError("bad_load_address", "segment %d (0x%08x-0x%08x) overlaps the RAM the 2nd-stage "
                               "bootloader itself uses: it would refuse to boot this image" % (index, load_addr, end))
            return
    raise OTAError("bad_load_address", "segment %d (0x%08x-0x%08x) is not in this chip's DRAM, IRAM or RTC memory: "
                   "the bootloader would refuse to load it" % (index, load_addr, end))

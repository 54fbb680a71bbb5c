# The otadata partition as ESP-IDF reads and writes it (esp_flash_partitions.h, bootloader_common.c):
# two esp_ota_select_entry_t copies, one per 4 KiB sector: ota_seq u32 | seq_label[20] |
# ota_state u32 | crc u32, where crc = crc32_le(UINT32_MAX, ota_seq) covers the sequence only.
import binascii
import struct

ENTRY_FMT = "<I20sII"
ENTRY_LEN = 32
SECTOR = 0x1000

NEW = 0
PENDING_VERIFY = 1
VALID = 2
INVALID = 3
ABORTED = 4
UNDEFINED = 0xFFFFFFFF

STATE_NAMES = {NEW: "NEW", PENDING_VERIFY: "PENDING_VERIFY", VALID: "VALID", INVALID: "INVALID",
               ABORTED: "ABORTED", UNDEFINED: "UNDEFINED"}


def seq_crc(seq):
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


class Entry:
    def __init__(self, seq=0xFFFFFFFF, label=b"\xff" * 20, state=UNDEFINED, crc=0xFFFFFFFF):
        self.seq = seq
        self.label = label
        self.state = state
        self.crc = crc

    @classmethod
    def unpack(cls, raw):
        return cls(*struct.unpack(ENTRY_FMT, raw))

    def pack(self):
        return struct.pack(ENTRY_FMT, self.seq, self.label, self.state, self.crc)

    def copy(self):
        return Entry(self.seq, self.label, self.state, self.crc)

    # bootloader_common_ota_select_invalid: note it does NOT look at the CRC.
    def invalid(self):
        return self.seq == 0xFFFFFFFF or self.state == INVALID or self.state == ABORTED

    # bootloader_common_ota_select_valid
    def valid(self):
        return not self.invalid() and self.crc == seq_crc(self.seq)

    def crc_ok(self):
        return self.seq != 0xFFFFFFFF and self.crc == seq_crc(self.seq)

    def state_name(self):
        return STATE_NAMES.get(self.state, "0x%08x" % self.state)


def select(entries, usable, highest=True):
    # bootloader_common_select_otadata: of the usable entries, the highest (or lowest) seq;
    # on a tie entry 0 wins.
    if usable[0] and usable[1]:
        a, b = entries[0].seq, entries[1].seq
        pick = max(a, b) if highest else min(a, b)
        return 0 if pick == a else 1
    for i in (0, 1):
        if usable[i]:
            return i
    return -1


def active_index(entries):
    """bootloader_common_get_active_otadata: index of the entry in force, or -1."""
    return select(entries, [entries[0].valid(), entries[1].valid()])


def read(flash, offset):
    return [Entry.unpack(flash.read(offset + i * SECTOR, ENTRY_LEN)) for i in (0, 1)]


def write(flash, offset, index, entry):
    # write_otadata / rewrite_ota_seq: erase that copy's sector, then program the 32 bytes.
    flash.erase(offset + index * SECTOR, SECTOR)
    flash.write(offset + index * SECTOR, entry.pack())

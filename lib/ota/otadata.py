# Reading the otadata partition (two esp_ota_select_entry_t copies, REFERENCE §2) to tell which
# state each slot is in. The device only reads it: every otadata write goes through ESP-IDF
# (set_boot, mark_app_valid_cancel_rollback) or the bootloader.
import binascii
import struct

import esp32

from .compat import const

NEW = const(0)
PENDING_VERIFY = const(1)
VALID = const(2)
INVALID = const(3)
ABORTED = const(4)
UNDEFINED = const(0xFFFFFFFF)
_BLANK = const(0xFFFFFFFF)
_SUBTYPE_OTA = const(0x00)

STATE_NAMES = {NEW: "new", PENDING_VERIFY: "pending_verify", VALID: "valid", INVALID: "invalid",
               ABORTED: "aborted", UNDEFINED: "undefined"}


def _crc(seq):
    return binascii.crc32(struct.pack("<I", seq), 0xFFFFFFFF) & 0xFFFFFFFF


def partition():
    found = esp32.Partition.find(esp32.Partition.TYPE_DATA, _SUBTYPE_OTA)
    return found[0] if found else None


def entries(part=None):
    """[(seq, state, usable, crc_ok)] * 2, or None without an otadata partition.

    usable: the copy would be selected by the bootloader (seq set, CRC right, not invalid/aborted)."""
    part = part or partition()
    if part is None:
        return None
    buf = bytearray(32)
    out = []
    for i in (0, 1):
        part.readblocks(i, buf)
        seq, _, state, crc = struct.unpack("<I20sII", buf)
        crc_ok = seq != _BLANK and crc == _crc(seq)
        out.append((seq, state, crc_ok and state != INVALID and state != ABORTED, crc_ok))
    return out


def active(ents):
    """Index of the copy in force (highest usable seq; copy 0 on a tie), or -1."""
    if ents[0][2] and ents[1][2]:
        return 0 if ents[0][0] >= ents[1][0] else 1
    return 0 if ents[0][2] else 1 if ents[1][2] else -1


def slot_state(ents, index, slot_count):
    """State of OTA slot `index` from the newest copy that names it (CRC-checked), else None."""
    best = None
    for seq, state, _, crc_ok in ents:
        if crc_ok and (seq - 1) % slot_count == index and (best is None or seq > best[0]):
            best = (seq, state)
    return best[1] if best else None

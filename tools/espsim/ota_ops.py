# The application-side ESP-IDF OTA API that MicroPython's esp32.Partition calls (esp_ota_ops.c):
# which partition boots, which one is next, set_boot (validate, then rewrite otadata) and
# mark_app_valid_cancel_rollback. Errors are returned as ESP-IDF codes, as the C API does.
from . import image, otadata
from .parttable import SUBTYPE_FACTORY, SUBTYPE_DATA_OTA, TYPE_APP, TYPE_DATA, find_first, ota_slots

ESP_OK = 0
ESP_FAIL = -1
ESP_ERR_INVALID_ARG = 0x102
ESP_ERR_INVALID_SIZE = 0x104
ESP_ERR_NOT_FOUND = 0x105
ESP_ERR_OTA_VALIDATE_FAILED = 0x1503


def _otadata_part(parts):
    return find_first(parts, TYPE_DATA, SUBTYPE_DATA_OTA)


def boot_partition(board):
    """esp_ota_get_boot_partition: what the bootloader would pick from otadata alone."""
    od = _otadata_part(board.parts)
    if od is None:
        return None
    e = otadata.read(board.flash, od.offset)
    slots = ota_slots(board.parts)
    if (e[0].invalid() and e[1].invalid()) or not slots:
        return default_boot_partition(board.parts)
    i = otadata.active_index(e)
    if i == -1:
        return default_boot_partition(board.parts)
    return slots[((e[i].seq - 1) & 0xFFFFFFFF) % len(slots)]


def default_boot_partition(parts):
    # find_default_boot_partition: factory, else the first OTA slot, else the test app.
    p = find_first(parts, TYPE_APP, SUBTYPE_FACTORY)
    if p is not None:
        return p
    slots = ota_slots(parts)
    if slots:
        return slots[0]
    return find_first(parts, TYPE_APP, 0x20)


def next_update_partition(board, start_from):
    """esp_ota_get_next_update_partition: the OTA slot after start_from, else the first one."""
    slots = ota_slots(board.parts)
    nxt = False
    for p in slots:
        if nxt:
            return p
        if p.offset == start_from.offset:
            nxt = True
    return slots[0] if slots else None


def set_boot_partition(board, part):
    if part.type != TYPE_APP:
        return ESP_ERR_INVALID_ARG
    try:
        image.verify(board.flash, part.offset, part.size, board.chip, board.chip_rev)
    except image.ImageInvalid as e:
        board.log("set_boot: image in %s invalid: %s" % (part.label, e))
        return ESP_ERR_OTA_VALIDATE_FAILED
    od = _otadata_part(board.parts)
    if part.subtype == SUBTYPE_FACTORY:
        if od is None:
            return ESP_ERR_NOT_FOUND
        board.flash.erase(od.offset, od.size)
        return ESP_OK
    return _rewrite_ota_data(board, part, od)


def _rewrite_ota_data(board, part, od):
    if od is None:
        return ESP_ERR_NOT_FOUND
    slots = ota_slots(board.parts)
    n = len(slots)
    slot_id = part.subtype & 0x0F
    if slot_id >= n:
        return ESP_ERR_INVALID_ARG
    e = otadata.read(board.flash, od.offset)
    active = otadata.active_index(e)
    # set_new_state_otadata: the FIRMWARE's build decides (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE in
    # the app's sdkconfig), not the bootloader's: an old bootloader then never turns NEW into
    # PENDING_VERIFY, and the app sees NEW at run time.
    new_state = otadata.NEW if board.app_rollback else otadata.UNDEFINED
    if active != -1:
        seq = e[active].seq
        i = 0
        while seq > (slot_id + 1) % n + i * n:
            i += 1
        nxt = (~active) & 1
        entry = e[nxt].copy()
        entry.state = new_state
        entry.seq = (slot_id + 1) % n + i * n
    else:
        nxt = 0
        entry = e[0].copy()
        entry.state = new_state
        entry.seq = slot_id + 1
    entry.crc = otadata.seq_crc(entry.seq)
    otadata.write(board.flash, od.offset, nxt, entry)
    return ESP_OK


def mark_app_valid_cancel_rollback(board):
    """esp_ota_mark_app_valid_cancel_rollback (esp_ota_current_ota_is_workable(true))."""
    od = _otadata_part(board.parts)
    if od is None:
        return ESP_ERR_NOT_FOUND
    e = otadata.read(board.flash, od.offset)
    active = otadata.active_index(e)
    if active == -1 or not ota_slots(board.parts):
        board.log("mark_app_valid: running firmware is factory")
        return ESP_FAIL
    if e[active].state != otadata.VALID:
        entry = e[active].copy()
        entry.state = otadata.VALID
        entry.crc = otadata.seq_crc(entry.seq)
        otadata.write(board.flash, od.offset, active, entry)
    return ESP_OK

# The ESP-IDF 2nd-stage bootloader's choice of app (bootloader_utility.c), with app rollback
# (CONFIG_BOOTLOADER_APP_ROLLBACK_ENABLE) as MicroPython builds it since v1.21:
#  - any PENDING_VERIFY otadata entry is turned into ABORTED first (so ONE reset before the app
#    confirms itself rolls it back),
#  - the valid entry with the highest seq picks slot (seq - 1) % slots, and a NEW entry there
#    becomes PENDING_VERIFY,
#  - blank otadata: factory if there is one, else ota_0 (and otadata[0] is then written as VALID),
#  - the chosen image is verified in full; if it fails, earlier slots down to factory are tried,
#    then later ones. No bootable image at all is a brick.
from . import image, otadata
from .parttable import SUBTYPE_FACTORY, SUBTYPE_DATA_OTA, SUBTYPE_TEST, TYPE_APP, TYPE_DATA, TableError
from .parttable import find_first, ota_slots, read as read_table

FACTORY_INDEX = -1
TEST_APP_INDEX = -2


class Brick(Exception):
    """The bootloader found nothing it can boot: the device is dead until re-flashed by cable."""


def selected_index(board):
    """bootloader_utility_get_selected_boot_partition. Returns (index, initial_contents)."""
    od = find_first(board.parts, TYPE_DATA, SUBTYPE_DATA_OTA)
    if od is None:
        return FACTORY_INDEX, False
    if od.size < 2 * otadata.SECTOR:
        board.log("ota_info partition size %d is too small" % od.size)
        return FACTORY_INDEX, False
    e = otadata.read(board.flash, od.offset)
    app_count = len(ota_slots(board.parts))
    factory = find_first(board.parts, TYPE_APP, SUBTYPE_FACTORY)
    if board.rollback_enabled:
        for i in (0, 1):
            if e[i].state == otadata.PENDING_VERIFY:
                board.log("otadata[%d] was PENDING_VERIFY at reset: marked ABORTED (rollback)" % i)
                e[i].state = otadata.ABORTED
                otadata.write(board.flash, od.offset, i, e[i])
    if (e[0].invalid() and e[1].invalid()) or app_count == 0:
        if factory is not None:
            board.log("otadata empty: defaulting to factory image")
            return FACTORY_INDEX, False
        board.log("otadata empty and no factory image: trying ota_0")
        initial = all(x.seq == 0xFFFFFFFF or x.crc != otadata.seq_crc(x.seq) for x in e)
        return 0, initial
    active = otadata.active_index(e)
    if active != -1:
        index = ((e[active].seq - 1) & 0xFFFFFFFF) % app_count
        board.log("otadata[%d] seq %d selects ota_%d (%s)" % (active, e[active].seq, index, e[active].state_name()))
        if board.rollback_enabled and e[active].state == otadata.NEW:
            board.log("otadata[%d] NEW -> PENDING_VERIFY: the app must confirm itself before the next reset" % active)
            e[active].state = otadata.PENDING_VERIFY
            otadata.write(board.flash, od.offset, active, e[active])
        return index, False
    if factory is not None:
        board.log("otadata invalid: falling back to factory")
    else:
        board.log("otadata invalid and no factory: trying every partition")
    return FACTORY_INDEX, False


def _partition(board, index):
    if index == FACTORY_INDEX:
        return find_first(board.parts, TYPE_APP, SUBTYPE_FACTORY)
    if index == TEST_APP_INDEX:
        return find_first(board.parts, TYPE_APP, SUBTYPE_TEST)
    slots = ota_slots(board.parts)
    return slots[index] if 0 <= index < len(slots) else None


def _try(board, index):
    part = _partition(board, index)
    if part is None or part.size == 0:
        return None
    try:
        image.verify(board.flash, part.offset, part.size, board.chip, board.chip_rev, bootloader=True)
    except image.ImageInvalid as e:
        board.log("%s is not bootable: %s" % (part.label, e))
        return None
    return part


def _set_actual_ota_seq(board, index, initial):
    # Blank otadata booted ota_N: record it so the app sees a valid, confirmed entry.
    if index > FACTORY_INDEX and initial:
        od = find_first(board.parts, TYPE_DATA, SUBTYPE_DATA_OTA)
        entry = otadata.Entry(seq=index + 1, state=otadata.VALID)
        entry.crc = otadata.seq_crc(entry.seq)
        otadata.write(board.flash, od.offset, 0, entry)
        board.log("set actual ota_seq=%d in otadata[0]" % entry.seq)


def load_boot_image(board, start, initial):
    """bootloader_utility_load_boot_image: the partition that boots, or raise Brick."""
    if start == TEST_APP_INDEX:
        part = _try(board, TEST_APP_INDEX)
        if part is None:
            raise Brick("no bootable test partition in the partition table")
        return part
    for index in range(start, FACTORY_INDEX - 1, -1):
        part = _try(board, index)
        if part is not None:
            _set_actual_ota_seq(board, index, initial)
            return part
    for index in range(start + 1, len(ota_slots(board.parts))):
        part = _try(board, index)
        if part is not None:
            _set_actual_ota_seq(board, index, initial)
            return part
    part = _try(board, TEST_APP_INDEX)
    if part is not None:
        return part
    raise Brick("no bootable app partitions in the partition table")


def _wake_from_deep_sleep(board):
    # CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP=y (MicroPython's sdkconfig.base): a wake from
    # deep sleep boots the app that ran before, recorded in RTC memory, loaded without verification
    # and without the app selection: no PENDING_VERIFY -> ABORTED, no NEW -> PENDING_VERIFY, no
    # switch to a slot set_boot() chose since (bootloader_start.c calls
    # bootloader_utility_load_boot_image_from_deep_sleep first; bootloader_utility.c). When that
    # image does not load, the normal boot follows.
    for p in board.parts:
        if p.label == board.wake_from and p.type == TYPE_APP:
            head = board.flash.read(p.offset, 1)
            if head[0] == 0xE9:
                board.log("wake from deep sleep: fast booting %s at 0x%x (no app selection)" % (p.label, p.offset))
                return p
    board.log("wake from deep sleep: no app in RTC memory loads; normal boot")
    return None


def boot(board):
    """Run the 2nd-stage bootloader on board.flash; set board.running; return the Part booted."""
    hdr = board.flash.read(board.bootloader_offset, 1)
    if hdr[0] != 0xE9:
        raise Brick("no 2nd-stage bootloader at 0x%x (invalid header)" % board.bootloader_offset)
    try:
        board.parts = read_table(board.flash)
    except TableError as e:
        raise Brick("failed to verify partition table: %s" % e)
    if board.wake_from is not None:
        part = _wake_from_deep_sleep(board)
        if part is not None:
            board.running = part
            return part
    index, initial = selected_index(board)
    part = load_boot_image(board, index, initial)
    board.running = part
    board.log("booting %s at 0x%x" % (part.label, part.offset))
    return part

# Writing a full app image into the next OTA slot and making it the boot partition.
#
#   source --readinto--> [one 4 KiB block] --> image walk + SHA-256 --> erase+program the block
#
# The slot is only written, never trusted: after the last block the length, the SHA-256 the caller
# expects and the image structure are checked, and only then does set_boot() point the bootloader
# at it. set_boot() is esp_ota_set_boot_partition(), which first runs esp_image_verify() on the
# slot (esp_ota_ops.c image_validate; esp_image_format.c image_load -> verify_simple_hash): it reads
# the image back from flash and checks the SHA-256 appended to it, so a flash fault in any byte
# fails there, before otadata changes. An image without an appended SHA-256, or one whose caller
# does not make it bootable next (set_boot=False without boot_follows), is read back and hashed
# here instead. (ESP-IDF skips that hash while a JTAG debugger is attached: a bench setting, not a
# field one.) Until set_boot returns, a failure or a power cut leaves the running image and the
# boot choice as they were.
import hashlib

from . import otadata, slot
from .appimage import PROLOGUE_LEN, ImageCheck
from .errors import OTAError

BLOCK = slot.BLOCK


def _read_full(source, mv, want):
    """Read up to `want` bytes from source into mv; fewer only at the end of the source."""
    got = 0
    while got < want:
        try:
            n = source.readinto(mv[got:want])
        except OTAError:
            raise
        except MemoryError:  # e.g. a decoder's window: the heap's failure, not the source's
            raise OTAError("out_of_memory", "out of memory reading the image after %d bytes" % got)
        except Exception as e:  # a socket, file or UART error: never a half-trusted image
            raise OTAError("source_error", "reading the image failed after %d bytes: %r" % (got, e))
        if not n:
            break
        got += n
    return got


def _counting(run):
    # ota.ledger.probe without loading ota.ledger: a "probe" i32 for this OTA slot ((index + 1) << 16)
    from . import state

    v = state.get_int("probe")
    i = slot.ota_index(run)
    return v is not None and i is not None and v >> 16 == i + 1


def check_can_install(run=None):
    """Refuse to start when installing would destroy the way back. Returns (running, target)."""
    run = run or slot.running()
    target = slot.next_update(run)
    ents = otadata.entries()
    if ents is not None:
        i = slot.ota_index(run)
        n = len(slot.ota_slots())
        st = otadata.slot_state(ents, i, n) if i is not None else None
        if st == otadata.PENDING_VERIFY or st == otadata.NEW or st == otadata.UNDEFINED or _counting(run):
            # On probation (bootstate.unconfirmed): the target slot holds the image it would roll back
            # to. ESP-IDF's esp_ota_begin refuses PENDING_VERIFY; the agent's own boot count (which
            # cancelled that state) and an old bootloader's NEW are the same case. An image kept
            # with no way back (it failed, nothing it may return to) may be replaced by a fix.
            from . import bootstate

            if st == otadata.PENDING_VERIFY or bootstate.way_back(run) is not None:
                raise OTAError("pending_verify", "the running image is not confirmed yet: call ota.confirm() "
                               "before installing another update")
    if slot.same(slot.boot(), target):
        raise OTAError("reboot_pending", "an update is already installed in %s and boots at the next "
                       "reset: reset first" % slot.label(target))
    return run, target


def install(source, length, sha256=None, chip_id=None, resume_from=0, progress=None, buf=None,
            set_boot=True, boot_follows=False):
    """Stream the app image from `source` (anything with readinto) into the next OTA slot.

    length: the exact image length (the signed manifest says it); an image that does not fit the
    slot is refused before anything is written. sha256: the expected SHA-256 of the image, or None
    when the caller checks it otherwise. resume_from: a block-aligned offset already written to the
    slot by an interrupted attempt (it is re-hashed, then the source continues from there).
    set_boot=False, boot_follows=True: the caller calls make_bootable() next (after recording the
    release): its verification of the slot stands for the read-back, as with set_boot=True.
    Returns a dict describing what was installed. Raises OTAError; the boot choice is unchanged then.
    """
    run, target = check_can_install()
    slot_size = slot.size(target)
    if not isinstance(length, int) or length < PROLOGUE_LEN:
        raise OTAError("bad_length", "image length %r is not a plausible app image length" % (length,))
    if length > slot_size:
        raise OTAError("too_large", "image is %d bytes, slot %s holds %d" % (length, slot.label(target), slot_size))
    if resume_from % BLOCK or not 0 <= resume_from < length:
        raise OTAError("bad_resume", "resume offset %d is not a block boundary inside the image" % resume_from)
    buf = buf or bytearray(BLOCK)
    mv = memoryview(buf)
    if chip_id is None:
        chip_id = slot.chip_id(run, buf)
    check = ImageCheck(length, chip_id, digest=sha256 is None)  # else the signed digest stands for it
    sha = hashlib.sha256()
    pos = resume_from
    if pos:
        slot.hash_range(target, pos, buf, sha, check)
    block = pos // BLOCK
    try:
        while pos < length:
            want = min(BLOCK, length - pos)
            got = _read_full(source, mv, want)
            if got < want:
                raise OTAError("truncated", "the source ended after %d of %d bytes" % (pos + got, length))
            check.feed(mv, got)  # before the write: a wrong file is refused before its first block lands
            sha.update(mv[:got] if got < BLOCK else mv)
            slot.write_block(target, block, buf, got)
            pos += got
            block += 1
            if progress:
                progress(pos, length)
        if _read_full(source, mv[:1], 1):
            raise OTAError("length_mismatch", "the source has more than the expected %d bytes" % length)
    except OTAError as e:
        e.written = pos - pos % BLOCK  # what is in the slot and verified: a retry may resume there
        raise
    check.finish()
    digest = sha.digest()
    if sha256 is not None and digest != sha256:
        raise OTAError("hash_mismatch", "the image's SHA-256 is not the expected one")
    if not ((set_boot or boot_follows) and check.hash_appended):
        if slot.hash_range(target, length, buf).digest() != digest:
            raise OTAError("flash_verify_failed", "the slot read back differs from what was written: flash fault?")
    if set_boot:
        make_bootable(target)
    return {"slot": slot.label(target), "length": length, "sha256": digest, "segments": len(check.segments)}


def make_bootable(target):
    """Partition.set_boot(): ESP-IDF verifies the image again, then writes otadata."""
    try:
        target.set_boot()
    except OSError as e:
        raise OTAError("set_boot_failed", "ESP-IDF refused the image in %s (%s)" % (slot.label(target), e))

# The boot side of an update: is the running image waiting to be confirmed, confirm it after a
# self-test, or roll back to the previous image; and a status report of both slots.
#
# ESP-IDF's app rollback (MicroPython builds enable it since v1.21): after set_boot the new image's
# otadata copy is NEW; the bootloader makes it PENDING_VERIFY when it boots it, and if the device
# resets again before mark_app_valid_cancel_rollback(), marks it ABORTED and boots the previous one.
import esp32
import machine

from . import otadata, slot, state
from .errors import OTAError

_ERR_NOT_FOUND = -261  # ESP_ERR_NOT_FOUND: no otadata partition, no rollback support


def running_state(run=None):
    """The running slot's otadata state (otadata.PENDING_VERIFY...), or None if it has no entry."""
    ents = otadata.entries()
    if ents is None:
        return None
    run = run or slot.running()
    i = slot.ota_index(run)
    if i is None:
        return None  # factory app: otadata does not describe it
    return otadata.slot_state(ents, i, len(slot.ota_slots()))


def pending_verify():
    return running_state() == otadata.PENDING_VERIFY


def previous_slot(run=None):
    """The partition that boots if the running image is rolled back, or None."""
    run = run or slot.running()
    ents = otadata.entries()
    if ents is not None:
        slots = slot.ota_slots()
        for seq, _, usable, _ in sorted(ents, key=lambda e: -e[0]):
            if not usable:
                continue
            cand = slots[(seq - 1) % len(slots)]
            if not slot.same(cand, run):
                return cand
    fac = slot.factory()
    return fac if fac is not None and not slot.same(fac, run) else None


def rollback(reason="requested", remember=True):
    """Boot the previous image now. Does not return (machine.reset()); raises OTAError if there is
    no valid previous image to go back to, or if it is below the anti-rollback counter.
    remember: count it as a failure of the pending release (see update.KNOWN_BAD_AFTER); False when
    the cause may be the network, not the release."""
    run = slot.running()
    prev = previous_slot(run)
    if prev is None:
        raise OTAError("no_rollback_target", "there is no previous image to roll back to")
    # The release we would go back to: while the running image is still the pending (unpromoted)
    # one, that is the current release; once promoted, the one before it. It must not be below the
    # anti-rollback counter (raised only when a release is promoted).
    pend = state.get_json("pend")
    pending = pend is not None and pend.get("slot") == slot.label(run)
    back = state.get_json("cur" if pending else "prev")
    if back is not None and back.get("security_version", 0) < state.security_counter():
        raise OTAError("security_version", "the previous release %s is below the anti-rollback counter" % back.get("version"))
    buf = bytearray(512)  # small: a rollback must not fail for want of a contiguous 4 KiB
    try:
        slot.verify_in_place(prev, buf, slot.chip_id(run, buf))
    except OTAError as e:
        raise OTAError("no_rollback_target", "the previous image in %s is not valid (%s)" % (slot.label(prev), e.message))
    print("ota: rolling back from %s to %s: %s" % (slot.label(run), slot.label(prev), reason))
    if pending:
        if remember:
            _count_failure(pend)
        pend["judged"] = 1  # counted (or excused) here: reconcile must not count it again
        state.set_json("pend", pend)
    if running_state(run) != otadata.PENDING_VERIFY:
        # Confirmed image, or a bootloader without app rollback: point the bootloader back ourselves.
        # (While PENDING_VERIFY the reset alone rolls back, with no flash write of ours.)
        try:
            prev.set_boot()
        except OSError as e:
            raise OTAError("set_boot_failed", "cannot make %s bootable again (%s)" % (slot.label(prev), e))
    machine.reset()


def confirm(self_test=None):
    """Confirm the running image if it is waiting for it, after `self_test()` returns truthy.

    Returns "confirmed" (this call confirmed it), "already_valid" (nothing to do) or
    "no_rollback" (the bootloader has no app rollback: nothing to confirm). A self-test that fails
    or raises rolls back (does not return). BaseExceptions (a reset) pass through untouched.
    """
    st = running_state()
    if st not in (otadata.PENDING_VERIFY, otadata.NEW, otadata.UNDEFINED):
        reconcile()
        return "already_valid"
    ok = True
    why = "self-test failed"
    if self_test is not None:
        try:
            ok = bool(self_test())
        except Exception as e:
            ok = False
            why = "self-test raised %r" % (e,)
    if st in (otadata.PENDING_VERIFY, otadata.UNDEFINED, otadata.NEW):
        # NEW at run time: the firmware asked for rollback, the bootloader (flashed with the board,
        # never updated over the air) was built without it and never made it PENDING_VERIFY
        try:
            state.set_int("rb", 1 if st == otadata.PENDING_VERIFY else 2 if st == otadata.NEW else 0)
        except OSError:
            pass  # a report, not a decision
    if not ok:
        rollback(why)
    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError as e:
        if e.args and e.args[0] == _ERR_NOT_FOUND:
            return "no_rollback"
        raise OTAError("confirm_failed", "mark_app_valid_cancel_rollback failed: %s" % e)
    reconcile()
    return "confirmed"


def reconcile(run=None):
    """Bring the remembered release in line with what runs, once it is confirmed: promote the
    pending release (and raise the anti-rollback counter to it), or forget a pending release that
    was rolled back. Idempotent, so a power cut in the middle is finished at the next boot."""
    pend = state.get_json("pend")
    if pend is None:
        return
    run = run or slot.running()
    if pend.get("slot") == slot.label(run):
        cur = state.get_json("cur")
        if cur is not None and cur.get("manifest_sha256") != pend.get("manifest_sha256"):
            state.set_json("prev", cur)
        state.set_json("cur", pend)  # with its slot: which release a slot holds (ota.apptree)
        sv = pend.get("security_version", 0)
        if sv > state.security_counter():
            state.set_int("secver", sv)
        state.erase("pend")
    elif not slot.same(slot.boot(), slot.by_label(pend.get("slot"))):
        # It was rolled back. Not by rollback() (that judges it): the bootloader did, because the
        # image reset before it confirmed itself (a crash, a watchdog, a power cut in its first
        # boot). That counts against it too, or a release that crashes at boot would be installed
        # and rolled back at every check, for ever.
        # (A slot that never booted is still NEW: nothing to count.)
        if not pend.get("judged") and _aborted(pend.get("slot")):
            _count_failure(pend)
        state.erase("pend")


def _aborted(label):
    ents = otadata.entries()
    part = slot.by_label(label)
    i = slot.ota_index(part) if part is not None else None
    if ents is None or i is None:
        return False
    return otadata.slot_state(ents, i, len(slot.ota_slots())) in (otadata.ABORTED, otadata.INVALID)


def _count_failure(pend):
    # After update.KNOWN_BAD_AFTER failures of one image here the policy refuses it ("known_bad").
    bad = state.get_json("bad") or {}
    n = bad.get("n", 0) + 1 if bad.get("image_sha256") == pend.get("image_sha256") else 1
    state.set_json("bad", {"image_sha256": pend.get("image_sha256"), "version": pend.get("version"), "n": n})

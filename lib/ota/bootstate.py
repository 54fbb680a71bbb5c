# The boot side of an update: is the running image waiting to be confirmed, confirm it after a
# self-test, or roll back to the previous image; and a status report of both slots.
#
# ESP-IDF's app rollback (MicroPython builds enable it since v1.21): after set_boot the new image's
# otadata copy is NEW; the bootloader makes it PENDING_VERIFY when it boots it, and if the device
# resets again before mark_app_valid_cancel_rollback(), marks it ABORTED and boots the previous one.
import esp32
import machine

from . import ledger, otadata, slot
from .errors import OTAError

_ERR_NOT_FOUND = -261  # ESP_ERR_NOT_FOUND: no otadata partition, no rollback support
_WAITING = (otadata.PENDING_VERIFY, otadata.NEW, otadata.UNDEFINED)


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


def unconfirmed(run=None):
    """True while the running image waits for its confirmation: ESP-IDF's PENDING_VERIFY (NEW or
    UNDEFINED at run time: a bootloader without app rollback never made it PENDING_VERIFY), or the
    agent's own boot counter (ota.ledger.probe), which cancels ESP-IDF's rollback to count boots
    itself (boot_retry_limit > 1, a boot with no clock, an old bootloader)."""
    run = run or slot.running()
    return running_state(run) in _WAITING or ledger.probe(run) is not None


def way_back(run=None):
    """The image this one may roll back to (see rollback()), or None."""
    prev = _target(run or slot.running())[0]
    if prev is not None:
        try:
            _may_run_again(prev)
        except OTAError:
            return None
    return prev


def previous_slot(run=None):
    """The partition to roll back to, or None: the one the newest usable otadata entry (other than
    the running one's) names, else another OTA slot that holds an image (a power cut can erase an
    otadata copy without touching the image it named), else the factory app."""
    return _target(run or slot.running())[0]


def _target(run):
    # (partition, whether the bootloader falls back to it by itself when the running image's entry
    # is aborted: an otadata entry names it)
    ents = otadata.entries()
    slots = slot.ota_slots()
    if ents is not None:
        for seq, _, usable, _ in sorted(ents, key=lambda e: -e[0]):
            if not usable:
                continue
            cand = slots[(seq - 1) % len(slots)]
            if not slot.same(cand, run):
                return cand, True
    head = bytearray(16)
    for cand in slots:
        if not slot.same(cand, run) and slot.chip_id(cand, head) is not None:
            return cand, False
    fac = slot.factory()
    return (fac, False) if fac is not None and not slot.same(fac, run) else (None, False)


def rollback(reason="requested", remember=True):
    """Boot the previous image now. Does not return (machine.reset()); raises OTAError if there is
    no valid previous image to go back to, or if it may not run again (a release confirmed here, not
    below the anti-rollback counter: see ota.ledger).
    remember: count it as a failure of the unconfirmed running image (ledger.KNOWN_BAD_AFTER);
    False when the cause may be the network, not the release."""
    run = slot.running()
    prev, named = _target(run)
    if prev is None:
        raise OTAError("no_rollback_target", "there is no previous image to roll back to")
    _may_run_again(prev)
    buf = bytearray(512)  # small: a rollback must not fail for want of a contiguous 4 KiB
    try:
        slot.verify_in_place(prev, buf, slot.chip_id(run, buf))
    except OTAError as e:
        raise OTAError("no_rollback_target", "the previous image in %s is not valid (%s)" % (slot.label(prev), e.message))
    print("ota: rolling back from %s to %s: %s" % (slot.label(run), slot.label(prev), reason))
    ledger.failed(run, remember)  # counted (or excused) here, before the boot choice changes
    if not named or running_state(run) != otadata.PENDING_VERIFY:
        # Confirmed image, a bootloader without app rollback, or a target no otadata entry names:
        # point the bootloader back ourselves. (While PENDING_VERIFY with the previous image named,
        # the reset alone rolls back, with no flash write of ours.)
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
    run = slot.running()
    st = running_state(run)
    probe = ledger.probe(run)  # the agent counts boots itself: on probation though otadata says VALID
    if st not in _WAITING and probe is None:
        reconcile(confirmed_now=True)
        return "already_valid"
    ok = True
    why = "self-test failed"
    if self_test is not None:
        try:
            ok = bool(self_test())
        except Exception as e:
            ok = False
            why = "self-test raised %r" % (e,)
    if st in _WAITING:
        # NEW at run time: the firmware asked for rollback, the bootloader (flashed with the board,
        # never updated over the air) was built without it and never made it PENDING_VERIFY
        ledger.rollback_support_seen(1 if st == otadata.PENDING_VERIFY else 2 if st == otadata.NEW else 0)
    if not ok:
        rollback(why)
    try:
        esp32.Partition.mark_app_valid_cancel_rollback()
    except OSError as e:
        if not (e.args and e.args[0] == _ERR_NOT_FOUND):
            raise OTAError("confirm_failed", "mark_app_valid_cancel_rollback failed: %s" % e)
        if probe is None:
            return "no_rollback"
    if probe is not None:
        ledger.set_probe(None)  # the agent's own count ends (as in Agent.boot: before the record)
    reconcile(run, confirmed_now=True)
    return "confirmed"


def _may_run_again(part):
    # ota.ledger's rule: a confirmed release not below the counter; before any counter, an image
    # with no record that no install wrote (flashed by cable) too.
    rec = ledger.release(part)
    counter = ledger.security_counter()
    if rec is None and ledger.unverified(part):
        raise OTAError("no_rollback_target", "the image in %s was written by an install that did not finish"
                       % slot.label(part))
    if rec is not None and not rec.get("ok"):
        raise OTAError("no_rollback_target", "the image in %s never confirmed itself here" % slot.label(part))
    if counter and (rec is None or rec.get("security_version", 0) < counter):
        raise OTAError("security_version", "the image in %s (%s) is below the anti-rollback counter %d" % (
            slot.label(part), rec.get("version") if rec else "unknown release", counter))


def reconcile(run=None, confirmed_now=False, at_boot=False):
    """Bring the ledger in line with what the bootloader did (the transitions are ota.ledger's).
    confirmed_now: the running image is confirmed (its record is promoted). at_boot: called right
    after a reset (agent.boot), when an image the otadata selects but that does not run can only
    have been refused by the bootloader. Idempotent: a power cut in the middle is finished at the
    next boot. Returns "refused" when the bootloader refused a new image, else None."""
    run = run or slot.running()
    ledger.migrate(run)
    if confirmed_now:
        ledger.confirmed(run)
    outcome = None
    boot = slot.boot()
    ents = otadata.entries()
    slots = slot.ota_slots()
    for part in slots:
        rec = ledger.raw(part)
        if rec is None:
            continue
        if ledger.stale(part, rec):
            ledger.drop(part)  # the slot holds another build now (flashed by cable)
            continue
        if rec["ok"] or slot.same(part, run):
            continue  # a confirmed release (a rollback target), or the one that runs
        st = otadata.slot_state(ents, slot.ota_index(part), len(slots)) if ents else None
        selected = slot.same(boot, part)  # set_boot happened: only then can it be the boot choice
        if not rec["bootable"] and not selected:
            ledger.forget(part)  # a cut before set_boot (or before it was noted): not a failure
        elif st in (otadata.ABORTED, otadata.INVALID):
            # Rolled back by the bootloader: the image reset before it confirmed itself (a crash,
            # a watchdog, a power cut in its first boot). That counts against it, or a release that
            # crashes at boot would be installed and rolled back at every check, for ever.
            ledger.failed(part)
        elif selected and (st == otadata.PENDING_VERIFY or (at_boot and _after_reset())):
            # Selected but not running: the bootloader refused to load it (PENDING_VERIFY on a slot
            # that does not run exists only then). Point the boot back, or every check would wait
            # for a reboot that never runs it.
            ledger.failed(part)
            try:
                run.set_boot()
            except OSError:
                pass  # the running image is valid: ESP-IDF only refuses an invalid one
            outcome = "refused"
        # else: it booted and was rolled back by our own rollback(), which judged it: its record
        # stays (what the slot holds; unconfirmed, so no rollback target)
    return outcome


def _after_reset():
    # A soft reset or a wake from deep sleep does not run the bootloader's choice: not a refusal.
    cause = machine.reset_cause()
    return cause != getattr(machine, "SOFT_RESET", -1) and cause != getattr(machine, "DEEPSLEEP_RESET", -1)

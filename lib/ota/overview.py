# ota.status() (this module is not called `status`: that is the function): both slots, their otadata states and images, what boots next, what the
# bootloader's rollback can do, and the signed release remembered for each.
from . import ledger, otadata, slot
from .errors import OTAError
from .bootstate import running_state


def _rollback_support(st):
    # What the bootloader can do, as far as otadata shows it: PENDING_VERIFY only exists with app
    # rollback; UNDEFINED after an update means a firmware built without it, NEW at run time a
    # bootloader built without it ("old_bootloader": it predates v1.21). A VALID image tells
    # nothing, so the last observation is kept in NVS.
    if otadata.partition() is None:
        return "unsupported"
    if st == otadata.PENDING_VERIFY:
        return "enabled"
    if st == otadata.UNDEFINED:
        return "disabled"
    if st == otadata.NEW:
        return "old_bootloader"  # the firmware writes NEW; a bootloader without app rollback leaves it
    seen = ledger.rollback_support_seen()
    return "enabled" if seen == 1 else "disabled" if seen == 0 else "old_bootloader" if seen == 2 else "unknown"


def status():
    """A dict describing both slots, what runs, what boots next and what rollback can do."""
    run = slot.running()
    buf = bytearray(slot.DESCRIPTOR_END)
    ents = otadata.entries()
    slots = slot.ota_slots()
    st = running_state(run)
    rec = ledger.release(run)
    desc = slot.descriptor(run, buf)
    boot = slot.boot() or run
    info = {
        "running": slot.label(run),
        "boot": slot.label(boot),
        "pending_verify": st == otadata.PENDING_VERIFY,
        "rollback": _rollback_support(st),
        "version": ledger.running_version(run, desc),
        "release": rec if rec and rec.get("ok") else None,
        # Installed and not confirmed yet: running on probation, or waiting for the reset.
        "pending_release": rec if rec and not rec.get("ok") else
        (ledger.release(boot) if not slot.same(boot, run) else None),
        "security_counter": ledger.security_counter(),
        "slots": [],
    }
    try:
        info["next_update"] = slot.label(slot.next_update(run))
    except OTAError:
        info["next_update"] = None
    act = otadata.active(ents) if ents else -1
    fac = slot.factory()
    for i, p in enumerate(([fac] if fac is not None else []) + slots):
        if p is fac:
            name = "factory"  # the last resort: not in otadata, never written over the air
        else:
            st = otadata.slot_state(ents, slot.ota_index(p), len(slots)) if ents else None
            name = otadata.STATE_NAMES.get(st, "none") if st is not None else "none"
        info["slots"].append({
            "label": slot.label(p), "address": slot.address(p), "size": slot.size(p), "state": name,
            "running": slot.same(p, run), "image": slot.descriptor(p, buf),
        })
    if act >= 0:
        info["otadata_seq"] = ents[act][0]
    return info

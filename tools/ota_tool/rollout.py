"""Staged rollout of a published release: change the signed manifest's "rollout" {percent, salt}
and "halted" members and sign it again (`ota-tool rollout`).

The device does the selection itself (ota.policy.check): it installs only when
rollout_bucket(device_id, salt) < percent * 100, and never a halted release, so a stage works on
plain static hosting. Host side, this module:
- reads the manifest and VERIFIES it with the device's own code against the public halves of the
  signing keys given (every key given must have signed it, and every signature on it must come
  from a key given, so no signature is silently dropped);
- changes only "rollout" and "halted" (the salt is kept unless a new one is asked for; one is made
  the first time a percentage is set), signs again and checks the result with the device code;
- refuses to WIDEN a stage (more devices may start the release: a higher effective percentage,
  a resume, or a new salt on a partial stage) when the reports show a failure + rollback rate
  above the threshold, or fewer attempts than asked for, unless forced. Narrowing and halting are
  always allowed;
- writes the file atomically (tmp + fsync + os.replace), keeping its mode.
"""
import os
import secrets
import time

from ota import manifest as device_manifest
from ota.errors import OTAError
from ota.policy import rollout_bucket
from ota.trust import Trust

from . import keys, reports
from .errors import ToolError
from .files import write_atomic

SALT_MAX = 32  # what the device accepts (ota.manifest: rollout.salt)


def new_salt():
    return secrets.token_hex(8)


def check_salt(salt):
    if not 1 <= len(salt) <= SALT_MAX or any(not (0x21 <= ord(c) <= 0x7E) or c == "\\" for c in salt):
        raise ToolError("salt %r: 1..%d printable ASCII characters, no spaces or backslash" % (salt, SALT_MAX), "e.g. --salt 2026-05")
    return salt


def effective(percent, halted):
    """The share (0..100) of eligible devices that may start the release."""
    return 0 if halted else percent


def stage_of(doc):
    """(percent, salt or None, halted) as the device reads them from a manifest document."""
    ro = doc.get("rollout") or {}
    return ro.get("percent", 100) if ro else 100, ro.get("salt") or None, doc.get("halted") is True


def load_verified(blob, signers):
    """The verified Manifest, checked with ota.manifest.load against the public halves of `signers`
    (all of them must have signed; no other key may have)."""
    pubs = {keys.key_id(k): keys.public_bytes(k) for k in signers}
    try:
        sigs, _ = device_manifest.split(blob)
        m = device_manifest.load(blob, Trust.from_list(list(pubs.values()), threshold=len(pubs)))
    except OTAError as e:
        raise ToolError("the manifest is refused with the key(s) given: %s" % e,
                        "give the key(s) the release was signed with (--key, repeatable)")
    others = sorted({kid for kid, _ in sigs} - set(pubs))
    if others:
        raise ToolError("the manifest is also signed by key(s) %s, not given: signing again would drop "
                        "their signature(s)" % ", ".join(others), "give every signing key with --key")
    return m


def known_share(reports_path, channel, percent, salt):
    """(devices known from the reports on `channel` or of unknown channel, how many fall under the stage)."""
    chans = reports.device_channels(reports_path) if reports_path else {}
    devices = [d for d, ch in chans.items() if ch is None or ch == channel]
    if percent >= 100:
        return len(devices), len(devices)
    chosen = sum(1 for d in devices if rollout_bucket(d, salt or "") < percent * 100)
    return len(devices), chosen


def change(manifest_path, signers, percent=None, salt=None, halt=None, reports_path=None,
           max_failure_rate=reports.DEFAULT_MAX_FAILURE_RATE, min_reports=0, force=False):
    """Change the stage of the release in `manifest_path` and sign it again with `signers`
    (private keys). percent: 0..100 or None (keep); salt: str or None (keep; made when needed);
    halt: True (halt), False (resume), None (keep). reports_path: the reports database or None.
    Returns a dict (before, after, changed, widening, gate, known devices...); ToolError when refused."""
    if percent is not None and not 0 <= percent <= 100:
        raise ToolError("--percent must be 0..100", "a share of the devices, e.g. --percent 25")
    if salt is not None:
        check_salt(salt)
    if not signers:
        raise ToolError("no signing key", "give --key KEY.pem")
    try:
        with open(manifest_path, "rb") as f:
            blob = f.read(device_manifest.MAX_DOCUMENT + 1024)
    except OSError as e:
        from .files import os_error

        raise os_error(e, manifest_path)
    m = load_verified(blob, signers)
    doc = m.doc
    _, body = device_manifest.split(blob)
    if keys.canonical(doc) != body:  # signing again must not change a byte we did not mean to
        raise ToolError("the manifest document does not re-serialise to the same bytes: refusing to sign it again", "release it again with ota-tool release --replace")
    before_pct, before_salt, before_halted = stage_of(doc)
    after_pct = before_pct if percent is None else percent
    after_halted = before_halted if halt is None else bool(halt)
    after_salt = salt or before_salt
    new = dict(doc)
    if percent is not None or salt is not None or "rollout" in doc:
        if after_salt is None:
            after_salt = new_salt()
        new["rollout"] = dict(doc.get("rollout") or {}, percent=after_pct, salt=after_salt)
    if halt:
        new["halted"] = True
    elif halt is not None:
        new.pop("halted", None)
    changed = []
    if after_pct != before_pct:
        changed.append("percent")
    if after_salt != before_salt and "rollout" in new:
        changed.append("salt")
    if after_halted != before_halted:
        changed.append("halted")
    eff_before = effective(before_pct, before_halted)
    eff_after = effective(after_pct, after_halted)
    salt_moved = "rollout" in doc and (before_salt or "") != after_salt  # other devices fall under the stage
    widening = eff_after > eff_before or (salt_moved and 0 < eff_after < 100)

    gate = None
    summary_path = reports_path if reports_path and os.path.exists(reports_path) else None
    if summary_path:
        e = reports.release_entry(reports.summary_from_path(summary_path, [m.version]), m.version)
    else:
        e = reports.release_entry({"releases": []}, m.version)
    gate = {"reports": summary_path, "attempted": e["attempted"], "confirmed": e["confirmed"],
            "pending": e["pending"], "failed": e["failed"], "rolled_back": e["rolled_back"],
            "failure_rate": e["failure_rate"], "max_failure_rate": max_failure_rate, "min_reports": min_reports,
            "reasons": e["reasons"], "ok": True, "forced": False, "why": None}
    if widening:
        why = None
        if e["failure_rate"] is not None and e["failure_rate"] > max_failure_rate:
            why = ("the reports show %d failed and %d rolled back of %d devices that attempted %s: a failure rate of "
                   "%.1f%%, above the %.1f%% allowed" % (e["failed"], e["rolled_back"], e["attempted"], m.version,
                                                        100 * e["failure_rate"], 100 * max_failure_rate))
        elif e["attempted"] < min_reports:
            why = "only %d device(s) reported attempting %s, %d needed (--min-reports)" % (
                e["attempted"], m.version, min_reports)
        if why:
            gate["ok"] = False
            gate["why"] = why
            if not force:
                few = e["failure_rate"] is None or e["failure_rate"] <= max_failure_rate
                raise ToolError("refusing to widen %s from %d%% to %d%%%s: %s" % (
                    m.version, eff_before, eff_after, " with a new salt" if salt_moved else "", why),
                                "wait for devices in the stage to report (ota-tool fleet), or widen without reports "
                                "with --min-reports %d" % e["attempted"] if few else
                                "look at `ota-tool fleet`; halt with --halt, or override with --force")
            gate["forced"] = True

    result = {"manifest": manifest_path, "version": m.version, "channel": m.channel,
              "before": {"percent": before_pct, "salt": before_salt, "halted": before_halted, "effective": eff_before},
              "after": {"percent": after_pct, "salt": after_salt if "rollout" in new else None,
                        "halted": after_halted, "effective": eff_after},
              "changed": changed, "widening": widening, "gate": gate, "written": False,
              "signed_by": [keys.key_id(k) for k in signers]}
    known, chosen = known_share(reports_path, m.channel, eff_after, after_salt)
    result["known_devices"] = known
    result["selected_devices"] = chosen
    if not changed:
        return result
    # A device refuses a manifest of this version older than one it has seen ("replayed"): the
    # new stage must be newer, or a mirror could replay the wider stage after a halt.
    new["created"] = max(int(time.time()), doc.get("created", 0) + 1)
    result["created"] = new["created"]
    out = keys.sign(new, signers)
    check = load_verified(out, signers)  # exactly what a device will do with it
    if (check.rollout_percent, check.halted) != (after_pct, after_halted):
        raise ToolError("the re-signed manifest does not read back as asked", "nothing was written; report it")
    write_atomic(manifest_path, out)
    result["written"] = True
    result["manifest_bytes"] = len(out)
    return result


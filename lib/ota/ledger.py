# What the device remembers across time, and the only module that changes it (python-tuf's
# TrustedMetadataSet is the model: a record changes only through the transitions below, each made
# durable before the step that depends on it). Every record is one NVS entry (ota.state). ESP-IDF
# writes an i32 as one entry: a power cut leaves it old or new. A blob it can lose when a cut falls
# between a new version's data and its index (espsim.nvs, idf_quirks), so a blob that matters is
# never rewritten in place: written once after its key was erased, or kept in two keys. The ones
# rewritten (jrnl, bad, rep, wf) cost at most a re-download, a failure count, a report or a hold
# when lost.
#
# Which release runs is never stored as such: it is the record of the slot the bootloader booted.
#   r0, r1, rf  blob  the signed release the image in ota_0 / ota_1 / factory is, written once:
#                     {"version", "security_version", "image_sha256", "manifest_sha256", "channel",
#                      "keys", "elf": the image's ELF SHA-256 prefix}
#   f0, f1, ff  i32   its flags: 4 "bootable" once set_boot chose it, 1 "ok" once it confirmed
#                     itself here, 2 "judged" once its failure was counted
#         forget()    erased before the first block of another image is written into the slot,
#                     whose flags say "written" (8): unverified, no rollback target, until staged()
#         staged()    written once the image is verified in the slot, BEFORE set_boot
#         bootable()  after set_boot
#         confirmed() the counter raised to its security version, then ok = 1, after the image
#                     passed its self-test
#         failed()    judged = 1 (one failure counted in "bad" unless excused); the record stays: it
#                     names what the slot holds, and an unconfirmed record is no rollback target
#         at boot, ota.bootstate.reconcile applies the bootloader's verdict: a record whose slot
#                     never became bootable (a cut before set_boot, or before bootable()) is
#                     forgotten (no failure); one the bootloader aborted or refused is failed() (a
#                     refused one also points the boot back at the running slot); a record whose
#                     slot holds another build now (flashed by cable) is dropped (drop())
# A slot may run again (ota.rollback) only when its record is a confirmed release not below the
# counter, or, before any counter, when it has no record and no install wrote it (a board flashed
# by cable).
#   secver i32  anti-rollback counter: the highest security_version confirmed here
#   rb     i32  once seen: 1 the bootloader has app rollback, 0 the firmware not, 2 an old bootloader
#   bad    blob image SHA-256, version and failure counts (own "n", network-excused "x") of the last
#               release that failed here
#   s0, s1 blob per channel (the last 4 followed) the version and signed `created` of the newest
#               manifest meant for this device, in two copies (the older one rewritten): one signed
#               before is a replay (ota.policy)
#   jrnl   blob the raw download in progress: manifest, artifact, slot, ETag (bounded)
#   jat    i32  blocks of it in the slot (every journal_every() bytes) << 8 | a byte of the artifact's
#               SHA-256 (one left by another download is not taken): re-hashed before use
#   probe  i32  boots of an unconfirmed image so far (the agent's boot retry limit), with its slot
#               and the boots that could not judge it (no clock)
#   rep    blob a report to send once the network is up (a rollback, sent by the previous image)
#   wf     blob an artifact that failed after it was written, and the checks it is left aside
from . import slot, state
from .compat import const
from .errors import OTAError

# The journal is written every tenth of the image (at least every 64 KiB): a power cut re-downloads
# at most that much, and an install makes at most ten NVS writes for it (a flash program each).
JOURNAL_WRITES = const(10)
_JOURNAL_MIN = const(65536)
KNOWN_BAD_AFTER = const(2)  # failures of one image here before the policy refuses it ("known_bad")
# ... or rollbacks the network may have caused (its server check, its clock): more than the
# network alone would cause (an attacker on path withholds updates anyway; a new image resets it),
# and a release that breaks the network is not installed and rolled back for ever (O4).
EXCUSED_AFTER = const(5)
_MAX_ETAG = const(64)  # a longer validator is not kept: the resume then relies on the image hash
_RECORD = ("version", "security_version", "image_sha256", "manifest_sha256", "channel", "keys")


def _key(part, kind="r"):
    # "r0": the record of ota_0 (a blob, written once); "f0": its flags (an i32, rewritten).
    if part is None:
        return None
    i = slot.ota_index(part)
    return kind + ("%d" % i if i is not None else "f")


def _elf(part):
    # The ELF SHA-256 prefix from the image's app descriptor: which build the slot holds now.
    d = slot.descriptor(part, bytearray(slot.DESCRIPTOR_END))
    return d.get("elf") if d else None


# --- slot records ---------------------------------------------------------------------------------
# A slot's record is written once, after its key was erased; what changes later (confirmed,
# judged) lives in an i32 (see the top of this file).
_OK = const(1)
_JUDGED = const(2)
_BOOTABLE = const(4)
_WRITTEN = const(8)  # an install here wrote into the slot: with no record, what it holds is unverified


def raw(part):
    """The record of `part` as stored, stale or not (with "ok"/"judged" from its flags), or None."""
    rec = state.get_json(_key(part))
    if rec is not None:
        flags = state.get_int(_key(part, "f"), 0)
        rec["ok"] = flags & _OK
        rec["judged"] = 1 if flags & _JUDGED else 0
        rec["bootable"] = 1 if flags & _BOOTABLE else 0
    return rec


def release(part):
    """The signed release the image in `part` is, or None when unknown (flashed by cable, never
    verified here, or being written)."""
    rec = raw(part) if part is not None else None
    if rec is None or stale(part, rec):
        return None  # unknown, or another image was flashed there since
    return rec


def running():
    return release(slot.running())


def running_version(run=None, desc=None):
    """The version that runs: the record of the booted slot; for an image not installed here over
    the air, the release version its app descriptor states (`desc`: slot.descriptor()), else None."""
    run = run or slot.running()
    rec = release(run)
    if rec is not None:
        return rec.get("version")
    v = desc.get("version") if desc else None
    if not v:
        return None
    # A board flashed by cable still must not take an older release: its app descriptor says which
    # version it is when the firmware build wrote ours there (firmware/ does). MicroPython's own
    # builds leave it empty or write a git tag ("v1.24.1"): no release version of ours, ignored.
    from .manifest import parse_version

    try:
        parse_version(v)
    except OTAError:
        return None
    return v


def forget(part):
    """Before the first write into `part`: what it held is no longer there, and until staged()
    names what it holds then, it is no image to go back to (a download that stopped, a mirror's
    other bytes: unverified). (ota.install_image, the low-level writer, does not load the ledger: a
    record it leaves names another build than the slot then holds, which release() and
    bootstate.reconcile() see by the ELF SHA-256.)"""
    if state.get_int(_key(part, "f")) != _WRITTEN:
        state.set_int(_key(part, "f"), _WRITTEN)  # the flags first: a cut between leaves a record not ok
    state.erase(_key(part))


def drop(part):
    """At boot: the slot's record names another build than it holds (flashed by cable since)."""
    state.erase(_key(part, "f"))  # the flags first: a cut between leaves an unconfirmed record
    state.erase(_key(part))


def unverified(part):
    """Whether `part` holds what an install here wrote and never verified (see forget())."""
    return state.get_json(_key(part)) is None and state.get_int(_key(part, "f"), 0) & _WRITTEN != 0


def stale(part, rec):
    """Whether `rec` (the raw record of `part`) names another build than the one in the slot."""
    return rec.get("elf") is not None and rec["elf"] != _elf(part)


def staged(part, summary):
    """The image in `part` is verified and is the release `summary` (manifest.summary()); written
    before set_boot, so that whatever boots next is named."""
    rec = {}
    for k in _RECORD:
        if k in summary:
            rec[k] = summary[k]
    rec["elf"] = _elf(part)
    forget(part)  # written once, never over an older version (see above); a no-op when erased
    state.set_json(_key(part), rec)


def bootable(part):
    """set_boot() made the image in `part` the boot choice: from now on an ABORTED otadata entry of
    its slot is its own (not one left by an earlier image there)."""
    _flag(part, _BOOTABLE)


def provisioned(summary, part=None):
    """A board that left the factory running a known signed release (tests, provisioning)."""
    part = part or slot.running()
    staged(part, summary)
    confirmed(part)


def _flag(part, bit):
    state.set_int(_key(part, "f"), state.get_int(_key(part, "f"), 0) | bit)


def confirmed(part):
    """The image in `part` passed its self-test here: its release is trusted to run, and nothing
    below its security version may run again."""
    rec = release(part)
    if rec is None:
        return
    # The counter first: a cut between the two writes leaves the record unconfirmed (confirmed
    # again at the next boot), never confirmed below its counter.
    sv = rec.get("security_version", 0)
    if sv > security_counter():
        state.set_int("secver", sv)
    if not rec["ok"]:
        _flag(part, _OK)


def security_counter():
    return state.get_int("secver", 0)


def failed(part, remember=True):
    """The unconfirmed image in `part` failed here (its self-test, or ota.rollback() from it):
    counted once when `remember` (a network fault is not the release's), then marked judged so that
    nothing counts it again."""
    rec = raw(part)
    if rec is None or rec["ok"] or rec["judged"]:
        return
    _count_failure(rec, remember)
    _flag(part, _JUDGED)


def _count_failure(rec, own=True):
    """One failure of the release `rec` here (own: its own; else one the network may have caused),
    unless it was judged already."""
    if rec.get("judged"):
        return
    bad = state.get_json("bad") or {}
    if bad.get("image_sha256") != rec.get("image_sha256"):
        bad = {"image_sha256": rec.get("image_sha256"), "version": rec.get("version"), "n": 0, "x": 0}
    bad["n" if own else "x"] = bad.get("n" if own else "x", 0) + 1
    state.set_json("bad", bad)


def install_failed(m):
    """ESP-IDF refused release `m`'s verified image at set_boot here (a chip revision it needs, say):
    one failure of the release, as if it had failed its self-test."""
    import binascii

    _count_failure({"image_sha256": binascii.hexlify(m.image_sha256).decode(), "version": m.version})


# An artifact that failed by itself after it was written into the slot (a mirror serving other
# bytes under its name, a patch that does not produce the image, an image ESP-IDF refuses): the
# next 2^(n+1) - 1 checks after its n-th failure take another artifact or wait, or every check
# would erase and rewrite the whole slot (flash wear). {"a": 16 hex of its SHA-256, "n", "s"}.
def hold():
    """{"a", "n", "s"}: the artifact on hold and the checks it still skips, or None."""
    h = state.get_json("wf")
    return h if h is not None and h.get("s", 0) > 0 else None


def held_once(h):
    """One check passed the artifact on hold by."""
    h["s"] -= 1
    state.set_json("wf", h)


def artifact_failed(sha):
    import binascii

    a = binascii.hexlify(sha[:8]).decode()
    h = state.get_json("wf")
    n = h["n"] + 1 if h is not None and h.get("a") == a else 1
    state.set_json("wf", {"a": a, "n": n, "s": min((2 << n) - 1, 255)})


def hold_clear():
    if state.get_json("wf") is not None:
        state.erase("wf")


def known_bad():
    """SHA-256 (hex) of an image that failed here KNOWN_BAD_AFTER times, or None."""
    bad = state.get_json("bad")
    if bad and (bad.get("n", 0) >= KNOWN_BAD_AFTER or bad.get("x", 0) >= EXCUSED_AFTER):
        return bad.get("image_sha256")
    return None


def migrate(run):
    """Records of library versions before the ledger (cur/prev/pend) into slot records, once."""
    for key in ("prev", "cur", "pend"):
        rec = state.get_json(key)
        if rec is None:
            continue
        part = slot.by_label(rec.get("slot")) if rec.get("slot") else run
        if part is not None:
            staged(part, rec)
            if key != "pend":
                _flag(part, _OK)
        state.erase(key)
    if state.get_json("seen") is not None:
        state.erase("seen")  # its channel is unknown: the next manifest starts the replay records again


# --- replays ---------------------------------------------------------------------------------------

# The newest signed `created` per channel (the last few channels followed), in two copies with a
# generation: the newer copy is kept, the older one rewritten, so a cut never loses the newest.
# Only manifests meant for this device (its chip and board) are recorded, so a change of the
# board setting does not reset it.
_SEEN = ("s0", "s1")
_SEEN_CHANNELS = const(4)


def _seen_table():
    # (index of the newer copy or -1, its generation, its entries [[channel, version, created]])
    best, gen, entries = -1, -1, []
    for i in (0, 1):
        s = state.get_json(_SEEN[i])
        if isinstance(s, dict) and isinstance(s.get("e"), list) and isinstance(s.get("g"), int) and s["g"] > gen:
            best, gen, entries = i, s["g"], s["e"]
    return best, gen, entries


def seen(channel):
    """{"v", "t"}: version and signed `created` of the newest manifest seen for `channel`, or None."""
    for e in _seen_table()[2]:
        if e[0] == channel:
            return {"v": e[1], "t": e[2]}
    return None


def saw(m, channel):
    """A verified manifest meant for this device: remember it when it is the newest so far."""
    i, gen, entries = _seen_table()
    table = [[channel, m.version, m.created]]
    for e in entries:
        if e[0] == channel:
            if m.created <= e[2]:
                return
        elif len(table) < _SEEN_CHANNELS:
            table.append(e)
    state.set_json(_SEEN[1 if i == 0 else 0], {"g": gen + 1, "e": table})


# --- the download journal ------------------------------------------------------------------------

def resume_point(ident, image_size, tag):
    """(offset, etag) to resume the raw download `ident` from, or (0, None). `tag`: a byte of the
    artifact's identity, kept with the offset so that one left by another download is not used."""
    j = state.get_json("jrnl")
    if j is None:
        return 0, None
    for k in ident:
        if j.get(k) != ident[k]:
            return 0, None
    at = state.get_int("jat", 0)
    if at & 0xFF != tag:
        return 0, None
    at = (at >> 8) * slot.BLOCK
    if not 0 < at < image_size:
        return 0, None
    return at, j.get("etag")


def journal(ident, etag):
    """A raw download of `ident` starts (or restarts) into its slot; `etag` the server's validator."""
    j = dict(ident)
    if etag is not None and len(etag) <= _MAX_ETAG:
        j["etag"] = etag  # bounded by construction: an oversized optional value is dropped
    state.set_json("jrnl", j)


def journal_every(image_size):
    """Bytes between two journal writes for an image of `image_size` bytes (a block multiple)."""
    n = (image_size // JOURNAL_WRITES + slot.BLOCK - 1) // slot.BLOCK * slot.BLOCK
    return n if n > _JOURNAL_MIN else _JOURNAL_MIN


def progress(done, tag, every):
    if done % every == 0:
        state.set_int("jat", (done // slot.BLOCK) << 8 | tag)


def journal_clear():
    state.erase("jrnl")


# --- the agent's boot bookkeeping ------------------------------------------------------------------

def probe(run):
    """{"slot", "tries", "undecided"}: boots of the unconfirmed running image so far, and how many
    of them could not judge it (clock_unset), or None. One i32 ((OTA index + 1) << 16 | undecided
    << 8 | tries): if it were lost, an image on probation would pass for confirmed."""
    v = state.get_int("probe")
    if v is None:
        return None
    i = slot.ota_index(run)
    if i is None or v >> 16 != i + 1:
        state.erase("probe")  # a rolled-back image's counter
        return None
    return {"slot": slot.label(run), "tries": v & 0xFF, "undecided": (v >> 8) & 0xFF}


def set_probe(p):
    if p is None:
        state.erase("probe")
    else:
        part = slot.by_label(p["slot"])
        i = slot.ota_index(part) if part is not None else None
        if i is not None:
            state.set_int("probe", (i + 1) << 16 | min(p.get("undecided", 0), 0xFF) << 8 | min(p.get("tries", 0), 0xFF))


def report_later(doc):
    """Keep a report (e.g. a rollback) for the image that runs after the reset to send."""
    try:
        state.set_json("rep", doc)
    except (OSError, ValueError):
        pass  # a report, not a decision


def take_report():
    rep = state.get_json("rep")
    if rep is not None:
        state.erase("rep")
    return rep


def rollback_support_seen(value=None):
    """1/0: whether the bootloader was seen to have app rollback (None: not yet). With `value`,
    record it (only when it changed: every write is a flash program)."""
    have = state.get_int("rb")
    if value is not None and value != have:
        try:
            state.set_int("rb", value)
        except OSError:
            pass
    return have if value is None else value

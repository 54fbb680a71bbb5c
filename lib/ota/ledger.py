# What the device remembers across time, and the only module that changes it (python-tuf's
# TrustedMetadataSet is the model: a record changes only through the transitions below, each made
# durable before the step that depends on it). Every record is one NVS entry (ota.state). ESP-IDF
# writes an i32 as one entry: a power cut leaves it old or new. A blob it can lose when a cut falls
# between a new version's data and its index (espsim.nvs, idf_quirks), so a blob that matters is
# never rewritten in place: written once after its key was erased, or kept in two keys. The ones
# rewritten (jrnl, bad, rep) cost at most a re-download, a failure count or a report when lost.
#
# Which release runs is never stored as such: it is the record of the slot the bootloader booted.
#   r0, r1, rf  blob  the signed release the image in ota_0 / ota_1 / factory is, written once:
#                     {"version", "security_version", "image_sha256", "manifest_sha256", "channel",
#                      "keys", "elf": the image's ELF SHA-256 prefix}
#   f0, f1, ff  i32   its flags: 1 "ok" once it confirmed itself here, 2 "judged" once its failure
#                     was counted
#         forget()    erased before the first block of another image is written into the slot
#         staged()    written once the image is verified in the slot, BEFORE set_boot
#         confirmed() ok = 1 after the image passed its self-test; raises the counter
#         failed()    judged = 1 (one failure counted in "bad" unless excused)
#         drop()      at boot, by ota.bootstate.reconcile, which applies the bootloader's verdict:
#                     a record whose slot never became bootable is dropped (no failure); one the
#                     bootloader aborted or refused counts one failure, then is dropped (a refused
#                     one also points the boot back at the running slot); a record whose slot
#                     holds another build now (flashed by cable) is dropped
# A slot may run again (ota.rollback) only when its record is a confirmed release not below the
# counter, or, before any counter, when it has no record (a board flashed by cable).
#   secver i32  anti-rollback counter: the highest security_version confirmed here
#   rb     i32  once seen: 1 the bootloader has app rollback, 0 the firmware not, 2 an old bootloader
#   bad    blob image SHA-256, version and failure count of the last release that failed here
#   s0, s1 blob channel, board, version and signed `created` of the newest manifests meant for this
#               device, the older copy rewritten: one signed before is a replay (ota.policy)
#   jrnl   blob the raw download in progress: manifest, artifact, slot, ETag (bounded)
#   jat    i32  blocks of it in the slot (every journal_every() bytes) << 8 | a byte of the artifact's
#               SHA-256 (one left by another download is not taken): re-hashed before use
#   probe  i32  boots of an unconfirmed image so far (the agent's boot retry limit), with its slot
#   rep    blob a report to send once the network is up (a rollback, sent by the previous image)
from . import slot, state
from .compat import const
from .errors import OTAError

# The journal is written every tenth of the image (at least every 64 KiB): a power cut re-downloads
# at most that much, and an install makes at most ten NVS writes for it (a flash program each).
JOURNAL_WRITES = const(10)
_JOURNAL_MIN = const(65536)
KNOWN_BAD_AFTER = const(2)  # failures of one image here before the policy refuses it ("known_bad")
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


def raw(part):
    """The record of `part` as stored, stale or not (with "ok"/"judged" from its flags), or None."""
    rec = state.get_json(_key(part))
    if rec is not None:
        flags = state.get_int(_key(part, "f"), 0)
        rec["ok"] = flags & _OK
        rec["judged"] = 1 if flags & _JUDGED else 0
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
    """Before the first write into `part`: what it held is no longer there. (ota.install_image,
    the low-level writer, does not load the ledger: a record it leaves names another build than the
    slot then holds, which release() and bootstate.reconcile() see by the ELF SHA-256.)"""
    state.erase(_key(part, "f"))  # the flags first: a cut between leaves an unconfirmed record
    state.erase(_key(part))


drop = forget  # at boot: the slot's record no longer names a release that may boot


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
    if rec is None or rec["ok"]:
        return
    _flag(part, _OK)
    sv = rec.get("security_version", 0)
    if sv > security_counter():
        state.set_int("secver", sv)


def security_counter():
    return state.get_int("secver", 0)


def failed(part, remember=True):
    """The unconfirmed image in `part` failed here (its self-test, or ota.rollback() from it):
    counted once when `remember` (a network fault is not the release's), then marked judged so that
    nothing counts it again."""
    rec = raw(part)
    if rec is None or rec["ok"] or rec["judged"]:
        return
    if remember:
        count_failure(rec)
    _flag(part, _JUDGED)


def count_failure(rec):
    """One failure of the release `rec` here, unless it was judged already."""
    if rec.get("judged"):
        return
    bad = state.get_json("bad") or {}
    n = bad.get("n", 0) + 1 if bad.get("image_sha256") == rec.get("image_sha256") else 1
    state.set_json("bad", {"image_sha256": rec.get("image_sha256"), "version": rec.get("version"), "n": n})


def known_bad():
    """SHA-256 (hex) of an image that failed here KNOWN_BAD_AFTER times, or None."""
    bad = state.get_json("bad")
    return bad.get("image_sha256") if bad and bad.get("n", 0) >= KNOWN_BAD_AFTER else None


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
    state.erase("seen")  # its channel is unknown: the next manifest starts the replay records again


# --- replays ---------------------------------------------------------------------------------------

_SEEN = ("s0", "s1")  # two keys, the older one rewritten: a cut never loses the newest (see above)


def _seen_all():
    out = []
    for k in _SEEN:
        s = state.get_json(k)
        out.append(s if s is not None and "t" in s else None)
    return out


def seen(channel, board):
    """{"v", "t"}: version and signed `created` of the newest manifest seen for this channel and
    board, or None."""
    best = None
    for s in _seen_all():
        if s is not None and s.get("c") == channel and s.get("b") == board and (best is None or s["t"] > best["t"]):
            best = s
    return best


def saw(m, channel, board):
    """A verified manifest meant for this device: remember it when it is the newest so far."""
    a, b = _seen_all()
    newest = seen(channel, board)
    if newest is not None and m.created <= newest["t"]:
        return
    # Keep the newest copy for this channel and board; overwrite the other (else the empty or older).
    if newest is not None:
        k = _SEEN[1] if newest is a else _SEEN[0]
    else:
        k = _SEEN[0] if a is None or (b is not None and a["t"] <= b["t"]) else _SEEN[1]
    state.set_json(k, {"c": channel, "b": board, "v": m.version, "t": m.created})


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
    """{"slot", "tries"}: boots of the unconfirmed running image so far, or None. One i32
    ((OTA index + 1) << 8 | tries): if it were lost, an image on probation would pass for confirmed."""
    v = state.get_int("probe")
    if v is None:
        return None
    i = slot.ota_index(run)
    if i is None or v >> 8 != i + 1:
        state.erase("probe")  # a rolled-back image's counter
        return None
    return {"slot": slot.label(run), "tries": v & 0xFF}


def set_probe(p):
    if p is None:
        state.erase("probe")
    else:
        part = slot.by_label(p["slot"])
        i = slot.ota_index(part) if part is not None else None
        if i is not None:
            state.set_int("probe", (i + 1) << 8 | min(p.get("tries", 0), 0xFF))


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

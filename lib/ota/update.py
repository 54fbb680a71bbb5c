# The update flow, independent of the transport (a fetcher, see fetch.py):
#
#   manifest (bounded) -> signatures -> policy -> pick an artifact -> download -> [inflate]
#   -> [patch against the running image] -> install (image checks, read-back, set_boot)
#   -> remember the release as pending -> reset
#
# The artifact's own length and SHA-256 are checked as it streams (a mismatch stops before
# set_boot), and the resulting image's SHA-256 is checked by install(): both are signed values.
import hashlib

from . import ledger, slot
from .compat import const
from .errors import OTAError
from .fetch import fetch_bytes, resolve

BLOCK = slot.BLOCK


class Checked:
    """A stage that bounds and hashes what the fetcher delivers against the signed artifact.

    start: the artifact offset the body begins at (a resumed download); its hash then cannot be
    checked here (a hash state cannot be saved), and the signed image hash checked by install()
    over the whole slot stands for it (a resumed artifact is always the raw image)."""

    def __init__(self, body, size, sha256, start=0, received=None):
        self.body = body
        self.received = received  # [n]: bytes received, summed over the attempts of one install
        self.size = size
        self.sha256 = sha256 if not start else None
        self.got = start
        self.broken = False
        self._sha = hashlib.sha256()

    def readinto(self, buf):
        try:
            n = self.body.readinto(buf)
        except OTAError:
            self.broken = True  # the network's (or the source's) failure, not the artifact's
            raise
        if n:
            self.got += n
            if self.received is not None:
                self.received[0] += n
            if self.got > self.size:
                self.broken = True
                raise OTAError("too_long", "the artifact is longer than its signed %d bytes" % self.size)
            if self.sha256 is not None:
                self._sha.update(buf if n == len(buf) else memoryview(buf)[:n])
            return n
        if self.got != self.size:
            self.broken = True
            raise OTAError("truncated", "the artifact ended after %d of %d bytes" % (self.got, self.size))
        if self.sha256 is not None and self._sha.digest() != self.sha256:
            raise OTAError("artifact_hash_mismatch", "the downloaded artifact is not the signed one")
        return 0


# A download that breaks is retried this many times in one check (Range from the last written
# block for a raw image; from zero for compressed and delta artifacts, whose decoder state is lost).
RETRIES = 3
_RESUMABLE = ("source_error", "truncated", "timeout", "stalled", "network", "connect", "bad_response")


def device_facts(overrides=None):
    """What the policy needs to know about this device; `overrides` (a dict) wins."""
    import sys

    from .manifest import CHIP_IDS

    run = slot.running()
    buf = bytearray(slot.DESCRIPTOR_END)
    cid = slot.chip_id(run, buf)
    chip = None
    for name in CHIP_IDS:
        if CHIP_IDS[name] == cid:
            chip = name
    rec = ledger.release(run)
    desc = slot.descriptor(run, buf) or {}
    facts = {
        "chip": chip,
        "slot_size": slot.size(slot.next_update(run)),
        "running_version": ledger.running_version(run, desc),
        "idf": _idf_version(desc.get("idf_ver")),
        "board": running_board(desc),
        "running_sha256": rec.get("image_sha256") if rec else None,
        "security_counter": ledger.security_counter(),
        "known_bad": ledger.known_bad(),
        "micropython": "%d.%d.%d" % sys.implementation.version[:3] if sys.implementation.name == "micropython" else None,
    }
    if overrides:
        facts.update(overrides)
    return facts


def running_board(desc):
    """The board the running image was built for, when it says so (the settings' "board", given by
    the agent, comes first): its app descriptor's project_name unless that is MicroPython's own
    ("micropython" in every MicroPython build: ports/esp32/CMakeLists.txt, project(micropython)),
    else MicroPython's build name (sys.implementation._build, "ESP32_GENERIC-OTA", v1.25+) on an
    ESP32. None when unknown: the policy then refuses board-specific releases (fail closed)."""
    import sys

    name = (desc or {}).get("project")
    if name and name != "micropython":
        return name
    if sys.platform == "esp32":
        return getattr(sys.implementation, "_build", None) or None
    return None


def _idf_version(v):
    # The ESP-IDF the running image was built with, for "requires.idf": "v5.2.2-dirty" -> "5.2.2";
    # what is no version ("HEAD-HASH-NOTFOUND") is kept as it is, and the policy refuses it.
    if not v:
        return None
    core = (v[1:] if v[0] == "v" else v).split("-")[0]
    return core if core.replace(".", "").isdigit() and 1 <= core.count(".") <= 2 else v


def _running_image_sha(run, buf):
    length = slot.verify_in_place(run, buf)
    return slot.hash_range(run, length, buf).digest(), length


def _fits(a):
    # A compressed artifact needs a 2**wbits-byte window: one larger than this device's
    # (inflate.WBITS) would not fit next to TLS, so it is not taken.
    if a.encoding == "raw":
        return True
    from .inflate import WBITS

    return a.wbits <= WBITS


# manifest.DELTAS, kept here: the manifest module is out of memory during the download
# (forget_verifier) and must not be loaded again for two names
DELTAS = ("delta", "rdelta")


def choose(m, run, buf, prefer_delta=True, avoid=None, decoder=True):
    """(artifact, base length or None): a delta whose base is the running image, else the
    smallest full artifact; only artifacts this device can decompress, and not `avoid` (one on
    hold, see ledger.hold). decoder=False: the heap has no room for a decoder, the raw image only."""
    full = [a for a in m.artifacts if a.encoding not in DELTAS and _fits(a) and a is not avoid]
    if not decoder:
        full = [a for a in full if a.encoding == "raw"]
        if not full:
            raise OTAError("out_of_memory", "release %s: the heap has no %d-byte hole for a decoder and the release no "
                           "raw image to take instead" % (m.version, ROOM))
    if not full and avoid is not None:
        raise OTAError("artifact_held", "release %s: its artifact failed after download here; it is retried "
                       "after a few checks (a mirror serving other bytes, or a broken release)" % m.version)
    if not full:
        raise OTAError("window_too_large", "release %s has no full artifact this device can decompress: each needs "
                       "a window over its limit; publish it with wbits <= 12 (the default) or a raw image" % m.version)
    full.sort(key=lambda a: a.size)
    deltas = [a for a in m.artifacts if a.encoding in DELTAS and _fits(a) and a is not avoid]
    deltas.sort(key=lambda a: a.size)  # the smallest patch from the running image
    if prefer_delta and deltas and decoder:
        try:
            digest, length = _running_image_sha(run, buf)
        except OTAError:
            digest = None
        for a in deltas:
            if a.base_sha256 == digest:
                return a, length
    return full[0], None


def fetch_verified(fetcher, manifest_url, trust, verify=True):
    """The release manifest at `manifest_url`, fetched (bounded) and verified; OTAError otherwise."""
    from . import manifest

    blob = fetch_bytes(fetcher, manifest_url, manifest.MAX_DOCUMENT + 512)
    return manifest.load(blob, trust) if verify else manifest.load_unverified(blob)


def check(fetcher, manifest_url, trust, facts=None, verify=True):
    """Fetch and verify the manifest and decide: returns the Manifest, or raises OTAError with
    the reason it may not be installed (e.g. "up_to_date")."""
    from . import policy

    m = fetch_verified(fetcher, manifest_url, trust, verify)
    f = device_facts(facts)
    channel = f.get("channel") or m.channel
    if verify:
        f["seen"] = ledger.seen(channel)
    try:
        policy.check(m, f)
    except OTAError as e:
        if verify and e.reason not in policy.NOT_FOR_THIS_DEVICE:
            ledger.saw(m, channel)  # e.g. a halt: a replay of what was signed before is refused
        e.target_version = m.version  # the agent's report names the release it refused
        raise
    if verify:
        ledger.saw(m, channel)
    return m


class Release:
    """What installing needs from a verified Manifest, in plain objects: with it the verification
    code (manifest parsing, Ed25519, SHA-512, policy) can leave the heap before the download."""

    def __init__(self, m):
        self.version = m.version
        self.sha256 = m.sha256
        self.image_size = m.image_size
        self.image_sha256 = m.image_sha256
        self.artifacts = [_Artifact(a) for a in m.artifacts]
        self._summary = m.summary()

    def summary(self):
        return dict(self._summary)


class _Artifact:
    def __init__(self, a):
        self.url, self.size, self.sha256 = a.url, a.size, a.sha256
        self.encoding, self.wbits, self.base_sha256 = a.encoding, a.wbits, a.base_sha256


_VERIFIER = ("manifest", "cjson", "trust", "ed25519", "sha512", "policy")


def forget_verifier():
    """Drop the verification modules from memory (they are loaded again when next needed). On a
    device that installed the library as .mpy files their bytecode is heap: tens of KB that the
    download and the image check can use instead. Frozen modules cost nothing either way."""
    import gc
    import sys

    pkg = sys.modules.get("ota")
    for name in _VERIFIER:
        sys.modules.pop("ota." + name, None)
        if pkg is not None and name in pkg.__dict__:
            try:
                delattr(pkg, name)
            except (AttributeError, TypeError):
                setattr(pkg, name, None)
    gc.collect()


# Room for a decoder: MicroPython's DeflateIO allocates its state (~1.3 KB) and then its window
# (1 << wbits, at most 1 << inflate.WBITS) at its first read, one after the other.
_DECODER_STATE = const(2048)
ROOM = const(4096 + _DECODER_STATE)


def reserve():
    """(block buffer, [room for a decoder]): the download's big blocks, taken before the manifest
    is verified as far as the heap has them (what it has not is None: install_release allocates
    it later). A decoder allocates its state and window at its first read, and by then the
    verifier's code has come and gone and TLS is up: under MicroPython the heap may have no 4 KiB
    hole left with far more than that free (measured: `ota-tool demo` at 160-168k). The buffer is
    kept when the room is not there: dropping both made the raw signed update fail at 150 KiB
    (bench_update.py --targets' app) for want of a 4 KiB hole after the verification."""
    try:
        buf = bytearray(BLOCK)
    except MemoryError:
        return None, None
    return buf, _room()  # the block buffer alone is still worth holding: a raw artifact needs no more


def _room():
    # [room for a decoder], or None when the heap has no hole that big: then only a raw artifact
    # is chosen (choose), rather than one whose decoder would fail for want of it.
    try:
        return [bytearray(ROOM)]
    except MemoryError:
        return None


def install_release(fetcher, manifest_url, m, progress=None, buf=None, room=None):
    """Download release `m` (a verified, policy-checked Manifest or its Release), install it,
    record it in the ledger, make it boot next. Returns the install result (the caller resets).
    buf, room: from reserve(), taken before the verification (else allocated here).

    A raw image download resumes: within this call after a network error, and across a reboot
    through the ledger's journal. What is already in the slot is re-hashed, not trusted. A delta
    or compressed artifact that does not produce the signed image is replaced, once, by a full one."""
    buf = buf or bytearray(BLOCK)
    if not room:
        room = _room()
    run = slot.running()
    hold = ledger.hold()
    avoid = None
    for a in m.artifacts if hold is not None else ():
        if _hex(a.sha256[:8]) == hold["a"]:
            avoid = a
    if avoid is not None:
        ledger.held_once(hold)
    art, base_len = choose(m, run, buf, avoid=avoid, decoder=room is not None)
    try:
        result = _install_artifact(fetcher, manifest_url, m, run, art, base_len, progress, buf, room)
    except OTAError as e:
        _failed(art, e)
        full = _fallback(m, art, e, avoid)
        if full is None:
            raise
        print("ota: the %s artifact of %s failed (%s): the full image instead" % (art.encoding, m.version, e))
        try:
            result = _install_artifact(fetcher, manifest_url, m, run, full, None, progress, buf, room)
        except OTAError as e:
            _failed(full, e)
            raise
        result["fallback_from"] = art.encoding
        art = full
    from .install import make_bootable

    target = slot.by_label(result["slot"])
    ledger.staged(target, m.summary())  # durable before the boot choice changes
    try:
        make_bootable(target)
    except OTAError as e:
        ledger.forget(target)  # ESP-IDF refused it: the record must not name what will not boot
        ledger.install_failed(m)  # the signed image itself: counted like a failed self-test
        _failed(art, e)
        raise
    ledger.bootable(target)
    if hold is not None:
        ledger.hold_clear()
    result["version"] = m.version
    result["artifact"] = art.encoding
    return result


# Failures that say nothing against an artifact (the network, the device's state): no fallback.
_NOT_THE_ARTIFACT = _RESUMABLE + ("timeout", "tls", "tls_verify", "dns", "insecure", "no_ca", "bad_ca", "out_of_memory",
                                  "pending_verify", "reboot_pending", "no_ota_partition", "flash_error",
                                  "flash_verify_failed", "too_large",
                                  # a resume the server's replicas did not follow (ETags that differ)
                                  "range_mismatch", "range_not_satisfiable", "bad_resume")
# A resume that does not fit what the server or the slot holds now: start again from zero, once.
_RESUME_BROKEN = ("range_mismatch", "range_not_satisfiable", "bad_resume", "hash_mismatch", "bad_image",
                  "length_mismatch")


def _its_own(e):
    # Whether a failure says something against the artifact (not the network, not the device).
    return e.reason not in _NOT_THE_ARTIFACT and not e.reason.startswith("http_5")


def _failed(art, e):
    # After bytes of it went into the slot (an HTTP status or a missing file comes before any):
    # it is left aside for a few checks, or a mirror could have the slot rewritten at every one.
    if e.reason == "set_boot_failed" or (_its_own(e) and not e.reason.startswith("http_") and e.reason != "not_found"):
        ledger.artifact_failed(art.sha256)


def _fallback(m, art, e, avoid=None):
    # The full artifact to use when a delta or compressed one failed by itself (or its decoder
    # found no room in the heap: the raw image needs none), else None.
    if art.encoding == "raw" or not (_its_own(e) or e.reason == "out_of_memory"):
        return None
    full = [a for a in m.artifacts if a.encoding not in DELTAS and a is not art and a is not avoid and _fits(a)]
    if not full:
        return None
    for a in full:
        if a.encoding == "raw":
            return a
    full.sort(key=lambda a: a.size)
    return full[0]


def _install_artifact(fetcher, manifest_url, m, run, art, base_len, progress, buf, room):
    from .install import check_can_install, install

    _, target = check_can_install(run)
    ledger.forget(target)  # before the first block changes: the slot no longer holds that release

    raw = art.encoding == "raw"
    if raw:
        if room:
            del room[:]  # no decoder: its room goes back to the heap (the caller holds the list)
        room = None
    elif not room:
        try:
            room = [bytearray((1 << art.wbits) + _DECODER_STATE)]  # inflate.Inflate frees it just in time
        except MemoryError:
            raise OTAError("out_of_memory", "no room in the heap for the %s artifact's decoder" % art.encoding)
    url = resolve(manifest_url, art.url)
    ident = {"m": _hex(m.sha256), "a": _hex(art.sha256), "slot": slot.label(target)}
    tag = art.sha256[0]
    resume, etag = ledger.resume_point(ident, m.image_size, tag) if raw else (0, None)
    journaled = None  # the validator the journal holds now
    got = [0]  # bytes received from the network, all attempts
    attempt = 0
    restarted = False
    while True:
        body = checked = None
        try:
            body = fetcher.open(url, resume, art.size, etag)
            if body.offset != resume:
                resume = 0  # the server ignored the Range or the artifact changed: from zero
            if raw and (journaled is None or journaled != (body.etag or "")):
                ledger.journal(ident, body.etag)
                journaled = body.etag or ""
            checked = Checked(body, art.size, art.sha256, resume, got)
            stage = _pipeline(checked, art, m, run, base_len, room)
            result = install(stage, m.image_size, m.image_sha256, resume_from=resume, buf=buf,
                             progress=_journal(progress, tag, ledger.journal_every(m.image_size)) if raw else progress,
                             set_boot=False, boot_follows=True)
            break
        except OTAError as e:
            if e.reason == "truncated" and not raw and checked is not None and not checked.broken:
                # The artifact came as far as its decoder read it, and decodes to less than the
                # image: the artifact's fault, not the network's (a full one is taken instead)
                e = OTAError("short_output", "the %s artifact decodes to fewer bytes than the %d of the image"
                             % (art.encoding, m.image_size))
            if resume and not restarted and e.reason in _RESUME_BROKEN:
                # What the journal said is not what the slot or the server holds: from zero, once.
                restarted = True
                resume, etag = 0, None
                continue
            if raw and e.reason == "hash_mismatch" and checked is not None and checked.sha256 is None:
                # install() hashed the artifact for both (one SHA-256, see _pipeline): name what failed
                e = OTAError("artifact_hash_mismatch", "the downloaded artifact is not the signed one")
            attempt += 1
            network = e.reason in _RESUMABLE or e.reason.startswith("http_5")
            if not network:
                ledger.journal_clear()  # nothing worth resuming: the next check starts from zero
            if attempt > RETRIES or not network:
                raise e  # (not a bare raise: e may be the short_output made above)
            resume = e.written if raw else 0
            if body is not None:
                etag = body.etag
        finally:
            if body is not None:
                body.close()
    if raw:
        ledger.journal_clear()
    result["downloaded"] = got[0]
    return result


def _pipeline(stage, art, m, run, base_len, room):
    if art.encoding == "raw":
        if art.sha256 == m.image_sha256 and art.size == m.image_size:
            stage.sha256 = None  # install() checks the same signed digest over the same bytes: hash once
        return stage
    from .inflate import Inflate

    if art.encoding in ("delta", "rdelta"):
        if art.encoding == "delta":
            from .delta import Patch, max_raw_patch_len
        else:
            from .reloc import RelocPatch as Patch, max_raw_patch_len

        base = slot.Reader(run)
        base.size = base_len
        return Patch(Inflate(stage, "zlib", art.wbits, max_raw_patch_len(m.image_size), room), base, m.image_size)
    return Inflate(stage, art.encoding, art.wbits, m.image_size, room)


def _journal(progress, tag, every):
    # The written length in the ledger every `every` bytes (a power cut re-downloads at most that
    # much), not every block: each NVS write is a flash program on a board.
    def step(done, total):
        ledger.progress(done, tag, every)
        if progress:
            progress(done, total)

    return step


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()


def update(fetcher, manifest_url, trust, facts=None, reboot=True, progress=None, verify=True):
    """Check for, download, verify and install the release the manifest at `manifest_url` names.

    Returns None when there is nothing to install ("up_to_date"), the install result otherwise;
    resets into the new image when `reboot`. Every refusal is an OTAError with a reason, and so is
    a heap too small for the update ("out_of_memory")."""
    try:
        return _update(fetcher, manifest_url, trust, facts, reboot, progress, verify)
    except MemoryError:
        from .compat import collect

        collect()
        raise OTAError("out_of_memory", "out of memory during the update: load less before it, or use the "
                       "firmware with the library frozen in (firmware/)")


def _update(fetcher, manifest_url, trust, facts, reboot, progress, verify):
    buf, room = reserve()
    try:
        m = check(fetcher, manifest_url, trust, facts, verify)
    except OTAError as e:
        if e.reason == "up_to_date":
            return None
        raise
    rel = Release(m)
    m = trust = None
    forget_verifier()
    result = install_release(fetcher, manifest_url, rel, progress, buf, room)
    if reboot:
        import machine

        machine.reset()
    return result

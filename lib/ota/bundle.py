# App-level updates: signed, atomic updates of the Python files (an "app" bundle) and of settings
# files ("config"), in step with the firmware.
#
# Documents (same wire format as firmware manifests, ota.manifest: signature lines + canonical JSON)
#   {"type": "app" | "config", "version": "1.2.0", "root": "app", "created": 1700000000,
#    "channel": "stable",                          optional: refused on a device of another channel
#    "requires": {"firmware": ">=1.2.0,<2.0.0"},   optional: the signed firmware versions it runs on
#    "wbits": 12,                                  required when a file has "zsize" (9..12)
#    "files": [{"path": "main.py", "size": 1234, "sha256": "<64 hex>", "zsize": 610}, ...]}
#   Every file is an artifact named by its content next to the document: sha256-<first 16 hex of
#   the file's SHA-256>.file (the bytes), and .zlib (zlib stream, `wbits` window) when "zsize" is
#   given. The device fetches the .zlib when there is one. Either way it checks the bytes it writes
#   against the signed size and SHA-256, and the download against its length (zsize or size).
#   A "config" document is the same with settings files in it (ota-tool release-app --config); it
#   owns its files, the "app" document owns its own: each update replaces only its own type's files
#   (a path both declare is the last installed document's).
#   Limits: 64 files (cjson's item cap), 8 KiB document, path <= 128 chars, at most 8 levels,
#   names <= 64 chars of [A-Za-z0-9._-] (not "." or ".."), 1 MiB per file, 2 MiB per bundle. No
#   absolute paths, no empty components, no "..", no two paths equal ignoring case, no path that
#   is also a folder of another, no name starting ".ota" (reserved), no name ending in "." (FAT
#   drops it), nothing under "ota/" (it would shadow the updater: main.py puts the root on
#   sys.path); names are compared case-insensitively, as FAT does. The root is one name of
#   [a-z0-9_-], not starting "ota", never "lib" (where ota-tool deploy puts the updater) nor the
#   folder that holds the running updater, and a root folder that holds an "ota" entry is refused
#   (check()): no bundle can move the updater or the entry points away, at any power cut.
#   littlefs has no links, so there is no symlink to follow on the device; the host tool refuses
#   symbolic links in the folder it packs.
#
# Filesystem layout (paths relative to the filesystem root, "/" on a board; R = the root)
#   R/               the app the device runs: R/.ota-app.json and R/.ota-config.json are the signed
#                    documents it was built from (what the device has: the delta base)
#   R.new/           staging: the next tree, complete before anything switches
#   R.old/           the previous tree, kept for rollback until the next update
#   R.del/           garbage: a tree moved aside in one rename, deleted at leisure
#   ota-app.journal  the phase, written atomically (new file + rename)
# A tree is switched and restored by directory renames, which littlefs commits atomically; a
# tree is only deleted after a rename has moved it to R.del, so no name ever holds half a tree.
#
# User data: the bundle declares its files; a new tree gets them from the bundle, and every other
# file of R is carried over as it is (user files, and the other document type's files) except the
# files the previous document of the same type declared and the new one does not (those are the
# release's to remove: a stale module must not survive). Files are carried by copying, so data
# that changes often belongs outside R (e.g. data/): a file written between staging and switching
# is in R.old only. Empty folders are not carried. At most 128 carried files.
#
# Journal phases (state machine in ota/apptree.py, the boot side; apptree.recover() runs at every
# boot, from Agent.boot(), BEFORE the app is imported)
#   staging      R.new is being filled for document "m"          boot: nothing (resumed later)
#   staged       R.new complete and verified                      boot: switch, when "fw" (the
#                                                                 firmware it waits for) runs, or
#                                                                 there is none and R.new's
#                                                                 requirements hold
#   swapping     R.old -> R.del, R -> R.old, R.new -> R           boot: finish it (the directory
#                                                                 that exists says how far it got)
#   swapped      new tree on probation ("tries" boots)            boot: unbound: count the boot,
#                                                                 restore after boot_retry_limit;
#                                                                 bound to a firmware: restore when
#                                                                 another firmware runs, confirm
#                                                                 once that firmware is confirmed
#   rolling_back R -> R.del, R.old -> R                           boot: finish it
#   confirmed    steady state                                     boot: R must support the firmware
#                                                                 that runs, else R.old is restored
#                                                                 if it does, else "unsupported"
# "old" records whether R existed when the switch began (a first install restores to nothing).
#
# Firmware and app in step
#   - an app document's "requires" names the signed firmware versions it supports (ota.state
#     "cur", or the pending release on its first boot); an app is only switched to, and only
#     kept at boot, on a firmware it supports;
#   - a firmware manifest may name the app that must come with it ("app": {"url", "sha256" of the
#     app document, "version"}): the agent stages that app (not switched), installs the firmware
#     and resets; the new firmware's first boot switches to the staged tree before the app is
#     imported, one self-test covers both, and the app is confirmed with the firmware; if the
#     firmware goes back (self-test, brownout, bootloader), the next boot restores the app tree;
#   - a firmware release without an app is refused while the installed app does not support it;
#   - the running firmware's version is ota.state's release whose slot runs (apptree.firmware_version:
#     after ota.rollback() the current release is in the other slot and the previous one runs).
#
# The agent (ota.agent): Agent.boot() runs apptree.recover() before anything else (its result is
# agent.app_state; main.py imports the app after boot(), unless "unsupported" or "error"); an app
# update alone gets the firmware's self-test (a failure restores the previous tree and resets).
# check_now() checks the firmware first, then the documents at ota.json's "app_source" and
# "config_source": a new one is staged, switched to and reset into. A document's version must rise
# ("up_to_date"; "downgrade" unless allow_downgrade); one whose tree failed its self-test
# KNOWN_BAD_AFTER times here is refused ("known_bad").
#
# Memory: one 2 KiB block buffer for every file; the signed document is written into R.new first
# and dropped; plan() reads what staging needs from R's documents, so the agent drops the
# verification code (ota.update.forget_verifier) before the downloads; at most one decompressor
# (a 2**wbits window) at a time, and a file whose window finds no room (MemoryError: a fragmented
# heap) is downloaded raw instead. Every file is checked as it streams and read back at the end.
#
# Split: this module (documents, policy, staging; loaded for an update check) and ota.apptree
# (journal, switch, confirm, rollback, recover; loaded at every boot, so kept small).
import binascii
import hashlib
import json

from . import apptree
from .apptree import clear, isdir, journal, names, set_journal, trash
from .compat import collect, const, fs
from .errors import OTAError

TYPES = ("app", "config")
MAX_FILES = const(64)
MAX_PATH = const(128)
MAX_NAME = const(64)
MAX_DEPTH = const(8)
MAX_FILE = const(0x100000)
MAX_TOTAL = const(0x200000)
MAX_CARRY = const(128)
MAX_WBITS = const(12)
KNOWN_BAD_AFTER = 2  # an app that failed its self-test this many times here is not installed again
RETRIES = 3  # a file download that breaks is retried this many times
BLOCK = const(2048)
_MAX_BLOB = const(8704)  # ota.manifest.MAX_DOCUMENT + room for the signature lines
_PART = ".ota-part"
_EEXIST = const(17)
_ENOSPC = const(28)
_TRANSIENT = ("source_error", "truncated", "timeout", "stalled", "network", "connect", "bad_response")


# --- names ----------------------------------------------------------------------------------------

def _name_ok(name, dots):
    if not 0 < len(name) <= MAX_NAME or name in (".", "..") or name[-1] == ".":
        return False  # a trailing dot: FAT drops it, so "a.py." would be "a.py" there
    for c in name.encode():
        if not (0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x5F or c == 0x2D or
                (dots and (0x41 <= c <= 0x5A or c == 0x2E))):
            return False
    return True


# Names the updater needs at the filesystem root, compared as a filesystem may compare them
# (case-insensitively: FAT, and littlefs behind a case-insensitive host mount): the folder
# ota-tool deploy puts the library in (lib/ota, where MicroPython imports from) and the entry
# points. A bundle's root is switched by renaming it away: it must never be one of these, nor
# hold the updater (wherever it really is, see _updater_root).
_PROTECTED = ("lib", "main.py", "boot.py")
_UPDATER = ("ota", "ota.py", "ota.mpy")  # a first path component that would shadow the updater


def _updater_root():
    # The top folder of the filesystem that holds the running updater (e.g. "lib" for
    # /lib/ota/__init__.mpy), or None when it is frozen into the firmware or not on a board.
    import sys

    f = getattr(sys.modules.get("ota"), "__file__", None)
    if sys.platform != "esp32" or not f or f.startswith(".frozen"):
        return None
    top = f.lstrip("/").split("/")[0].lower()
    return top if top and top not in _UPDATER else None


def check_root(root):
    """The app root: one folder name in the filesystem root (e.g. "app"); never the folder that
    holds the updater or an entry point (a power cut during a switch would leave no /lib)."""
    if not isinstance(root, str) or len(root) > 32 or not _name_ok(root, False) or root.startswith("ota"):
        raise OTAError("bad_path", "root %r must be one name of a-z, 0-9, _ and - (not ota...)" % (root,))
    folded = root.lower()
    if folded in _PROTECTED or folded == _updater_root():
        raise OTAError("bad_path", "root %r holds the updater (lib/ota) or the board's entry points: a bundle must "
                       "never replace it; use another folder, e.g. app" % root)
    return root


def check_path(path, root=None):
    """A file path inside the root: relative, no '..', names the filesystem holds. Returns it."""
    if not isinstance(path, str) or not 0 < len(path) <= MAX_PATH:
        raise OTAError("bad_path", "path %r: 1..%d characters" % (path, MAX_PATH))
    parts = path.split("/")
    if len(parts) > MAX_DEPTH:
        raise OTAError("bad_path", "path %r is deeper than %d levels" % (path, MAX_DEPTH))
    for p in parts:
        if not _name_ok(p, True):
            raise OTAError("bad_path", "path %r: each name is 1..%d characters of A-Z a-z 0-9 . _ - "
                           "(no '..', no absolute or empty parts, no trailing dot)" % (path, MAX_NAME))
        if p.lower().startswith(".ota"):
            raise OTAError("bad_path", "path %r: names starting .ota are reserved" % path)
    if parts[0].lower() in _UPDATER:
        # main.py puts the app root on sys.path: an "ota" package there would shadow the updater
        raise OTAError("bad_path", "path %r would shadow the updater (ota)" % path)
    return path


# --- requirements ---------------------------------------------------------------------------------

_OPS = (">=", "<=", "==", ">", "<")


def requirement(text):
    """'>=1.2.0,<2.0.0' -> [(op, version key)]; OTAError("bad_manifest") if malformed."""
    from .version import key

    out = []
    parts = text.split(",") if isinstance(text, str) and len(text) <= 64 else ()
    if not 0 < len(parts) <= 4:
        raise OTAError("bad_manifest", "requires %r: up to 4 of >=, <=, ==, >, < VERSION, comma-separated" % (text,))
    for p in parts:
        for op in _OPS:
            if p.startswith(op):
                out.append((op, key(p[len(op):])))
                break
        else:
            raise OTAError("bad_manifest", "requires %r: %r has no comparison" % (text, p))
    return out


# --- documents ------------------------------------------------------------------------------------

class Bundle:
    """A verified app/config document. Built by load() (or from a tree's own stored copy)."""

    def __init__(self, d, key_ids, doc_sha256, blob):
        from . import manifest  # imported here: the verifier can leave the heap before downloads

        w = self.type = d.get("type")
        self.key_ids = key_ids
        self.sha256 = doc_sha256
        self.blob = blob  # the signed file, stored in the new tree (None once written)
        self.version = manifest._str(d, "version", w, 32)
        self.version_key = manifest.parse_version(self.version)  # ota.version: SemVer precedence
        self.root = check_root(manifest._str(d, "root", w, 32))
        self.channel = manifest._str(d, "channel", w, 32, required=False)
        self.created = manifest._int(d, "created", w, 0, 0x7FFFFFFFFFFF, required=False)
        self.requires = manifest._str(manifest._obj(d, "requires", w, required=False), "firmware", "requires",
                                      64, required=False)
        if self.requires is not None:
            requirement(self.requires)
        self.wbits = manifest._int(d, "wbits", w, 9, MAX_WBITS, required=False)
        files = manifest._list(d, "files", w, MAX_FILES)
        if not files:
            raise OTAError("bad_manifest", "%s: 'files' must list 1..%d files" % (w, MAX_FILES))
        self.files = []  # (path, size, sha256, zsize or None)
        seen = set()
        total = 0
        for i, f in enumerate(files):
            where = "%s file %d" % (w, i)
            if not isinstance(f, dict):
                raise OTAError("bad_manifest", "%s is not an object" % where)
            path = check_path(manifest._str(f, "path", where, 255), self.root)
            size = manifest._int(f, "size", where, 0, 0x7FFFFFFF)
            if size > MAX_FILE:
                raise OTAError("too_large", "%s (%s) is %d bytes, over %d" % (where, path, size, MAX_FILE))
            sha = manifest._hex32(f, "sha256", where)
            zsize = manifest._int(f, "zsize", where, 1, MAX_FILE, required=False)
            if zsize is not None and self.wbits is None:
                raise OTAError("bad_manifest", "%s is compressed: 'wbits' is required" % where)
            key = path.lower()
            if key in seen:
                raise OTAError("duplicate_path", "%s: %s is listed twice" % (w, path))
            seen.add(key)
            total += size
            if total > MAX_TOTAL:
                raise OTAError("too_large", "%s: the files add up to more than %d bytes" % (w, MAX_TOTAL))
            self.files.append((path, size, sha, zsize))
        for path, _, _, _ in self.files:
            i = path.find("/")
            while i > 0:
                if path[:i].lower() in seen:
                    raise OTAError("duplicate_path", "%s: %s is a file and a folder of %s" % (w, path[:i], path))
                i = path.find("/", i + 1)

    @property
    def hex(self):
        return binascii.hexlify(self.sha256).decode()


def load(blob, trust, doc_type=None):
    """A verified Bundle from a signed document's bytes ("app" or "config": `doc_type` or either)."""
    collect()  # the fetch's garbage goes before the document code loads
    from . import manifest

    sigs, doc = manifest.split(blob)
    collect()  # the signature check is the peak of an update check: a compact heap for it
    key_ids = trust.verify(sigs, doc)
    return _from_doc(doc, key_ids, blob, doc_type)


def load_unverified(blob, doc_type=None):
    print("ota: WARNING: signature verification is OFF: installing whatever app the server sends")
    return _from_blob(blob, [], doc_type, blob)


def _from_blob(blob, key_ids, doc_type, keep):
    # A document stored or sent without (checked) signatures.
    from . import manifest

    doc = manifest.split(blob)[1] if blob.startswith(b"OTA-SIG-1 ") else blob.rstrip(b"\n")
    if len(doc) > manifest.MAX_DOCUMENT:
        raise OTAError("too_long", "document of %d bytes is over the limit" % len(doc))
    return _from_doc(doc, key_ids, keep, doc_type)


def from_verified(doc, key_ids, blob, doc_type=None):
    """A Bundle from document bytes whose signatures the caller checked (key_ids) already."""
    return _from_doc(doc, key_ids, blob, doc_type)


def _from_doc(doc, key_ids, blob, doc_type):
    from . import cjson

    cjson.check(doc)
    try:
        d = json.loads(doc)
    except ValueError:
        raise OTAError("bad_manifest", "the document is not JSON")
    t = d.get("type")
    if t not in TYPES or (doc_type is not None and t != doc_type):
        raise OTAError("wrong_type", "a %r document where %s is needed" % (t, doc_type or "an app or config one"))
    return Bundle(d, key_ids, hashlib.sha256(doc).digest(), blob)


def fetch(fetcher, url, trust, doc_type=None, verify=True):
    """The signed document at `url`, fetched (bounded) and verified."""
    from .fetch import fetch_bytes

    blob = fetch_bytes(fetcher, url, _MAX_BLOB)
    return load(blob, trust, doc_type) if verify else load_unverified(blob, doc_type)


def _doc_name(tree, doc_type):
    return tree + "/.ota-" + doc_type + ".json"


def installed(doc_type="app", tree=None):
    """The Bundle a tree was built from (default: the running root's), or None."""
    if tree is None:
        tree = journal().get("root")
        if tree is None:
            return None
    try:
        name = _doc_name(tree, doc_type)
        n = fs.stat(name)
        if n > _MAX_BLOB:
            return None
        with fs.open(name, "rb") as f:
            blob = f.read(n)
        return _from_blob(blob, [], doc_type, None)
    except (OSError, OTAError, ValueError):
        return None


# --- staging ----------------------------------------------------------------------------------

def _makedirs(tree, path):
    i = path.find("/")
    while i > 0:
        try:
            fs.mkdir(tree + "/" + path[:i])
        except OSError as e:
            if e.args[0] != _EEXIST:
                raise
        i = path.find("/", i + 1)


def _hash_file(path, size, buf):
    """SHA-256 of the file at `path` if it has `size` bytes, else None."""
    try:
        if fs.stat(path) != size:
            return None
        sha = hashlib.sha256()
        mv = memoryview(buf)
        with fs.open(path, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                sha.update(mv[:n])
        return sha.digest()
    except OSError:
        return None


def _copy(src, dst, part, size, sha, buf):
    """Copy src to dst through `part`; with `sha`, only if the bytes are exactly that. -> bool."""
    try:
        if fs.stat(src) != size:
            return False
    except OSError:
        return False
    h = hashlib.sha256() if sha is not None else None
    mv = memoryview(buf)
    got = 0
    with fs.open(src, "rb") as f, fs.open(part, "wb") as out:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            got += n
            if h is not None:
                h.update(mv[:n])
            out.write(mv[:n])
    if got != size or (h is not None and h.digest() != sha):
        fs.remove(part)
        return False
    fs.rename(part, dst)
    return True


class _Bounded:
    # The download of one file: at most `limit` bytes, and exactly that many.
    def __init__(self, body, limit):
        self.body = body
        self.limit = limit
        self.got = 0

    def readinto(self, buf):
        n = self.body.readinto(buf)
        if n:
            self.got += n
            if self.got > self.limit:
                raise OTAError("too_long", "the file artifact is longer than its signed %d bytes" % self.limit)
            return n
        if self.got != self.limit:
            raise OTAError("truncated", "the file artifact ended after %d of %d bytes" % (self.got, self.limit))
        return 0


def file_url(doc_url, sha, compressed):
    from .fetch import resolve

    return resolve(doc_url, "sha256-%s.%s" % (binascii.hexlify(sha[:8]).decode(), "zlib" if compressed else "file"))


def _download(fetcher, doc_url, b, entry, dst, part, buf):
    """Download one declared file into `part`, check it, rename it to `dst`. Returns the bytes
    downloaded. The .zlib artifact when there is one; the raw .file when the heap has no room
    for the decompressor's 2**wbits window (MemoryError: a fragmented heap)."""
    path, size, sha, zsize = entry
    if size == 0:
        if sha != hashlib.sha256().digest():
            raise OTAError("hash_mismatch", "%s: an empty file with the SHA-256 of a non-empty one" % path)
        with fs.open(part, "wb"):
            pass
        fs.rename(part, dst)
        return 0
    attempt = 0
    while True:
        length = zsize or size
        body = None
        try:
            body = fetcher.open(file_url(doc_url, sha, zsize is not None), 0, length)
            src = _Bounded(body, length)
            if zsize is not None:
                from .inflate import Inflate

                src = Inflate(src, "zlib", b.wbits, size)
            h = hashlib.sha256()
            mv = memoryview(buf)
            got = 0
            with fs.open(part, "wb") as out:
                while True:
                    n = src.readinto(buf)
                    if not n:
                        break
                    got += n
                    h.update(mv[:n])
                    out.write(mv[:n])
            if got != size or h.digest() != sha:
                raise OTAError("hash_mismatch", "%s: the downloaded file is not the signed one" % path)
            break
        except MemoryError:
            if zsize is None:
                raise
            src = zsize = None
            collect()
        except OTAError as e:
            attempt += 1
            if attempt > RETRIES or not (e.reason in _TRANSIENT or e.reason.startswith("http_5")):
                _remove(part)
                raise
        finally:
            if body is not None:
                body.close()
    fs.rename(part, dst)
    return length


def _remove(path):
    try:
        fs.remove(path)
    except OSError:
        pass


def _walk(tree):
    """Relative paths of every file below `tree` (bounded: MAX_CARRY files, MAX_DEPTH levels)."""
    out = []
    if not isdir(tree):
        return out
    stack = [""]
    while stack:
        rel = stack.pop()
        for n in fs.listdir(tree + "/" + rel if rel else tree):
            p = rel + "/" + n if rel else n
            if isdir(tree + "/" + p):
                if p.count("/") + 1 >= MAX_DEPTH:
                    raise OTAError("too_many_files", "%s/%s is nested too deep to carry over" % (tree, p))
                stack.append(p)
            else:
                out.append(p)
                if len(out) > MAX_CARRY + MAX_FILES + 2:
                    raise OTAError("too_many_files", "%s holds more files than an update carries over (%d): "
                                   "keep data outside it" % (tree, MAX_CARRY))
    return out


# --- policy ---------------------------------------------------------------------------------------

def check(b, firmware=None, channel=None, allow_downgrade=False):
    """Raise OTAError unless bundle `b` may be installed on firmware version `firmware`."""
    j = journal()
    if j.get("root") not in (None, b.root) and isdir(j["root"]):
        raise OTAError("wrong_root", "%s %s is for /%s, this device's app is in /%s" % (b.type, b.version, b.root, j["root"]))
    if isdir(b.root):
        for n in fs.listdir(b.root):
            if n.lower() in _UPDATER:  # the updater (or a copy of it) lives there: a switch moves it away
                raise OTAError("bad_path", "/%s holds %s, the updater: an app bundle must not replace it" % (b.root, n))
    bad = j.get("bad")
    if bad and bad[0] == b.hex and bad[1] >= KNOWN_BAD_AFTER:
        raise OTAError("known_bad", "%s %s failed its self-test on this device: publish a fixed one" % (b.type, b.version))
    if b.channel is not None and channel is not None and b.channel != channel:
        raise OTAError("wrong_channel", "%s %s is on channel %s, this device follows %s" % (b.type, b.version, b.channel, channel))
    if (j.get("docs") or {}).get(b.type) == b.hex:  # the usual answer, without parsing R's document
        raise OTAError("up_to_date", "%s %s is already installed" % (b.type, b.version))
    have = installed(b.type, b.root)
    if have is not None:
        if have.sha256 == b.sha256 or have.version_key == b.version_key:
            raise OTAError("up_to_date", "%s %s is already installed" % (b.type, b.version))
        if b.version_key < have.version_key and not allow_downgrade:
            raise OTAError("downgrade", "%s %s is older than the installed %s" % (b.type, b.version, have.version))
    if not apptree.satisfied(b.requires, firmware):
        raise OTAError("requires_firmware", "%s %s needs firmware %s, this device runs %s" % (
            b.type, b.version, b.requires, firmware or "an unknown version"))


# --- staging and switching ------------------------------------------------------------------------

def plan(b, fw=None):
    """What staging `b` needs to know of the tree it replaces, read from R's own documents (so
    that the document parser need not be loaded while files download): the files the previous
    document of this type owns (its to remove: they are not carried over), and the journal of
    the staging (versions and firmware requirements of R and of the new tree)."""
    R = b.root
    old = installed(b.type, R)
    other = installed(TYPES[b.type == "app"], R)  # carried over with its files
    old_files = {}
    if old is not None:
        for path, _, sha, _ in old.files:
            old_files[path] = sha
    app_now = old if b.type == "app" else other
    nj = {"root": R, "phase": "staging", "m": b.hex, "type": b.type,
          "v": b.version if b.type == "app" else app_now and app_now.version,
          "pv": app_now and app_now.version, "req": _reqs(old, other), "nreq": _reqs(b, other),
          "docs": _docs(old, other), "ndocs": _docs(b, other)}
    if fw is not None:
        nj["fw"], nj["fwv"] = fw
    return old_files, nj


def stage(fetcher, doc_url, b, fw=None, buf=None, planned=None):
    """Build the next tree in R.new: the signed document, every declared file (kept if already
    staged, copied from R when unchanged, else downloaded), verified; user files carried over.
    `fw`: (firmware manifest sha hex, version) the tree waits for; `planned`: plan(b, fw) if
    made already. Returns counts. Filesystem errors are OTAError "no_space" (R.new is then
    deleted: the space is the device's) or "fs_error"."""
    try:
        return _stage(fetcher, doc_url, b, planned or plan(b, fw), buf or bytearray(BLOCK))
    except OSError as e:
        code = e.args[0] if e.args else None
        if code == _ENOSPC:
            try:
                trash(b.root + ".new", b.root + ".del")
                clear(b.root + ".del")
            except OSError:
                pass
            raise OTAError("no_space", "the filesystem is full: %s %s needs more room than is free" % (b.type, b.version))
        raise OTAError("fs_error", "staging %s %s: filesystem error %r" % (b.type, b.version, e))


def _stage(fetcher, doc_url, b, planned, buf):
    old_files, nj = planned
    planned = None
    j = journal()
    if j.get("phase") in ("swapping", "swapped", "rolling_back"):
        raise OTAError("pending", "an app update waits for its self-test: boot (and confirm) first")
    R, N, O, D = names(b.root)
    resume = j.get("phase") in ("staging", "staged") and j.get("m") == b.hex and j.get("root") == b.root
    if not (resume and isdir(N)):
        if isdir(N):
            trash(N, D)  # another document's staging: N only ever holds one document's files
        clear(D)
    if j.get("bad"):
        nj["bad"] = j["bad"]
    set_journal(nj)
    if not isdir(N):
        fs.mkdir(N)
    part = N + "/" + _PART
    with fs.open(part, "wb") as f:
        f.write(b.blob)
    fs.rename(part, _doc_name(N, b.type))
    b.blob = None
    counts = {"downloaded": 0, "bytes": 0, "copied": 0, "kept": 0, "carried": 0}
    for e in b.files:
        path, size, sha, _ = e
        dst = N + "/" + path
        if _hash_file(dst, size, buf) == sha:
            counts["kept"] += 1
            continue
        _makedirs(N, path)
        if old_files.get(path, sha) == sha and _copy(R + "/" + path, dst, part, size, sha, buf):
            counts["copied"] += 1
            continue
        collect()  # the last file's decompressor: its window must not fragment the heap
        counts["bytes"] += _download(fetcher, doc_url, b, e, dst, part, buf)
        counts["downloaded"] += 1
    mine = set(p for p, _, _, _ in b.files)
    for p in _walk(R):
        if p in mine or p in old_files or p == _doc_name("", b.type)[1:] or p.endswith(_PART):
            continue
        _makedirs(N, p)
        try:
            size = fs.stat(R + "/" + p)
        except OSError:
            continue
        if not _copy(R + "/" + p, N + "/" + p, part, size, None, buf):
            raise OTAError("flash_error", "cannot carry %s/%s over" % (R, p))
        counts["carried"] += 1
        if counts["carried"] > MAX_CARRY:
            raise OTAError("too_many_files", "%s holds more than %d files of its own: keep data outside it" % (R, MAX_CARRY))
    for path, size, sha, _ in b.files:  # the whole tree, read back, against the signed document
        if _hash_file(N + "/" + path, size, buf) != sha:
            raise OTAError("hash_mismatch", "%s/%s does not read back as the signed file" % (N, path))
    _remove(part)
    nj["phase"] = "staged"
    set_journal(nj)
    return counts


def _reqs(*docs):
    return [d.requires for d in docs if d is not None and d.requires is not None]


def _docs(*docs):
    out = {}
    for d in docs:
        if d is not None:
            out[d.type] = d.hex
    return out


# --- the flows the agent runs ---------------------------------------------------------------------

def update(fetcher, url, trust, firmware=None, channel=None, allow_downgrade=False, verify=True, doc_type=None):
    """Check the document at `url` and, when it is new, stage and switch to it (the caller resets:
    the next boot self-tests the new tree). Returns (bundle, counts); OTAError("up_to_date") etc.
    (The agent runs the same steps, dropping the verification code from the heap after plan().)"""
    buf = bytearray(BLOCK)  # first, while the heap is whole: the document code fragments it
    b = fetch(fetcher, url, trust, doc_type, verify)
    check(b, firmware, channel, allow_downgrade)
    counts = stage(fetcher, url, b, buf=buf, planned=plan(b))
    apptree.switch()
    return b, counts


def for_firmware(fetcher, fw_url, m, trust, verify=True):
    """Before firmware release `m` downloads: the app it names, to be staged (and switched at the
    new firmware's first boot), or a refusal when the installed app does not support it.
    Returns None (nothing to stage) or the arguments of stage(): (url, bundle, fw, planned)."""
    ref = getattr(m, "app", None)
    if ref is None:
        j = journal()
        if j.get("root") and isdir(j["root"]) and not apptree.supports(j.get("req"), m.version):
            raise OTAError("app_incompatible", "the installed app does not support firmware %s: release the "
                           "firmware with an app that does (ota-tool release --app)" % m.version)
        return None
    from .fetch import resolve

    url = resolve(fw_url, ref["url"])
    b = fetch(fetcher, url, trust, "app", verify)
    if b.sha256 != ref["sha256"]:
        raise OTAError("app_mismatch", "the app document at %s is not the one firmware %s names" % (url, m.version))
    if (journal().get("docs") or {}).get("app") == b.hex:
        return None  # installed already
    try:
        check(b, m.version, allow_downgrade=True)  # the firmware names this exact app: its version may be lower
    except OTAError as e:
        if e.reason != "up_to_date":
            raise
    fw = (binascii.hexlify(m.sha256).decode(), m.version)
    return url, b, fw, plan(b, fw)


def status():
    """The app bundle state: root, phase, versions of the app, config, previous and staged trees."""
    j = journal()
    root = j.get("root")
    if root is None:
        return {"phase": None}
    R, N, O, D = names(root)
    out = {"root": root, "phase": j.get("phase"), "tries": j.get("tries")}
    for key, tree, t in (("app", R, "app"), ("config", R, "config"), ("previous", O, "app"), ("staged", N, "app")):
        b = installed(t, tree)
        out[key] = b.version if b is not None else None
    return out

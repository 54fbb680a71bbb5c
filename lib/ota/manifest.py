# Signed documents: a release manifest ("firmware"), a key list ("keys"); app and config bundles
# ("app", "config") are parsed by ota.bundle with the validators below.
#
# Wire format, one small text file:
#     OTA-SIG-1 <key id, 16 hex> <Ed25519 signature, base64>\n     (1 to MAX_SIGNATURES lines)
#     <canonical JSON document>\n
# The signatures cover trust.CONTEXT + the exact document bytes; the device verifies those bytes,
# then checks they are canonical JSON, then parses them, then checks the schema. Nothing from
# the document is used before its signature is verified. Unknown members are ignored; missing
# required ones, wrong types and out-of-range values are refused.
import binascii
import json

from . import cjson
from .compat import const
from .errors import OTAError

MAX_DOCUMENT = const(8192)
MAX_SIGNATURES = const(4)
_SIG_PREFIX = b"OTA-SIG-1 "
_MAX_SIG_LINE = const(128)
CHIPS = ("esp32", "esp32s2", "esp32s3", "esp32c3", "esp32c2", "esp32c6", "esp32h2", "esp32p4")
CHIP_IDS = {"esp32": 0x0000, "esp32s2": 0x0002, "esp32c3": 0x0005, "esp32s3": 0x0009, "esp32c2": 0x000C,
            "esp32c6": 0x000D, "esp32h2": 0x0010, "esp32p4": 0x0012}
ENCODINGS = ("raw", "zlib", "gzip", "delta", "rdelta")
DELTAS = ("delta", "rdelta")  # patches against a base image (base_sha256)
_MAX_IMAGE = const(0x1000000)


def _canonical_b64_sig(text):
    # 64 bytes in standard base64 is exactly 86 alphabet characters and "==": nothing else is
    # accepted, so one signature has one encoding (decoders skip junk characters otherwise).
    if len(text) != 88 or text[86:] != b"==":
        return False
    for c in text[:86]:
        if not (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or 0x30 <= c <= 0x39 or c == 0x2B or c == 0x2F):
            return False
    return text[85] in b"AQgw"  # the last character carries 2 bits; the rest must be zero


def parse_version(text):
    """SemVer 2.0.0 precedence key of a version (ota.version.key; imported when first needed, so
    that a device reading only signature lines does not load it)."""
    from .version import key

    return key(text)


def split(blob):
    """(signatures [(key_id, sig)], document bytes) from a signed file; refuses malformed framing."""
    if len(blob) > MAX_DOCUMENT + MAX_SIGNATURES * _MAX_SIG_LINE:
        raise OTAError("too_long", "signed document of %d bytes is over the limit" % len(blob))
    sigs = []
    pos = 0
    while blob[pos:pos + len(_SIG_PREFIX)] == _SIG_PREFIX:
        end = blob.find(b"\n", pos, pos + _MAX_SIG_LINE)
        if end < 0:
            raise OTAError("bad_manifest", "signature line %d is malformed" % (len(sigs) + 1))
        parts = blob[pos + len(_SIG_PREFIX):end].split(b" ")
        if len(parts) != 2 or len(parts[0]) != 16 or not _canonical_b64_sig(parts[1]):
            raise OTAError("bad_manifest", "signature line %d is malformed" % (len(sigs) + 1))
        from .keyid import canonical_id

        try:
            kid = canonical_id(parts[0].decode())
            sig = binascii.a2b_base64(parts[1])
        except (ValueError, TypeError, UnicodeError, OTAError):
            raise OTAError("bad_manifest", "signature line %d is not key id + base64" % (len(sigs) + 1))
        if len(sig) != 64:
            raise OTAError("bad_manifest", "signature %d is %d bytes, not 64" % (len(sigs) + 1, len(sig)))
        sigs.append((kid, sig))
        if len(sigs) > MAX_SIGNATURES:
            raise OTAError("bad_manifest", "more than %d signatures" % MAX_SIGNATURES)
        pos = end + 1
    if not sigs:
        raise OTAError("unsigned", "the document carries no signature")
    doc = blob[pos:]
    if doc.endswith(b"\n"):
        doc = doc[:-1]
    if len(doc) > MAX_DOCUMENT:
        raise OTAError("too_long", "document of %d bytes is over the %d limit" % (len(doc), MAX_DOCUMENT))
    return sigs, doc


def _parse(doc, doc_type):
    cjson.check(doc)
    try:
        d = json.loads(doc)
    except ValueError:
        raise OTAError("bad_manifest", "the document is not JSON")
    if d.get("type") != doc_type:
        raise OTAError("wrong_type", "a %r document where a %r one is needed" % (d.get("type"), doc_type))
    return d


def _value(d, key, where, required):
    v = d.get(key)
    if v is None and required:
        raise OTAError("bad_manifest", "%s: %r is missing" % (where, key))
    return v


def _int(d, key, where, lo, hi, required=True):
    v = _value(d, key, where, required)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or v < lo or v > hi:
        raise OTAError("bad_manifest", "%s: %r must be an integer in %d..%d" % (where, key, lo, hi))
    return v


def _str(d, key, where, maxlen=64, required=True):
    v = _value(d, key, where, required)
    if v is None:
        return None
    if not isinstance(v, str) or not v or len(v) > maxlen:
        raise OTAError("bad_manifest", "%s: %r must be a string of 1..%d characters" % (where, key, maxlen))
    return v


def _list(d, key, where, most, required=True):
    v = _value(d, key, where, required)
    if v is None:
        return []
    if not isinstance(v, list) or len(v) > most:
        raise OTAError("bad_manifest", "%s: %r must be a list of at most %d items" % (where, key, most))
    return v


def _obj(d, key, where, required=True):
    v = _value(d, key, where, required)
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise OTAError("bad_manifest", "%s: %r must be an object" % (where, key))
    return v


def _hex32(d, key, where, required=True):
    v = _str(d, key, where, 64, required)
    if v is None:
        return None
    try:
        raw = binascii.unhexlify(v)
    except ValueError:
        raw = b""
    if len(raw) != 32 or v != v.lower():
        raise OTAError("bad_manifest", "%s: %r must be 64 lowercase hex digits" % (where, key))
    return raw


class Artifact:
    def __init__(self, d, where):
        self.url = _str(d, "url", where, 256)
        self.size = _int(d, "size", where, 1, _MAX_IMAGE)
        self.sha256 = _hex32(d, "sha256", where)
        self.encoding = _str(d, "encoding", where, required=False) or "raw"
        if self.encoding not in ENCODINGS:
            raise OTAError("bad_manifest", "%s: unknown encoding %r" % (where, self.encoding))
        self.wbits = _int(d, "wbits", where, 9, 15, required=self.encoding != "raw")
        self.base_sha256 = _hex32(d, "base_sha256", where, required=self.encoding in DELTAS)


class Manifest:
    """A verified firmware release manifest. Built only by load(): only verified data enters."""

    def __init__(self, d, key_ids, doc_sha256):
        w = "manifest"
        self.doc = d
        self.key_ids = key_ids  # the keys whose signatures verified
        self.sha256 = doc_sha256  # identifies this exact manifest
        self.version = _str(d, "version", w, 32)
        self.version_key = parse_version(self.version)
        self.security_version = _int(d, "security_version", w, 0, 0x7FFFFFFF)
        chips = _list(d, "chips", w, 8)
        if not chips or any(c not in CHIPS for c in chips):
            raise OTAError("bad_manifest", "manifest: 'chips' must list 1..8 of %s" % ", ".join(CHIPS))
        self.chips = chips
        self.board = _str(d, "board", w, required=False) or "*"
        self.channel = _str(d, "channel", w, 32)
        image = _obj(d, "image", w)
        self.image_size = _int(image, "size", "manifest image", 0x24, _MAX_IMAGE)
        self.image_sha256 = _hex32(image, "sha256", "manifest image")
        self.slot_size = _int(d, "slot_size", w, self.image_size, _MAX_IMAGE)
        arts = _list(d, "artifacts", w, 8)
        if not arts or not all(isinstance(a, dict) for a in arts):
            raise OTAError("bad_manifest", "manifest: 'artifacts' must list 1..8 objects")
        # "extra_artifacts": encodings newer than "artifacts" may hold (devices before them refuse
        # an unknown one there, and ignore this member); those this device does not know are skipped
        arts = arts + [a for a in _list(d, "extra_artifacts", w, 8, required=False)
                       if isinstance(a, dict) and a.get("encoding") in ENCODINGS]
        self.artifacts = [Artifact(a, "artifact %d" % i) for i, a in enumerate(arts)]
        if not any(a.encoding not in DELTAS for a in self.artifacts):
            raise OTAError("bad_manifest", "manifest: a full (non-delta) artifact is required")
        self.created = _int(d, "created", w, 0, 0x7FFFFFFFFFFF)
        self.expires = _int(d, "expires", w, 0, 0x7FFFFFFFFFFF, required=False)
        req = _obj(d, "requires", w, required=False)
        self.requires = {}
        for k in ("micropython", "idf", "bootloader"):
            v = _str(req, k, "manifest requires", 32, required=False)
            if v is not None:
                self.requires[k] = v
        rollout = _obj(d, "rollout", w, required=False)
        self.rollout_percent = 100
        self.rollout_salt = ""
        if rollout:
            self.rollout_percent = _int(rollout, "percent", "manifest rollout", 0, 100)
            self.rollout_salt = _str(rollout, "salt", "manifest rollout", 32, required=False) or ""
        halted = _value(d, "halted", w, False)
        if halted is not None and not isinstance(halted, bool):
            raise OTAError("bad_manifest", "manifest: 'halted' must be true or false")
        self.halted = bool(halted)
        # The app bundle that must come with this firmware (ota.bundle): its document's SHA-256.
        app = _obj(d, "app", w, required=False)
        self.app = None
        if app:
            self.app = {"url": _str(app, "url", "manifest app", 256), "sha256": _hex32(app, "sha256", "manifest app"),
                        "version": _str(app, "version", "manifest app", 32)}

    def summary(self):
        """What the device remembers about an installed release (status, anti-rollback)."""
        return {"version": self.version, "security_version": self.security_version, "channel": self.channel,
                "image_sha256": binascii.hexlify(self.image_sha256).decode(),
                "manifest_sha256": binascii.hexlify(self.sha256).decode(), "keys": self.key_ids}


def verified_document(blob, trust, doc_type):
    """(parsed dict, key ids, sha256 of the document) after checking the signatures."""
    import hashlib

    sigs, doc = split(blob)
    key_ids = trust.verify(sigs, doc)
    return _parse(doc, doc_type), key_ids, hashlib.sha256(doc).digest()


def load(blob, trust):
    """A verified Manifest from the bytes of a signed manifest file, or OTAError."""
    d, key_ids, digest = verified_document(blob, trust, "firmware")
    return Manifest(d, key_ids, digest)


def load_unverified(blob):
    """A Manifest WITHOUT checking signatures: only when the operator turned verification off on
    purpose. Says so on every use."""
    print("ota: WARNING: signature verification is OFF: installing whatever the server sends")
    if blob.startswith(_SIG_PREFIX):
        _, doc = split(blob)
    else:
        doc = blob[:-1] if blob.endswith(b"\n") else blob
        if len(doc) > MAX_DOCUMENT:
            raise OTAError("too_long", "document of %d bytes is over the %d limit" % (len(doc), MAX_DOCUMENT))
    import hashlib

    return Manifest(_parse(doc, "firmware"), [], hashlib.sha256(doc).digest())


def load_keys(blob, trust):
    """A verified key-list document (rotation/revocation), checked against the current `trust`:
    its schema, names and key ids in canonical form. Trust.updated() then validates the key set
    whole before it may replace the trust in force."""
    from .trust import MAX_KEYS, MAX_REVOKED

    d, _, _ = verified_document(blob, trust, "keys")
    w = "key list"
    _int(d, "version", w, 1, 0x7FFFFFFF)
    keys = _list(d, "keys", w, MAX_KEYS)
    if not keys:
        raise OTAError("bad_manifest", "key list: 'keys' must list 1..%d keys" % MAX_KEYS)
    names = []
    for i, k in enumerate(keys):
        if not isinstance(k, dict):
            raise OTAError("bad_manifest", "key list: each key is an object")
        _str(k, "key", w, 64)
        # Every key gets a unique name (the device's settings store keys by name): a collision
        # would drop a key there, and the threshold could then never be met again.
        name = _str(k, "name", w, 32, required=False) or "key%d" % i
        if name in names:
            raise OTAError("bad_manifest", "key list: two keys are named %r" % name)
        names.append(name)
        k["name"] = name
    _int(d, "threshold", w, 1, len(keys), required=False)
    revoked = _list(d, "revoked", w, MAX_REVOKED, required=False)
    from .keyid import canonical_id

    try:
        revoked = [canonical_id(r) for r in revoked]
    except OTAError as e:
        raise OTAError("bad_manifest", "key list: 'revoked': " + e.message)
    for opt in ("threshold", "revoked"):
        if opt in d and d[opt] is None:
            del d[opt]  # null is absent, as for every optional member
    if "revoked" in d:
        d["revoked"] = revoked
    return d

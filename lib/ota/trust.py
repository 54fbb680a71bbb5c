# The keys the device trusts to sign updates, and how that set changes.
#
# A signed document carries one or more signature lines; it is accepted when signatures from at
# least `threshold` distinct trusted, unrevoked keys verify over its exact bytes. The key set is
# replaced only by a "keys" document with a higher version, signed by `threshold` keys of the
# CURRENT set (rotation), which may also revoke keys. Every key set (a key list, the settings, a
# key added locally with ota.config.key) is validated whole by Trust before it is used or stored.
import binascii
import hashlib

from . import ed25519
from .compat import collect, const
from .errors import OTAError
from .keyid import canonical_id

KEY_ID_LEN = const(16)  # hex chars: the first 8 bytes of SHA-256(public key) (ota.keyid)
MAX_KEYS = const(8)
MAX_REVOKED = const(16)
CONTEXT = b"esp32-ota signed document v1\n"  # signatures cover CONTEXT + the document bytes


def key_id(public_key):
    return binascii.hexlify(hashlib.sha256(public_key).digest()[:8]).decode()


def _raw(text):
    # 32 raw bytes from base64 (or hex) text, else OTAError
    raw = b""
    if isinstance(text, (bytes, bytearray)):
        raw = bytes(text)
    elif isinstance(text, str):
        try:
            raw = binascii.unhexlify(text) if len(text) == 64 else binascii.a2b_base64(text)
        except (ValueError, TypeError):
            pass
    if len(raw) != 32:
        raise OTAError("bad_key", "a public key must be 32 bytes (base64 or hex)")
    return raw


def _check_points(keys):
    # Run after everything the key set keeps is allocated: the checks' big-integer garbage then
    # leaves no holes between objects that stay (the heap before TLS).
    for kid in keys:
        if not ed25519.public_key_ok(keys[kid]):
            raise OTAError("bad_key", "key %s is not an Ed25519 public key a signer can hold" % kid)
    collect()


def decode_key(text):
    """A public key as the device config holds it: base64 (or hex) of the 32 raw bytes, the
    canonical encoding of an Ed25519 point that is not of small order."""
    raw = _raw(text)
    _check_points({key_id(raw): raw})
    return raw


class Trust:
    """The trusted key set, validated whole: every key a valid Ed25519 key, none twice, at most
    MAX_KEYS, revocations in canonical form, and the threshold reachable by distinct unrevoked
    keys. keys: {key_id: 32-byte public key}."""

    def __init__(self, keys, threshold=1, revoked=(), version=0):
        if not keys:
            raise OTAError("no_keys", "no trusted public keys configured: add one (ota-tool keygen prints it)")
        if len(keys) > MAX_KEYS:
            raise OTAError("bad_key", "at most %d trusted keys" % MAX_KEYS)
        if revoked is None or isinstance(revoked, str) or len(revoked) > MAX_REVOKED:
            raise OTAError("bad_key", "revoked: a list of at most %d key ids" % MAX_REVOKED)
        self.revoked = set(canonical_id(r) for r in revoked)
        live = 0
        for kid in keys:
            if kid not in self.revoked:
                live += 1
        if not isinstance(threshold, int) or isinstance(threshold, bool) or not 1 <= threshold <= live:
            raise OTAError("bad_key", "threshold %r cannot be met: %d distinct unrevoked key(s)" % (threshold, live))
        self.keys = keys
        self.threshold = threshold
        self.version = version

    @classmethod
    def from_list(cls, entries, threshold=1, revoked=(), version=0):
        """entries: public keys (base64/hex strings or 32 bytes), or dicts with a "key" member.
        One raw key twice (under two names) is refused: it would count twice towards nothing."""
        if len(entries) > MAX_KEYS:
            raise OTAError("bad_key", "at most %d trusted keys" % MAX_KEYS)
        keys = {}
        for e in entries:
            raw = _raw(e.get("key") if isinstance(e, dict) else e)
            kid = key_id(raw)
            if kid in keys:
                raise OTAError("bad_key", "key %s is listed twice" % kid)
            keys[kid] = raw
        _check_points(keys)
        return cls(keys, threshold, revoked, version)

    def verify(self, signatures, document):
        """Raise OTAError unless enough distinct trusted keys signed `document`. Returns their ids."""
        good = []
        problem = None
        message = CONTEXT + document
        for kid, sig in signatures:
            if kid in self.revoked:
                problem = ("revoked_key", "signed by revoked key %s" % kid)
                continue
            key = self.keys.get(kid)
            if key is None:
                problem = problem or ("unknown_key", "signed by key %s, which this device does not trust" % kid)
                continue
            if kid in good:
                continue
            if ed25519.verify(key, message, sig):
                good.append(kid)
            else:
                problem = ("bad_signature", "the signature by key %s does not verify" % kid)
        if len(good) < self.threshold:
            if problem and not good:
                raise OTAError(*problem)
            raise OTAError("threshold", "%d valid signature(s), %d required" % (len(good), self.threshold))
        return good

    def updated(self, doc):
        """A new Trust from a verified, parsed "keys" document (see manifest.load_keys), validated
        whole; OTAError if it would not do (the trust in force then stays)."""
        if doc["version"] <= self.version:
            raise OTAError("replayed", "key list version %d is not newer than %d" % (doc["version"], self.version))
        return Trust.from_list(doc["keys"], doc.get("threshold", 1), doc.get("revoked", ()), doc["version"])


def from_settings(cfg):
    """The trust in force from the device settings (ota.config), validated like a key list."""
    return Trust.from_list(list(cfg["keys"].values()), cfg["key_threshold"], cfg["revoked"] or (),
                           cfg["keys_version"])

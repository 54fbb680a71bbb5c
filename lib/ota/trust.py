# The keys the device trusts to sign updates, and how that set changes.
#
# A signed document carries one or more signature lines; it is accepted when signatures from at
# least `threshold` distinct trusted, unrevoked keys verify over its exact bytes. The key set is
# replaced only by a "keys" document with a higher version, signed by `threshold` keys of the
# CURRENT set (rotation), which may also revoke keys.
import binascii
import hashlib

from . import ed25519
from .compat import const
from .errors import OTAError

KEY_ID_LEN = const(16)  # hex chars: the first 8 bytes of SHA-256(public key)
MAX_KEYS = const(8)
CONTEXT = b"esp32-ota signed document v1\n"  # signatures cover CONTEXT + the document bytes


def key_id(public_key):
    return binascii.hexlify(hashlib.sha256(public_key).digest()[:8]).decode()


def decode_key(text):
    """A public key as the device config holds it: base64 (or hex) of the 32 raw bytes."""
    try:
        raw = binascii.unhexlify(text) if len(text) == 64 else binascii.a2b_base64(text)
    except (ValueError, TypeError):
        raw = b""
    if len(raw) != 32:
        raise OTAError("bad_key", "a public key must be 32 bytes (base64 or hex)")
    return raw


class Trust:
    """The trusted key set. keys: {key_id: 32-byte public key}."""

    def __init__(self, keys, threshold=1, revoked=(), version=0):
        if not keys:
            raise OTAError("no_keys", "no trusted public keys configured: add one (ota-tool keygen prints it)")
        if len(keys) > MAX_KEYS:
            raise OTAError("bad_key", "at most %d trusted keys" % MAX_KEYS)
        if not 1 <= threshold <= len(keys):
            raise OTAError("bad_key", "threshold %d with %d keys" % (threshold, len(keys)))
        self.keys = keys
        self.threshold = threshold
        self.revoked = set(revoked)
        self.version = version

    @classmethod
    def from_list(cls, entries, threshold=1, revoked=(), version=0):
        """entries: public keys (base64/hex strings or 32 bytes), or dicts with a "key" member."""
        keys = {}
        for e in entries:
            if isinstance(e, dict):
                e = e.get("key", "")
            raw = e if isinstance(e, (bytes, bytearray)) else decode_key(e)
            if len(raw) != 32:
                raise OTAError("bad_key", "a public key must be 32 bytes")
            keys[key_id(raw)] = bytes(raw)
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
        """A new Trust from a verified, parsed "keys" document (see manifest.load_keys)."""
        if doc["version"] <= self.version:
            raise OTAError("replayed", "key list version %d is not newer than %d" % (doc["version"], self.version))
        return Trust.from_list(doc["keys"], doc.get("threshold", 1), doc.get("revoked", ()), doc["version"])

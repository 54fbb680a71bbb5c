# Key ids: the first 8 bytes of SHA-256(public key) as 16 hex digits, in one canonical form
# (lower case). Signature lines, trusted keys and revocations are compared in this form, so an
# upper-case revocation revokes; anything else is refused. A module of its own so that reading a
# document's signature lines (ota.manifest) does not load the signature code (ota.trust).
from .errors import OTAError

LEN = 16


def canonical_id(text):
    """`text` (str) as 16 lower-case hex digits; OTAError("bad_key") if it is not 16 hex digits."""
    if isinstance(text, str) and len(text) == LEN:
        for c in text.encode():
            if not (0x30 <= c <= 0x39 or 0x61 <= c <= 0x66 or 0x41 <= c <= 0x46):
                break
        else:
            return text.lower()
    raise OTAError("bad_key", "%r is not a key id (16 hex digits, as ota-tool keygen prints)" % (text,))

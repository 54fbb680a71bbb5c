"""Ed25519 signing keys for releases, and signing in the device's wire format (ota.manifest)."""
import base64
import json
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ota import trust as device_trust

from .errors import ToolError


def public_bytes(key):
    pub = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key):
    return device_trust.key_id(public_bytes(key))


def generate(path, passphrase=None, force=False):
    """Write a new private key (PEM, mode 0600) and its public half (path + '.pub'). Returns the key."""
    pub_path = path + ".pub"
    for p, what in ((path, "a signing key"), (pub_path, "the public key devices may trust")):
        # every output checked before anything is written (no private key without its .pub)
        if os.path.isdir(p):
            raise ToolError("%s is a folder: the key's %s file goes there" % (p, "private" if p == path else "public"),
                            "move the folder away, or pick another key name")
        if os.path.lexists(p) and not force:
            raise ToolError("%s exists: refusing to overwrite %s" % (p, what), "pass --force, or pick another file")
    key = Ed25519PrivateKey.generate()
    enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
           else serialization.NoEncryption())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    os.chmod(path, 0o600)
    try:
        with open(pub_path, "w") as f:
            f.write(public_text(key) + "\n")
    except OSError as e:
        os.remove(path)  # a key without its .pub is an orphan: a retry would say it exists
        from .files import os_error

        raise os_error(e, pub_path, "write")
    return key


def public_text(key):
    """The public key as the device config takes it: base64 of the 32 raw bytes."""
    return base64.b64encode(public_bytes(key)).decode()


def load_private(path, passphrase=None):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ToolError("cannot read key %s: %s" % (path, e.strerror), "create one with: ota-tool keygen %s" % path)
    try:
        key = serialization.load_pem_private_key(data, passphrase.encode() if passphrase else None)
    except TypeError:
        raise ToolError("%s is encrypted" % path, "give its passphrase with --passphrase-env VAR")
    except ValueError as e:
        raise ToolError("%s is not a usable private key (%s)" % (path, e), "wrong passphrase, or not a PEM key")
    if not isinstance(key, Ed25519PrivateKey):
        raise ToolError("%s is not an Ed25519 key" % path, "create one with: ota-tool keygen")
    return key


def load_public(text_or_path):
    """A public key from base64/hex text, a .pub file, or a PEM private/public key file."""
    text = text_or_path
    if os.path.exists(text_or_path):
        from .files import read_bytes

        data = read_bytes(text_or_path, 64 * 1024)
        if data.startswith(b"-----BEGIN"):
            try:
                k = serialization.load_pem_public_key(data)
            except ValueError:
                k = load_private(text_or_path).public_key()
            if not isinstance(k, Ed25519PublicKey):
                raise ToolError("%s is not an Ed25519 key" % text_or_path, "make one with ota-tool keygen")
            return public_bytes(k)
        try:
            text = data.decode().split()[0]
        except (UnicodeError, IndexError):
            from .filekinds import kind

            raise ToolError("%s is %s, not a public key" % (text_or_path, kind(data)),
                            "give the .pub file from ota-tool keygen, or its base64 text")
    try:
        return device_trust.decode_key(text)
    except Exception:
        raise ToolError("%r is not a public key" % text_or_path, "give the .pub file from ota-tool keygen, or its base64 text")


def canonical(doc):
    """The canonical JSON bytes the device accepts (ota.cjson): sorted keys, no spaces, ASCII,
    integers only."""
    _check_values(doc, "document")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _check_values(v, where):
    if isinstance(v, dict):
        for k, x in v.items():
            if not isinstance(k, str):
                raise ToolError("%s: key %r is not a string" % (where, k))
            _check_values(k, where)
            _check_values(x, "%s.%s" % (where, k))
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _check_values(x, "%s[%d]" % (where, i))
    elif isinstance(v, str):
        if any(not (0x20 <= ord(c) <= 0x7E) or c in "\\" for c in v):
            raise ToolError("%s: %r has characters a signed document cannot carry (printable ASCII only, no backslash)" % (where, v))
    elif isinstance(v, float):
        raise ToolError("%s: %r: numbers must be integers" % (where, v))


def sign(doc, private_keys):
    """The signed file bytes for `doc` (a dict): signature lines, then the canonical document."""
    body = canonical(doc)
    lines = []
    for key in private_keys:
        sig = key.sign(device_trust.CONTEXT + body)
        lines.append(b"OTA-SIG-1 %s %s\n" % (key_id(key).encode(), base64.b64encode(sig)))
    return b"".join(lines) + body + b"\n"


# The highest key-list version signed: above it a device could take too few lists to come (a key
# list at the top version, 2^31 - 1, could never be replaced: no key could be revoked again).
KEY_LIST_VERSION_MAX = 0x7FFF0000


def key_list(public_keys, version, signers, threshold=1, revoked=()):
    """The signed key-list document devices rotate to: `public_keys` [(name, 32 raw bytes)],
    signed by `signers` (private keys the devices trust NOW), `version` higher than the last one.
    Checked with the device's own code (ota.manifest.load_keys, ota.trust): a list a device
    would refuse is never signed."""
    from ota import manifest as device_manifest
    from ota.errors import OTAError

    if not public_keys:
        raise ToolError("a key list needs at least one key")
    if int(version) > KEY_LIST_VERSION_MAX:
        raise ToolError("key list version %d leaves no room for the lists that must follow it (a device "
                        "applies only a higher version, at most %d)" % (int(version), 0x7FFFFFFF),
                        "number key lists 1, 2, 3...: ota-tool keylist takes the next version by default")
    doc = {"type": "keys", "version": int(version), "threshold": int(threshold),
           "keys": [{"name": name, "key": base64.b64encode(raw).decode()} for name, raw in public_keys],
           "revoked": revocations(revoked)}
    blob = sign(doc, signers)
    try:
        # as a device trusting exactly the signers (their number as threshold) and version - 1 sees it
        now = device_trust.Trust.from_list([public_bytes(k) for k in signers], len(signers), (), int(version) - 1)
        now.updated(device_manifest.load_keys(blob, now))
    except OTAError as e:
        raise ToolError("devices would refuse this key list (%s): %s" % (e.reason, e.message),
                        "keep the threshold reachable by distinct unrevoked keys, each key once, at most %d keys "
                        "and %d signers" % (device_trust.MAX_KEYS, device_manifest.MAX_SIGNATURES))
    return blob


def revocations(ids):
    """Key ids to revoke in the device's one form (ota.trust.canonical_id), sorted, each once."""
    from ota.errors import OTAError

    try:
        return sorted(set(device_trust.canonical_id(r) for r in ids))
    except OTAError as e:
        raise ToolError(e.message, "a key id is 16 hex digits: ota-tool keygen prints it")


def key_list_version(path):
    """The version of the key list at `path` (not verified: only to number the next one), or None."""
    import json

    from ota import manifest as device_manifest
    from ota.errors import OTAError

    try:
        with open(path, "rb") as f:
            doc = json.loads(device_manifest.split(f.read(device_manifest.MAX_DOCUMENT + 1024))[1])
        v = doc["version"] if doc.get("type") == "keys" else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError, OTAError):
        return None
    return v if isinstance(v, int) and not isinstance(v, bool) else None

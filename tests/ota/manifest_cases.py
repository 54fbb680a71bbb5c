"""The catalogue of hostile release manifests: each is refused with a stated reason, by the same
device code under CPython and under MicroPython (see test_manifest.py)."""
import base64
import copy
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota import trust as device_trust
from ota_tool import keys

# Fixed keys so the catalogue is the same on every run.
KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
KEY2 = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
OTHER = Ed25519PrivateKey.from_private_bytes(bytes(range(2, 34)))
SHA = "ab" * 32

DOC = {
    "type": "firmware", "version": "2.0.0", "security_version": 3, "chips": ["esp32"], "board": "*",
    "channel": "stable", "image": {"size": 200000, "sha256": SHA}, "slot_size": 200704,
    "artifacts": [{"url": "sha256-abababababababab.bin", "size": 200000, "sha256": SHA, "encoding": "raw"}],
    "created": 1790000000, "key_id": "x", "build": {"commit": "abc123", "time": "2026-11-21T12:00:00Z"},
}
FACTS = {"chip": "esp32", "board": "GENERIC", "slot_size": 0x180000, "running_version": "1.0.0",
         "security_counter": 3, "channel": "stable", "now": None, "micropython": "1.24.0", "device_id": "dev-1"}


def signed(doc=None, signers=(KEY,), raw=None):
    body = raw if raw is not None else keys.canonical(doc if doc is not None else DOC)
    lines = b"".join(b"OTA-SIG-1 %s %s\n" % (keys.key_id(k).encode(),
                                             base64.b64encode(k.sign(device_trust.CONTEXT + body))) for k in signers)
    return lines + body + b"\n"


def with_(**changes):
    d = copy.deepcopy(DOC)
    for k, v in changes.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def art(**changes):
    a = dict(DOC["artifacts"][0])
    a.update(changes)
    return with_(artifacts=[a])


def raw_signed(text):
    return signed(raw=text.encode() if isinstance(text, str) else text)


def flip(blob, index):
    b = bytearray(blob)
    b[index] ^= 0x01
    return bytes(b)


def cases():
    good = signed()
    out = []

    def case(name, blob, reason, facts=None, trust=None):
        out.append({"name": name, "blob": blob, "reason": reason, "facts": dict(FACTS, **(facts or {})),
                    "trust": trust or {"keys": [keys.public_text(KEY)], "threshold": 1, "revoked": []}})

    canon = keys.canonical(DOC).decode()
    # signature and framing
    case("accepted baseline", good, None)
    case("tampered document byte", flip(good, good.index(b'"2.0.0"') + 1), "bad_signature")
    case("tampered signature byte", good[:30] + (b"A" if good[30:31] != b"A" else b"B") + good[31:], "bad_signature")
    case("signed by an untrusted key", signed(signers=(OTHER,)), "unknown_key")
    case("unknown key id", good.replace(keys.key_id(KEY).encode(), b"0123456789abcdef", 1), "unknown_key")
    case("revoked key", good, "revoked_key", trust={"keys": [keys.public_text(KEY), keys.public_text(KEY2)],
                                                     "threshold": 1, "revoked": [keys.key_id(KEY)]})
    case("unsigned document", keys.canonical(DOC) + b"\n", "unsigned")
    case("signature not base64", good.replace(b" ", b" !!!", 2).replace(b" !!!", b" ", 1), "bad_manifest")
    case("signature of 63 bytes", b"OTA-SIG-1 %s %s\n" % (keys.key_id(KEY).encode(), base64.b64encode(bytes(63)))
         + keys.canonical(DOC) + b"\n", "bad_manifest")
    case("key id not hex", good.replace(keys.key_id(KEY).encode(), b"zzzzzzzzzzzzzzzz", 1), "bad_manifest")
    case("five signature lines", signed(signers=(KEY, KEY, KEY, KEY, KEY)), "bad_manifest")
    two = {"keys": [keys.public_text(KEY), keys.public_text(KEY2)], "threshold": 2, "revoked": []}
    case("threshold 2, one signature", good, "threshold", trust=two)
    case("threshold 2, same key twice", signed(signers=(KEY, KEY)), "threshold", trust=two)
    case("signature without the domain context", b"OTA-SIG-1 %s %s\n" % (
        keys.key_id(KEY).encode(), base64.b64encode(KEY.sign(keys.canonical(DOC)))) + keys.canonical(DOC) + b"\n",
        "bad_signature")
    case("a signed key list offered as a manifest", signed({"type": "keys", "version": 2, "keys": [{"key": keys.public_text(KEY)}]}), "wrong_type")
    case("oversized document", signed(with_(build={"commit": "c" * 64, "pad": "x" * 9000})), "too_long")
    case("data after the document", raw_signed(canon + "{}"), "bad_manifest")
    # canonical JSON
    case("whitespace", raw_signed(json.dumps(DOC, sort_keys=True)), "bad_manifest")
    case("keys not sorted", raw_signed(json.dumps(DOC, separators=(",", ":"))), "bad_manifest")
    case("duplicate key", raw_signed(canon.replace('{"artifacts"', '{"artifacts":[],"artifacts"', 1)), "bad_manifest")
    case("float", raw_signed(canon.replace('"security_version":3', '"security_version":3.0')), "bad_manifest")
    case("unicode escape", raw_signed(canon.replace('"stable"', '"st\\u0061ble"')), "bad_manifest")
    case("non-ASCII byte", raw_signed(canon.replace('"stable"', '"st\u00e4ble"').encode()), "bad_manifest")
    case("nested too deep", signed(with_(build={"a": {"b": {"c": {"d": {"e": {"f": 1}}}}}})), "bad_manifest")
    case("truncated JSON", raw_signed(canon[:-20]), "bad_manifest")
    case("top-level array", raw_signed("[" + canon + "]"), "bad_manifest")
    case("leading zero", raw_signed(canon.replace('"security_version":3', '"security_version":03')), "bad_manifest")
    # schema
    case("version missing", signed(with_(version=None)), "bad_manifest")
    case("version is a number", signed(with_(version=2)), "bad_manifest")
    case("version not semantic", signed(with_(version="2.0")), "bad_manifest")
    case("negative security_version", signed(with_(security_version=-1)), "bad_manifest")
    case("huge security_version", signed(with_(security_version=1 << 40)), "bad_manifest")
    case("security_version is a bool", signed(with_(security_version=True)), "bad_manifest")
    case("no chips", signed(with_(chips=[])), "bad_manifest")
    case("unknown chip", signed(with_(chips=["esp8266"])), "bad_manifest")
    case("image hash not hex", signed(with_(image={"size": 200000, "sha256": "zz" * 32})), "bad_manifest")
    case("image hash uppercase", signed(with_(image={"size": 200000, "sha256": SHA.upper()})), "bad_manifest")
    case("image over 16 MiB", signed(with_(image={"size": 1 << 25, "sha256": SHA})), "bad_manifest")
    case("no artifacts", signed(with_(artifacts=None)), "bad_manifest")
    case("only a delta artifact", signed(art(encoding="delta", wbits=12, base_sha256=SHA)), "bad_manifest")
    case("unknown encoding", signed(art(encoding="lzma")), "bad_manifest")
    case("URL too long", signed(art(url="a" * 300)), "bad_manifest")
    case("window too large", signed(art(encoding="zlib", wbits=16)), "bad_manifest")
    case("slot_size below image size", signed(with_(slot_size=1000)), "bad_manifest")
    case("artifact list is an object", signed(with_(artifacts={"url": "x"})), "bad_manifest")
    # policy
    case("replayed installed release", good, "up_to_date", facts={"running_version": "2.0.0"})
    case("downgrade", good, "downgrade", facts={"running_version": "2.1.0"})
    case("prerelease below release", signed(with_(version="2.1.0-rc.1")), "downgrade", facts={"running_version": "2.1.0"})
    case("security version below counter", good, "security_version", facts={"security_counter": 4})
    case("wrong chip", signed(with_(chips=["esp32s3"])), "wrong_chip")
    case("wrong board", signed(with_(board="LOLIN_S2")), "wrong_board")
    # issue 14 item 9: fail closed, a device that does not know its board refuses board-specific releases
    case("board-specific release, board unknown", signed(with_(board="LOLIN_S2")), "board_unknown",
         facts={"board": None})
    case("any-board release, board unknown: accepted", good, None, facts={"board": None})
    case("prerelease rc.10 after rc.9: accepted", signed(with_(version="2.0.0-rc.10")), None,
         facts={"running_version": "2.0.0-rc.9"})
    case("prerelease rc.9 after rc.10", signed(with_(version="2.0.0-rc.9")), "downgrade",
         facts={"running_version": "2.0.0-rc.10"})
    case("too big for the slot", signed(with_(image={"size": 0x180001, "sha256": SHA}, slot_size=0x181000)), "too_large")
    case("expired, trusted clock", signed(with_(expires=1790000100)), "expired", facts={"now": 1790000200})
    case("expiry unknown clock: accepted", signed(with_(expires=1790000100)), None)
    case("other channel", signed(with_(channel="beta")), "wrong_channel")
    case("halted release", signed(with_(halted=True)), "halted")
    case("needs newer MicroPython", signed(with_(requires={"micropython": "1.25.0"})), "requires_micropython")
    case("rollout at 0 percent", signed(with_(rollout={"percent": 0, "salt": "s1"})), "not_in_rollout")
    return out


def as_jsonl(items):
    lines = []
    for c in items:
        lines.append(json.dumps({"name": c["name"], "blob": base64.b64encode(c["blob"]).decode(), "facts": c["facts"],
                                 "trust": c["trust"]}))
    return "\n".join(lines) + "\n"

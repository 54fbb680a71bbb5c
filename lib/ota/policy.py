# Whether a verified release may be installed on this device: every rule in one place, each
# refusal with its own reason code. `facts` describes the device (see device_facts in update.py):
#   chip            "esp32"...            board         board id, or None when the device does not
#                                                         know it (update.running_board)
#   slot_size       bytes of the target slot
#   running_version the signed version installed now, or None if unknown (factory image)
#   security_counter the anti-rollback counter kept in NVS
#   channel         the channel this device follows
#   now             trusted Unix time, or None: expiry is only judged with a trusted clock,
#                   never signature trust
#   allow_downgrade True to accept an older version (security_version still applies)
#   micropython, idf  versions of the running firmware where known, for "requires"
#   device_id       for staged rollout
#   known_bad       SHA-256 (hex) of an image that failed its self-test here (ledger.KNOWN_BAD_AFTER times)
#   seen            {"v", "t"}: version and signed `created` of the newest manifest seen for this
#                   channel and board (ledger.seen), or None
import binascii
import hashlib

from .errors import OTAError
from .version import key as version_key


def _loose_key(text):
    # The key of a version someone else wrote ("v5.2", "1.24.0-preview"), for requirements on
    # MicroPython and ESP-IDF: a leading "v" and a missing patch number are allowed; None if it
    # is still not a version.
    if not isinstance(text, str):
        return None
    t = text[1:] if text[:1] == "v" else text
    core = t.split("-")[0].split("+")[0]
    if core.count(".") == 1:
        t = t[:len(core)] + ".0" + t[len(core):]
    try:
        return version_key(t)
    except OTAError:
        return None


def rollout_bucket(device_id, salt):
    """0..9999: where this device falls in a staged rollout (stable for a device and salt)."""
    h = hashlib.sha256(("%s:%s" % (salt, device_id)).encode()).digest()
    return ((h[0] << 24) | (h[1] << 16) | (h[2] << 8) | h[3]) % 10000


# Refusals that say the manifest is not meant for this device at all (the rest are decisions on one
# that is): only a manifest meant for it may move what the device remembers ("seen").
NOT_FOR_THIS_DEVICE = ("wrong_chip", "wrong_board", "board_unknown", "wrong_channel")


def check(m, facts):
    """Raise OTAError(reason) if release `m` (a verified Manifest) must not be installed."""
    chip = facts.get("chip")
    if chip not in m.chips:
        raise OTAError("wrong_chip", "release %s is built for %s, this device is %s" % (m.version, "/".join(m.chips), chip))
    board = facts.get("board")
    if m.board != "*":  # fail closed: a board-specific release needs a device that knows its board
        if not board:
            raise OTAError("board_unknown", "release %s is for board %s and this device does not know its board: "
                           "set it with ota.config.set('board', NAME), ota-tool deploy --board NAME or "
                           "ota-tool device config set board NAME" % (m.version, m.board))
        if m.board != board:
            raise OTAError("wrong_board", "release %s is for board %s, this is %s" % (m.version, m.board, board))
    channel = facts.get("channel")
    if channel is not None and m.channel != channel:
        raise OTAError("wrong_channel", "release %s is on channel %s, this device follows %s" % (m.version, m.channel, channel))
    seen = facts.get("seen")
    if seen and m.created < seen.get("t", 0):
        # Signed before the newest manifest already seen for this channel and board, whatever its
        # version: a mirror replaying it would undo a halt, a narrowed rollout or a newer release
        # (`ota-tool rollout` and `release` raise `created` whenever they sign again).
        raise OTAError("replayed", "this manifest of %s was signed before one already seen here (%s, created %d < %d): "
                       "a replay, or the publisher's clock went back" % (m.version, seen.get("v"), m.created, seen["t"]))
    if m.halted:
        raise OTAError("halted", "release %s was halted by its publisher" % m.version)
    bad = facts.get("known_bad")
    if bad is not None and bad == binascii.hexlify(m.image_sha256).decode():
        raise OTAError("known_bad", "release %s failed its self-test on this device and was rolled back: "
                       "publish a fixed release" % m.version)
    counter = facts.get("security_counter") or 0
    if m.security_version < counter:
        raise OTAError("security_version", "release %s has security version %d, below this device's %d" % (
            m.version, m.security_version, counter))
    if m.slot_size > facts["slot_size"] or m.image_size > facts["slot_size"]:
        raise OTAError("too_large", "release %s needs %d bytes, the slot holds %d" % (m.version, m.slot_size, facts["slot_size"]))
    now = facts.get("now")
    if m.expires is not None and now is not None and now >= m.expires:
        raise OTAError("expired", "the manifest of %s expired" % m.version)
    running = facts.get("running_version")
    if running is not None:
        have = version_key(running)
        if m.version_key == have:
            raise OTAError("up_to_date", "version %s is already installed" % m.version)
        if m.version_key < have and not facts.get("allow_downgrade"):
            raise OTAError("downgrade", "release %s is older than the installed %s" % (m.version, running))
    for what in ("micropython", "idf"):
        need = m.requires.get(what)
        have = facts.get(what)
        if need is not None and have is not None:
            n, h = _loose_key(need), _loose_key(have)
            if n is None or h is None or h < n:
                raise OTAError("requires_" + what, "release %s needs %s >= %s, this device has %s" % (m.version, what, need, have))
    if m.rollout_percent < 100:
        if rollout_bucket(facts.get("device_id") or "", m.rollout_salt) >= m.rollout_percent * 100:
            raise OTAError("not_in_rollout", "release %s is rolled out to %d%% of devices, not yet this one" % (
                m.version, m.rollout_percent))

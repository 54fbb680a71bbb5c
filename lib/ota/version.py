# Release versions: Semantic Versioning 2.0.0 (semver.org), ordered by its precedence rule
# (section 11). The one implementation of version order on the device (policy, app
# requirements, the "seen" record, app bundles) and in ota-tool, which imports it.
#
#   key("1.0.0-rc.10") > key("1.0.0-rc.9")     numeric identifiers compare as numbers
#   key("1.0.0-alpha") < key("1.0.0-alpha.1")  a longer set of identifiers is greater
#   key("1.0.0-rc.1") < key("1.0.0")           a pre-release is below its release
#   key("1.0.0+b1") == key("1.0.0+b2")         build metadata is ignored
from .errors import OTAError

MAX_LEN = 32  # as a signed manifest's "version" member


def _ident(b, numeric_only, leading_zero_ok):
    # One dot-separated identifier (bytes): an int if all digits, else the text; None if invalid.
    if not b:
        return None
    digits = True
    for c in b:
        if 0x30 <= c <= 0x39:
            continue
        digits = False
        if numeric_only or not (0x41 <= c <= 0x5A or 0x61 <= c <= 0x7A or c == 0x2D):
            return None
    if digits:
        if len(b) > 1 and b[0] == 0x30 and not leading_zero_ok:
            return None  # "01": no leading zeros in numeric identifiers
        return int(b)
    return b.decode()


def key(text):
    """A tuple that compares like the versions' SemVer precedence: (major, minor, patch,
    1 for a release or 0 for a pre-release, pre-release identifiers as (0, number) or
    (1, text)). OTAError("bad_manifest") if `text` is not MAJOR.MINOR.PATCH[-PRE][+BUILD]."""
    if not isinstance(text, str) or not 0 < len(text) <= MAX_LEN:
        raise OTAError("bad_manifest", "version %r is not MAJOR.MINOR.PATCH[-PRE][+BUILD] (SemVer)" % (text,))
    b = text.encode()
    plus = b.find(b"+")
    if plus >= 0:
        for part in b[plus + 1:].split(b"."):
            if _ident(part, False, True) is None:
                raise OTAError("bad_manifest", "version %r: bad build metadata" % text)
        b = b[:plus]
    dash = b.find(b"-")
    core = b if dash < 0 else b[:dash]
    nums = core.split(b".")
    out = []
    if len(nums) == 3:
        for n in nums:
            v = _ident(n, True, False)
            if v is None:
                break
            out.append(v)
    if len(out) != 3:
        raise OTAError("bad_manifest", "version %r is not MAJOR.MINOR.PATCH[-PRE][+BUILD] (SemVer)" % text)
    pre = []
    if dash >= 0:
        for part in b[dash + 1:].split(b"."):
            v = _ident(part, False, False)
            if v is None:
                raise OTAError("bad_manifest", "version %r: bad pre-release identifier %r" % (text, part))
            # numbers rank below text: (0, n) < (1, s), and a number is never compared with a text
            pre.append((0, v) if isinstance(v, int) else (1, v))
    out.append(0 if dash >= 0 else 1)
    out.append(tuple(pre))
    return tuple(out)

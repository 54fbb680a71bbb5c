# Canonical JSON: the only JSON the device accepts in a signed document. The signer writes
# json.dumps(doc, sort_keys=True, separators=(",", ":")) of ASCII-only, integer-only data; this
# check refuses anything else (whitespace, duplicate or unsorted keys, escapes other than \" and
# \\, floats, leading zeros, non-ASCII, nesting deeper than MAX_DEPTH, oversized containers), so
# every JSON parser reads the same bytes the same way. Iterative, bounded: no recursion on input.
from .compat import const
from .errors import OTAError

MAX_DEPTH = const(6)
MAX_ITEMS = const(64)
MAX_NUMBER_DIGITS = const(15)

_QUOTE = const(0x22)
_BACKSLASH = const(0x5C)


def _bad(pos, what):
    raise OTAError("bad_manifest", "not canonical JSON at byte %d: %s" % (pos, what))


def _string_end(b, i, n):
    # b[i] is the opening quote; returns the index after the closing quote.
    i += 1
    while i < n:
        c = b[i]
        if c == _QUOTE:
            return i + 1
        if c == _BACKSLASH:
            if i + 1 >= n or b[i + 1] not in (_QUOTE, _BACKSLASH):
                _bad(i, "escape other than \\\" or \\\\")
            i += 2
            continue
        if c < 0x20 or c > 0x7E:
            _bad(i, "byte 0x%02x in a string (ASCII printable only)" % c)
        i += 1
    _bad(n, "unterminated string")


def check(b):
    """Raise OTAError("bad_manifest") unless the bytes `b` are canonical JSON with an object at the top."""
    n = len(b)
    if not n or b[0] != 0x7B:
        _bad(0, "the document must be one JSON object")
    stack = []  # per open container: [is_object, items, last_key_start, last_key_end, expect]
    i = 0
    # expect: 0 value, 1 key (or close), 2 colon, 3 comma or close
    while i < n:
        c = b[i]
        top = stack[-1] if stack else None
        if top is not None and top[4] == 2:
            if c != 0x3A:
                _bad(i, "':' expected")
            top[4] = 0
            i += 1
            continue
        if top is not None and top[4] == 3:
            if c == 0x2C:
                top[4] = 1 if top[0] else 0
                i += 1
                continue
            if c == (0x7D if top[0] else 0x5D):
                i = _close(stack, i + 1, n)
                continue
            _bad(i, "',' or end of container expected")
        if top is not None and top[4] == 1:  # a key
            if c == 0x7D and top[1] == 0:
                i = _close(stack, i + 1, n)
                continue
            if c != _QUOTE:
                _bad(i, "object key expected")
            end = _string_end(b, i, n)
            if _BACKSLASH in b[i:end]:
                _bad(i, "escapes in a key")
            if top[3] and not _less(b, top[2] + 1, top[3] - 1, i + 1, end - 1):
                _bad(i, "keys must be unique and sorted")
            top[2], top[3] = i, end
            top[1] += 1
            if top[1] > MAX_ITEMS:
                _bad(i, "more than %d members" % MAX_ITEMS)
            top[4] = 2
            i = end
            continue
        # a value
        if top is None and i:
            _bad(i, "data after the document")
        if c == 0x7B or c == 0x5B:
            if len(stack) >= MAX_DEPTH:
                _bad(i, "nested deeper than %d" % MAX_DEPTH)
            if top is not None and not top[0]:
                top[1] += 1
                if top[1] > MAX_ITEMS:
                    _bad(i, "more than %d items" % MAX_ITEMS)
            is_obj = c == 0x7B
            stack.append([is_obj, 0, 0, 0, 1 if is_obj else 0])
            i += 1
            if not is_obj and i < n and b[i] == 0x5D:
                stack.pop()
                i += 1
                if stack:
                    stack[-1][4] = 3
            continue
        if top is not None and not top[0]:
            top[1] += 1
            if top[1] > MAX_ITEMS:
                _bad(i, "more than %d items" % MAX_ITEMS)
        if c == _QUOTE:
            i = _string_end(b, i, n)
        elif c == 0x2D or 0x30 <= c <= 0x39:
            j = i + 1 if c == 0x2D else i
            k = j
            while k < n and 0x30 <= b[k] <= 0x39:
                k += 1
            if k == j or (b[j] == 0x30 and k - j > 1) or k - j > MAX_NUMBER_DIGITS:
                _bad(i, "integers only, no leading zeros, at most %d digits" % MAX_NUMBER_DIGITS)
            if c == 0x2D and b[j] == 0x30:
                _bad(i, "-0")
            i = k
        else:
            for word in (b"true", b"false", b"null"):
                if b[i:i + len(word)] == word:
                    i += len(word)
                    break
            else:
                _bad(i, "unexpected byte 0x%02x" % c)
        if top is None:
            _bad(i, "the document must be one JSON object")
        top[4] = 3
    if stack:
        _bad(n, "document ends inside a container")


def _close(stack, i, n):
    # A container ended just before i: the one around it expects a comma or its end next.
    stack.pop()
    if stack:
        stack[-1][4] = 3
    elif i != n:
        _bad(i, "data after the document")
    return i


def _less(b, a0, a1, b0, b1):
    # bytes b[a0:a1] < b[b0:b1]: the order sort_keys gives ASCII keys
    while a0 < a1 and b0 < b1:
        x, y = b[a0], b[b0]
        if x != y:
            return x < y
        a0 += 1
        b0 += 1
    return a1 - a0 < b1 - b0

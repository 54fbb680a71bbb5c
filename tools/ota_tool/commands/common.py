"""What several commands share: argument types (a wrong value is a bad command line, status 2) and
the passphrase of a signing key. Not a command itself (cli.COMMANDS does not list it)."""
import argparse
import os

from ..errors import ToolError


def _whole(text, lo, hi, what):
    try:
        n = int(text)
    except ValueError:
        n = None
    if n is None or not lo <= n <= hi:
        raise argparse.ArgumentTypeError("%r is not %s" % (text, what))
    return n


def percent(text):
    return _whole(text, 0, 100, "a percentage 0..100")


def wbits(text):
    # the zlib windows a device inflates with (ota.manifest: 'wbits' 9..15)
    return _whole(text, 9, 15, "zlib window bits 9..15 (the device's range)")


def positive_int(text):
    return _whole(text, 1, 1 << 62, "a whole number of 1 or more")


def tcp_port(text):
    return _whole(text, 0, 65535, "a TCP port 0..65535")


def seconds(text):
    """More than 0 seconds."""
    try:
        s = float(text)
    except ValueError:
        s = 0
    if not s > 0:
        raise argparse.ArgumentTypeError("%r is not a number of seconds above 0" % text)
    return s


def seconds_or_zero(text):
    return 0.0 if text.strip() in ("0", "0.0") else seconds(text)


def heap(text):
    """A MicroPython heap size as -X heapsize takes it: 192k, 196608."""
    from ..simport import heap_kib

    try:
        kib = heap_kib(text)
    except ToolError:
        kib = 0
    if kib < 16:
        raise argparse.ArgumentTypeError("%r is not a heap size of at least 16k (e.g. 192k)" % text)
    return text.strip()


def passphrase(env):
    """The passphrase in the environment variable `env` (None when no variable is named)."""
    if not env:
        return None
    value = os.environ.get(env)
    if value is None:
        raise ToolError("the environment variable %s is not set" % env, "export %s=... with the key's passphrase" % env)
    return value

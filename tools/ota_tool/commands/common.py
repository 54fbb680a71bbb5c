"""What several commands share: argument types (a wrong value is a bad command line, status 2) and
the passphrase of a signing key. Not a command itself (cli.COMMANDS does not list it)."""
import argparse
import os

from ..errors import ToolError


def percent(text):
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 100:
        raise argparse.ArgumentTypeError("%r is not a percentage 0..100" % text)
    return n


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


def positive_int(text):
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError("%r is not a whole number of 1 or more" % text)
    return n


def tcp_port(text):
    try:
        n = int(text)
    except ValueError:
        n = -1
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError("%r is not a TCP port 0..65535" % text)
    return n


def heap(text):
    """A MicroPython heap size as -X heapsize takes it: 176k, 180224."""
    t = text.strip().lower()
    try:
        n = int(t[:-1]) * 1024 if t.endswith("k") else int(t)
    except ValueError:
        n = 0
    if n < 16 * 1024:
        raise argparse.ArgumentTypeError("%r is not a heap size of at least 16k (e.g. 176k)" % text)
    return text.strip()


def passphrase(env):
    """The passphrase in the environment variable `env` (None when no variable is named)."""
    if not env:
        return None
    value = os.environ.get(env)
    if value is None:
        raise ToolError("the environment variable %s is not set" % env, "export %s=... with the key's passphrase" % env)
    return value

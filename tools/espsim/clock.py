# The simulated board's clock for device code run by the MicroPython unix port (host side). There
# the RTC is the process clock itself, so that the port's time.time() and mbedTLS's certificate date
# check read it as they read the RTC on a chip: the process runs under libfaketime (Debian's
# `faketime`), its clock offset in a file that the fake machine.RTC rewrites when the time is set
# (espsim/modules/machine.py) and that the harness reads back to carry the RTC through a reset.
# Also the simulated LAN's time server (espsim.sntp) the fake ntptime reaches.
import glob
import os
import tempfile

from . import sntp

_LIBS = ("/usr/lib/*/faketime/libfaketime.so.1", "/usr/lib/faketime/libfaketime.so.1",
         "/usr/local/lib/faketime/libfaketime.so.1")


def libfaketime():
    for pattern in _LIBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def environment(rtc_offset):
    """Environment for a MicroPython device process whose RTC leads the host clock by rtc_offset
    seconds (espsim.board). Returns (env, rtc_file); read the file back with read_offset()."""
    lib = libfaketime()
    if lib is None:
        raise RuntimeError("the simulated RTC needs libfaketime under MicroPython: apt-get install faketime")
    fd, path = tempfile.mkstemp(prefix="espsim-rtc-")
    with os.fdopen(fd, "w") as f:
        f.write("%+d\n" % int(rtc_offset))
    env = {"LD_PRELOAD": lib, "FAKETIME_TIMESTAMP_FILE": path, "FAKETIME_NO_CACHE": "1",
           "FAKETIME_DONT_FAKE_MONOTONIC": "1", "ESPSIM_RTC_FILE": path,
           sntp.ENV: os.environ.get(sntp.ENV) or sntp.lan()}
    return env, path


def read_offset(path):
    """The RTC offset the device process left in `path` (then removed), or None."""
    try:
        with open(path) as f:
            return float(f.read().strip())
    except (OSError, ValueError):
        return None
    finally:
        try:
            os.remove(path)
        except OSError:
            pass

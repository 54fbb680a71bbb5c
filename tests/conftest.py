import pytest

from ota_tool import micropython
from ota_tool import sim  # noqa: F401 (puts the fake esp32/machine modules on the path first)


class MicroPythonFailed(AssertionError):
    pass


@pytest.fixture
def mp():
    """Run code under the MicroPython unix port with a heap limit; return its stdout.

    mp(code, heap="64k", env=None, expect_rc=0): fails the test (with MicroPython's stderr) when
    the exit status differs from expect_rc.
    """

    def run(code, heap="64k", env=None, expect_rc=0, **kw):
        res = micropython.run(code=code, heap=heap, env=env, **kw)
        if res.returncode != expect_rc:
            raise MicroPythonFailed(
                "micropython exited %d (expected %d)\n--- stdout\n%s\n--- stderr\n%s"
                % (res.returncode, expect_rc, res.stdout[-4000:], res.stderr[-4000:])
            )
        return res.stdout

    return run

"""Hardware-in-the-loop tests: run only against a real board, e.g.
    pytest tests/hil --port /dev/ttyUSB0 -s
(see firmware/README.md, "Hardware-in-the-loop test"). Without --port they are skipped."""
import pytest


def pytest_addoption(parser):
    parser.addoption("--port", action="store", default=None,
                     help="serial port of an ESP32 running MicroPython (>= 1.21, OTA partition table) "
                          "for the hardware-in-the-loop tests in tests/hil")


@pytest.fixture(scope="session")
def port(request):
    value = request.config.getoption("--port")
    if not value:
        pytest.skip("hardware-in-the-loop test: pass --port /dev/ttyUSB0 (a board running MicroPython)")
    return value

# Stand-in for the parts of MicroPython's `machine` module the OTA library uses, on a simulated chip.
from espsim import chip as _chip
from simwdt import WDT  # noqa: F401 (the task watchdog, ports/esp32/machine_wdt.c: see simwdt.py)

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class Reset(BaseException):
    """machine.reset() on the simulator: the harness reboots the board (BaseException, so device
    code's `except Exception` cannot swallow it)."""


def reset():
    raise Reset("machine.reset()")


def soft_reset():
    raise Reset("machine.soft_reset()")


def reset_cause():
    return PWRON_RESET


def unique_id():
    return bytes([int(x, 16) for x in _chip.get().mac().split(":")])


def freq():
    return 240000000

# machine.WDT on the simulated board: the ESP32's task watchdog as MicroPython drives it.
#
# What the real one does (MicroPython ports/esp32/machine_wdt.c mp_machine_wdt_make_new_instance
# and mp_machine_wdt_feed, extmod/machine_wdt.c; ESP-IDF components/esp_system/task_wdt/task_wdt.c
# esp_task_wdt_reconfigure and task_wdt_isr, task_wdt_impl_timergroup.c):
# - WDT(id=0, timeout=5000): an id other than 0 -> ValueError; timeout <= 0 -> ValueError("WDT
#   timeout too short"). It reconfigures the task watchdog (trigger_panic=true) and adds the one
#   user "mpy_machine_wdt" once: a second WDT(...) sets a new timeout on the same watchdog, the
#   countdown restarted. The hardware counts timeout_ms * 2 ticks of 500 us in a 32-bit register,
#   so a timeout over 2**31 - 1 ms wraps around.
# - feed() restarts the countdown. Nothing stops it: there is no deinit, and a soft reset does not
#   touch it (ports/esp32/main.c soft_reset_exit, modmachine.c machine_deinit). At the REPL it keeps
#   counting too. When it runs out, task_wdt_isr panics and the chip resets; the bootloader runs
#   (a pending image is rolled back, as after any reset).
# The countdown runs outside the device code, as the hardware timer does, in the host program that
# runs the board (ota_tool.sim, ota_tool.simport): every arm and feed is one line on the pipe named
# by ESPSIM_WDT, and the host resets the board when a deadline passes, whatever the code is doing.
# In-process CPython runs (ota_tool.sim.Device.run) use a timer thread that interrupts the main
# thread instead; the harness turns that into a reset.
import os
import sys

_MP = sys.implementation.name == "micropython"
_pipe = None
_state = {"timeout": None, "fired": False, "timer": None}


def _channel():
    global _pipe
    if _pipe is None:
        path = os.getenv("ESPSIM_WDT")
        if not path:
            return None
        _pipe = open(path, "wb")
    return _pipe


def _send(line):
    ch = _channel()
    if ch is not None:
        ch.write(line)
        if not _MP:
            ch.flush()


def hello():
    """Tell the host that this process has attached to the board (ota_tool.simport waits for it)."""
    _send(b"B\n")


def effective_ms(timeout_ms):
    # timeout_ms * 2 ticks in a 32-bit register (task_wdt_impl_timergroup.c, TWDT_TICKS_PER_US 500)
    return ((timeout_ms * 2) & 0xFFFFFFFF) // 2


def armed():
    return _state["timeout"] is not None


def fired():
    """True once the in-process watchdog (CPython) has run out."""
    return _state["fired"]


def power_off():
    """A reset or power cut: the watchdog is off again (in-process runs)."""
    t = _state["timer"]
    if t is not None:
        t.cancel()
    _state["timeout"] = None
    _state["fired"] = False
    _state["timer"] = None


def _start(line):
    # (Re)start the countdown: the host's (a line on the pipe), or in CPython a timer thread.
    if _channel() is not None:
        _send(line)
        return
    if _MP:
        raise RuntimeError("simulated watchdog: no host to reset the board (ESPSIM_WDT is not set)")
    import _thread
    import threading

    old = _state["timer"]
    if old is not None:
        old.cancel()

    def fire():
        _state["fired"] = True
        _thread.interrupt_main()

    t = threading.Timer(_state["timeout"] / 1000, fire)
    t.daemon = True
    _state["timer"] = t
    t.start()


class WDT:
    def __init__(self, id=0, timeout=5000):
        if id != 0:
            raise ValueError()
        if timeout <= 0:
            raise ValueError("WDT timeout too short")
        _state["timeout"] = ms = effective_ms(timeout)
        _start(b"A %d\n" % ms)

    def feed(self):
        _start(b"F\n")


def wait_at_repl():
    """The board stopped at the REPL (an uncaught exception out of main.py, ports/esp32/main.c):
    nothing more runs; the watchdog, if armed, resets it (the host ends this process then)."""
    import time

    while True:
        time.sleep(1)

# Guarding an image on probation (boot.py and main.py call this).
#
# On an ESP32 an uncaught exception out of boot.py or main.py prints a traceback and leaves the
# board at the REPL, and nothing resets it (MicroPython ports/esp32/main.c, mp_task); a hang stays
# a hang. Either way an image waiting for its confirmation is neither confirmed nor rolled back
# until someone power-cycles the board. So while the running image (or a new app tree: the same
# self-test confirms it) is on probation:
#   start()    first thing at boot: arm the task watchdog (machine.WDT, setting
#              "probation_watchdog" in seconds): a hang anywhere before the confirmation resets
#              the board, and the bootloader rolls the image back
#   main.py's guard: an exception before the confirmation resets the board at once (on_probation)
#   end()      once agent.boot() has confirmed the image. The watchdog cannot be stopped on an
#              ESP32 (no deinit, and it survives soft resets: ports/esp32/machine_wdt.c), so its
#              timeout goes to the longest the chip counts: timeout_ms * 2 ticks in 32 bits
#              (ESP-IDF task_wdt_impl_timergroup.c), 2**31 - 1 ms, 24.8 days. An app that wants a
#              watchdog of its own calls machine.WDT(timeout=...) and feeds it (the same watchdog).
import machine

from .compat import ticks_diff, ticks_ms

DEFAULT_S = 300  # when the settings cannot be read: longer than any self-test with its retries
LONGEST_MS = 0x7FFFFFFF
_armed = None  # (ticks_ms, timeout ms) when start() armed the watchdog; boot.py and main.py share it


APP_JOURNAL = "ota-app.journal"  # ota.apptree.JOURNAL: app bundle code is loaded only where it exists


def on_probation():
    """True while the running image waits for its confirmation (ota.bootstate.unconfirmed:
    ESP-IDF's PENDING_VERIFY, NEW under a bootloader without app rollback, or the agent's own boot
    counter for this slot), or an app tree switched to does (ota.apptree.on_probation): its
    self-test imports the new app, which may hang as well as a firmware."""
    from . import bootstate

    if bootstate.unconfirmed():
        return True
    from .compat import fs

    if not fs.exists(APP_JOURNAL):
        return False
    from . import apptree

    return apptree.on_probation()


def start():
    """Arm the watchdog when the image is on probation. Returns its timeout in ms, or 0."""
    try:
        if not on_probation():
            return 0
        from . import config

        seconds = config.load()["probation_watchdog"]
    except Exception as e:  # the state or settings do not load: the watchdog is what is left
        print("ota: probation check failed (%r): arming the watchdog" % (e,))
        seconds = DEFAULT_S
    if not seconds:
        return 0
    global _armed
    machine.WDT(timeout=seconds * 1000)
    _armed = (ticks_ms(), seconds * 1000)
    return seconds * 1000


def time_left():
    """ms left of three quarters of the period of the watchdog start() armed (nothing feeds it
    during probation; the last quarter is for a rollback to be written), or None. The agent's
    first-boot server check ends by then: a reset in the middle of that check would pass for the
    release's own failure, where a network too slow to answer must not count."""
    if _armed is None:
        return None
    return _armed[1] - (_armed[1] >> 2) - ticks_diff(ticks_ms(), _armed[0])


def rearm():
    """Restart the countdown of the watchdog start() armed, if any: a check is about to judge the
    image (its boot could not), with the whole period before it."""
    global _armed
    if _armed is not None:
        machine.WDT(timeout=_armed[1])  # a second WDT(...) restarts the same watchdog's countdown
        _armed = (ticks_ms(), _armed[1])


def end():
    """The image confirmed itself: the watchdog goes to its longest timeout."""
    global _armed
    machine.WDT(timeout=LONGEST_MS)
    _armed = None

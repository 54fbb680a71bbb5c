# Deep sleep that does not get around the update's boot decisions. MicroPython's ESP32 bootloader is
# built with CONFIG_BOOTLOADER_SKIP_VALIDATE_IN_DEEP_SLEEP (ports/esp32/boards/sdkconfig.base): a
# wake from deep sleep boots the app that ran before, with no app selection (ESP-IDF
# bootloader_utility.c, bootloader_utility_load_boot_image_from_deep_sleep). So:
#  - an update installed with reboot=False (set_boot done, the new slot not booted yet) is NOT
#    applied by a wake: only a reset boots it -> deepsleep() resets instead of sleeping;
#  - an image still on probation (bootstate.unconfirmed: PENDING_VERIFY, NEW or UNDEFINED at run
#    time, or the agent's boot counter running) is neither
#    confirmed nor rolled back by the bootloader on wake -> deepsleep() refuses: confirm it
#    (agent.boot(), ota.confirm()) or roll it back first.
import machine

from . import bootstate, slot
from .errors import OTAError


def deepsleep(ms=None):
    """machine.deepsleep(ms), unless an update is waiting for its boot (then machine.reset(), which
    boots it) or the running image is not confirmed yet (then OTAError "pending_verify")."""
    run = slot.running()
    if bootstate.unconfirmed(run):
        raise OTAError("pending_verify", "the running image is not confirmed yet: confirm it (agent.boot(), "
                                         "ota.confirm()) before deep sleep, or a wake skips the bootloader's decision")
    nxt = slot.boot()
    if nxt is not None and not slot.same(nxt, run):
        print("ota: an update waits for its boot in %s: resetting instead of deep sleep" % slot.label(nxt))
        machine.reset()
    machine.deepsleep(ms) if ms is not None else machine.deepsleep()

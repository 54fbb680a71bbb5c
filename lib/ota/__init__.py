"""ota: fail-safe, signed over-the-air updates for MicroPython on ESP32.

    import ota
    ota.confirm(self_test)          # in boot.py/main.py, after every boot
    ota.install_image(stream, length, sha256)   # write + verify + set_boot
    ota.status()                    # slots, states, versions, rollback support
    ota.deepsleep(ms)               # battery devices: deep sleep that never skips an update's boot
    ota.update_now()                # one update check and install, settings from ota.json
    import ota.config; ota.config.set("source", url)   # settings (see ota/config.py)
    import ota.agent                # what main.py runs: boot-time confirmation, schedule, reports

Submodules are imported on first use, so a small app only pays for what it calls.
"""
from .errors import OTAError  # noqa: F401

__version__ = "0.1.0"


def install_image(source, length, sha256=None, reboot=False, **kw):
    """Write an app image from `source` into the next slot, verify it and make it boot next."""
    if "buf" not in kw:
        kw["buf"] = bytearray(4096)  # the block buffer first, before imports fragment the heap
    from .install import install

    result = install(source, length, sha256, **kw)
    if reboot:
        import machine

        machine.reset()
    return result


def confirm(self_test=None):
    from .bootstate import confirm as _confirm

    return _confirm(self_test)


def rollback(reason="requested"):
    from .bootstate import rollback as _rollback

    _rollback(reason)


def status():
    from .overview import status as _status

    return _status()


def deepsleep(ms=None):
    """machine.deepsleep(ms) for devices that update: resets instead when an installed update waits
    for its boot (a wake would not boot it), refuses (OTAError "pending_verify") while the running
    image is unconfirmed. See ota/sleep.py."""
    from .sleep import deepsleep as _deepsleep

    _deepsleep(ms)


def pending_verify():
    from .bootstate import pending_verify as _p

    return _p()


def update_now(source=None, verify=None, secure=None, reboot=True):
    """`update --now [--source URL] [--verify false] [--secure false] [--noreboot]`: one check and
    install with the saved settings (ota.json), the given values winning for this run."""
    from .agent import Agent

    overrides = {}
    for k, v in (("source", source), ("verify", verify), ("secure", secure)):
        if v is not None:
            overrides[k] = v
    return Agent().check_now(reboot=reboot, **overrides)

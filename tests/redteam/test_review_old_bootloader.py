"""A bootloader built without app rollback (sim.create(rollback=False), README 'MicroPython
versions'): the firmware's NEW entries stay NEW."""
import pytest

from ota_tool import sim

from .lab import Lab, agent, fresh


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path, rollback=False, settings={"probation_watchdog": 3})
    yield lab
    lab.close()


def _hang_if_flagged():
    import time

    import simhw

    if simhw.firmware_flags().get("hangs"):
        while True:  # the new firmware's self-test hangs (a driver waiting for a sensor)
            time.sleep(0.05)
    return True


def test_image_on_probation_is_guarded_by_the_watchdog_with_an_old_bootloader(lab):
    """Promise (README 'Nothing leaves an image on probation stuck': 'while the running image is
    on probation ... boot.py arms the task watchdog ... so a hang anywhere resets the board and the
    bootloader rolls the image back'). With an old bootloader the new image runs with its otadata
    entry NEW, which agent.boot() treats as on probation (fresh), but ota.probation.start() arms
    nothing (it only knows PENDING_VERIFY and the agent's counter): a hang in the self-test is a
    hang for ever, and the board never goes back to 1.0.0."""
    lab.image("2.0.0", seed=2, hangs=True)
    lab.publish("2.0.0")

    def check():
        fresh()
        return agent(self_test=_hang_if_flagged).check_now(reboot=True)

    out = lab.run(check)
    assert out.kind == sim.RESET, out
    got = {}

    def main_py():  # boot.py + main.py's order
        fresh()
        from ota import probation

        got["armed_ms"] = probation.start()
        got["state"] = __import__("ota").status().get("rollback")
        import threading
        # the harness gives up after 8 s of hang (a real board would sit there for good)
        got["timer"] = threading.Timer(8, lambda: __import__("_thread").interrupt_main())
        got["timer"].start()
        return agent(self_test=_hang_if_flagged).boot()

    try:
        out = lab.run(main_py)
    except KeyboardInterrupt:
        out = "hung"
    finally:
        if "timer" in got:
            got["timer"].cancel()  # the board reset (the watchdog): no hang left to break
    assert got.get("armed_ms"), (got, out)
    assert out != "hung" and out.kind == sim.RESET and out.cause == sim.BY_WATCHDOG, out


def test_a_crashing_image_is_rolled_back_with_an_old_bootloader(lab):
    """Promise (README: 'main.py resets at once on an exception before the confirmation' so that
    the image is rolled back; 'Nothing leaves an image on probation stuck'). With an old bootloader
    the new image runs NEW; main.py's guard asks probation.on_probation(), which is False for
    NEW, so an exception before agent.boot() is re-raised: the board stops at the REPL with the
    image neither confirmed nor rolled back. (And a reset would not help: the old bootloader boots
    the NEW image again; the agent's own boot counter, which would, is off by default.)"""
    lab.image("2.0.0", seed=2, hangs=True)
    lab.publish("2.0.0")

    def check():
        fresh()
        return agent().check_now(reboot=True)

    assert lab.run(check).kind == sim.RESET
    seen = {}

    def crashing_main_py():  # main.py: probation.start(); ... an exception -> guard(e); raise
        fresh()
        import machine
        import simhw
        from ota import probation

        probation.start()
        try:
            if simhw.firmware_flags().get("hangs"):
                raise RuntimeError("app.py: sensor driver failed at import")
            return agent().boot()
        except Exception:
            seen["on_probation"] = probation.on_probation()
            if seen["on_probation"]:
                machine.reset()
            raise

    try:
        out = lab.run(crashing_main_py)
    except RuntimeError:
        out = "stopped at the REPL"
    assert out != "stopped at the REPL", (out, seen)

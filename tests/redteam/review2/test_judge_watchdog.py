"""Promise (README "Nothing leaves an image on probation stuck"): "once confirmed main.py sets [the
watchdog] to the longest timeout". An image judged at run time (agent._judge_undecided, in
check_now: its boot had no NTP) is confirmed there, but nothing ends the probation watchdog:
the confirmed board is then reset by it (here 10 s; 300 s by default), in the middle of whatever
the app or the download that follows the judgement is doing."""
import os
import time

from ota_tool import sim

from .conftest import wifi


def test_image_confirmed_at_a_check_is_not_reset_by_the_probation_watchdog(board):
    board.publish("2.0.0", seed=2)

    def install():
        from ota import agent, config

        config.set("probation_watchdog", 10)
        a = agent.Agent(connect=wifi)
        a.boot()
        return a.check_now(reboot=True)

    assert board.dev.run(install).kind == sim.RESET
    board.dev.rtc_offset = None  # power-cycled: the RTC reads 2000 again
    state = {}

    def boot_then_check_then_app():
        from ota import agent, probation

        probation.start()
        a = agent.Agent(connect=wifi)
        os.environ["ESPSIM_NTP"] = "off"
        try:
            state["boot"] = a.boot()
        finally:
            del os.environ["ESPSIM_NTP"]
        state["check"] = a.check_now(reboot=False)  # judged now: confirmed, up to date
        state["on_probation"] = probation.on_probation()
        time.sleep(8)  # the app runs (it does not use the watchdog)
        return "app done"

    out = board.dev.run(boot_then_check_then_app)
    assert state.get("boot") == "unconfirmed", state
    assert state.get("check") == "up_to_date" and state.get("on_probation") is False, state
    assert out.kind == sim.RETURNED, (out, "a confirmed image was reset by the probation watchdog")

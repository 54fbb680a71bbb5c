"""Promise (README "Nothing leaves an image on probation stuck", SECURITY fix 1+2): an image its
first boot could not judge (no NTP) is judged at the first check that can set the clock — a good
release whose server answers is confirmed there. The server-check time box (3/4 of the probation
watchdog, set at boot) is still applied at that later check: once 3/4 of the period have passed
since main.py armed the watchdog, the deadline is already in the past, the check fails at once
("timeout: out of time") without any request, and the good release is rolled back."""
import os

from ota_tool import sim

from .conftest import wifi


def test_unjudged_good_release_is_not_rolled_back_by_a_spent_time_box(board, monkeypatch):
    board.publish("2.0.0", seed=2)

    def install():
        from ota import agent

        a = agent.Agent(connect=wifi)
        a.boot()
        return a.check_now(reboot=True)

    out = board.dev.run(install)
    assert out.kind == sim.RESET, out  # 2.0.0 installed, the reset boots it

    board.dev.rtc_offset = None  # the board was power-cycled: its RTC reads 2000 again
    state = {}

    def first_boot_then_check():
        from ota import agent, probation, slot

        probation.start()  # as boot.py / main.py: the image is on probation
        a = agent.Agent(connect=wifi)
        os.environ["ESPSIM_NTP"] = "off"  # no time server reachable at boot
        try:
            state["boot"] = a.boot()
        finally:
            del os.environ["ESPSIM_NTP"]
        state["slot"] = slot.label(slot.running())
        # The app runs; the agent's check comes 230 s after the watchdog was armed (the schedule's
        # retries after clock_unset: 30-60 s, 60-120 s, 120-240 s), before the watchdog's 300 s.
        t0, period = probation._armed
        probation._armed = (t0 - 230000, period)
        state["check"] = a.check_now(reboot=False)  # NTP answers now, the server is up
        return state["check"]

    out = board.dev.run(first_boot_then_check)
    assert state.get("boot") == "unconfirmed"
    # expected: judged now (server answers with a verifying manifest) -> confirmed, up to date
    assert out.kind == sim.RETURNED, (out, state, out.stdout)
    label, _ = board.dev.boot_only()
    assert label == state["slot"]

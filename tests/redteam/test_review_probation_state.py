"""Issue-14 style: what the device remembers about an image on probation."""
import pytest

from ota_tool import sim

from .lab import Lab, NtpDown, agent, fresh


@pytest.fixture
def lab(tmp_path):
    lab = Lab(tmp_path)
    yield lab
    lab.close()


def _install(lab, version):
    def dev():
        fresh()
        return agent().check_now(reboot=False)

    out = lab.run(dev)
    assert out.kind == sim.RETURNED and out.value == "installed", out
    return out


def test_unconfirmed_image_does_not_overwrite_the_last_confirmed_one(lab):
    """Found by the review: when NTP fails at its first boot, agent.boot() returns 'unconfirmed'
    and cancels ESP-IDF's rollback (the agent's boot counter runs instead); the next check then
    installed a newer release over the slot holding the last confirmed image. Must: nothing
    installs over the way back while the image is unjudged (the check says clock_unset, a library
    install says pending_verify); once the clock is set, the check judges the running image
    first (its self-test and server check: confirmed), then installs."""
    lab.publish("2.0.0")
    _install(lab, "2.0.0")  # into ota_1, set_boot; the run returns: power-off, RTC lost

    lab.image("2.1.0", seed=21)
    lab.publish("2.1.0")
    ntp = NtpDown()
    seen = {}

    def first_boot_of_2():
        fresh()
        import ota
        from ota import ledger, slot
        from ota.errors import OTAError

        a = agent()
        seen["boot"] = a.boot()          # NTP down: not judged
        seen["probe"] = ledger.probe(slot.running())
        seen["status"] = ota.status()["state"] if "state" in ota.status() else None
        seen["check_no_clock"] = a.check_now(reboot=False)
        try:
            ota.install_image(open(__file__, "rb"), 4096)
        except OTAError as e:
            seen["install"] = e.reason
        seen["counter_before"] = ledger.security_counter()
        seen["ota_0_before"] = lab.slot_version("ota_0")
        ntp.down = False                 # the network's time server answers again (main.py's agent.run)
        seen["check"] = a.check_now(reboot=False)
        seen["confirmed"] = ledger.running()["ok"]
        return seen

    try:
        out = lab.run(first_boot_of_2)
    finally:
        ntp.restore()
    assert out.booted == "ota_1", out
    assert seen["boot"] == "unconfirmed" and seen["probe"] is not None
    assert seen["check_no_clock"] == "failed" and seen["install"] == "pending_verify", seen
    assert seen["ota_0_before"] == "1.0.0", seen  # the way back, kept while unjudged
    assert seen["check"] == "installed" and seen["confirmed"], seen  # judged first, then installed
    assert lab.slot_version("ota_0") == "2.1.0"


def test_failed_release_after_an_unjudged_one_keeps_a_working_way_back(lab):
    """Consequence of the above. Promise (README 'How an update works': 'after [set_boot], the
    bootloader's rollback covers every failure until the new image confirms itself'): 2.1.0, whose
    self-test fails, was installed while 2.0.0 was still unjudged; at 2.1.0's first boot the only
    other image is the never-confirmed 2.0.0, so the board keeps running the failed 2.1.0."""
    lab.publish("2.0.0")
    _install(lab, "2.0.0")
    lab.image("2.1.0", seed=21, selftest_fails=True)
    lab.publish("2.1.0")
    ntp = NtpDown()

    def first_boot_of_2():
        fresh()
        a = agent()
        r = a.boot()
        ntp.down = False
        return r, a.check_now(reboot=True)

    try:
        out = lab.run(first_boot_of_2)
    finally:
        ntp.restore()
    assert out.kind == sim.RESET  # installed 2.1.0 and reset

    res = {}

    def first_boot_of_21():
        fresh()
        res["boot"] = agent().boot()  # self-test fails: must roll back (resets)
        return res

    out = lab.run(first_boot_of_21)
    assert out.booted == "ota_0"
    assert out.kind == sim.RESET, (out, res)  # a rollback resets; 'unconfirmed' keeps the failed image


def test_confirm_runs_the_self_test_of_an_image_on_probation(lab):
    """Found by the review (README: 'ota.confirm(self_test)  # confirm the image on probation (or
    roll back)'; SECURITY.md: the counter 'is raised only after the new image confirmed itself'):
    an image the agent left on probation ('unconfirmed': NTP down; the agent's boot counter runs,
    otadata VALID) was confirmed by ota.confirm(self_test) without calling self_test, and the
    counter rose to its security version. Must: the self-test runs; it fails: rolled back."""
    lab.publish("2.0.0", security_version=3)
    _install(lab, "2.0.0")
    ntp = NtpDown()
    res = {}

    def first_boot():
        fresh()
        import ota
        from ota import ledger

        res["boot"] = agent().boot()

        def failing():
            res["self_test_called"] = True
            return False

        res["confirm"] = ota.confirm(failing)  # a failure rolls back: does not return
        res["counter"] = ledger.security_counter()
        return res

    try:
        out = lab.run(first_boot)
    finally:
        ntp.restore()
    assert res.get("boot") == "unconfirmed", (out, res)
    # the self-test ran, failed, and rolled back (reset into 1.0.0); the counter never rose
    assert out.kind == sim.RESET and res.get("self_test_called") and "confirm" not in res, (out, res)

    def after():
        fresh()
        from ota import ledger

        return ledger.security_counter()

    out = lab.run(after)
    assert out.booted == "ota_0" and out.value == 0, out

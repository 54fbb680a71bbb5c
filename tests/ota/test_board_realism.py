"""The device library on a simulated board as unforgiving as a real ESP32 (issue 15): a clock at 2000
after power-on (NTP before TLS, clock_unset never held against a release), two heaps (the ESP-IDF
heap's largest block as a precondition; a TLS session that does not fit is out_of_memory), NVS
handles that are never freed, deep sleep that skips the bootloader, the port's errno values, and
the viper fallback of MicroPython releases without a native emitter."""
import json
import os

import pytest

import ota
from espsim import sntp
from ota import agent as ota_agent
from ota import audit
from ota_tool import devfs, images, keys, release, server, sim
from tests.simhelpers import SMALL, connect, healthy, remembered

V1 = images.app_image("1.0.0", size=SMALL, seed=1)
V2 = images.app_image("2.0.0", size=SMALL, seed=2)
NVS_CHECKS = 1000 if os.environ.get("OTA_CAMPAIGN") == "1" else 100  # CI runs the short sample


@pytest.fixture
def world(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = tmp_path / "repo"
    repo.mkdir()
    srv = server.start_server(str(repo), tls_dir=str(tmp_path / "tls"))
    yield {"key": key, "repo": str(repo), "srv": srv, "url": srv.url + "stable.json", "tmp": tmp_path}
    srv.stop()


def new_board(w, image=V1, **cfg):
    dev = sim.create(str(w["tmp"] / "dev.bin"), image)
    settings = {"source": w["url"], "keys": {"release": keys.public_text(w["key"])}, "device_id": "d"}
    settings.update(cfg)
    devfs.put(dev.path, "ota.json", json.dumps(settings).encode())
    devfs.put(dev.path, "ota_ca.der", w["srv"].ca_der)
    return dev


def check(reboot=True):
    def app():
        a = ota_agent.Agent(self_test=healthy, connect=connect)
        return a.check_now(reboot=reboot), [r.get("reason") for r in audit.read("ota.log")]

    return app


def boot():
    def app():
        return ota_agent.Agent(self_test=healthy, connect=connect).boot()

    return app


# --- 1. the clock


def test_tls_is_refused_while_the_clock_reads_2000(world):
    dev = new_board(world)

    def app():
        from ota.errors import OTAError
        from ota.http import HttpFetcher

        try:
            HttpFetcher(ca=world["srv"].ca_der).open(world["url"]).close()
        except OTAError as e:
            return e.reason

    assert dev.run(app).value == "tls_verify"


def test_agent_sets_the_clock_before_tls_and_recovers(world, monkeypatch):
    release.build(V2, "2.0.0", [world["key"]], world["repo"])
    dev = new_board(world)
    monkeypatch.setenv(sntp.ENV, "off")  # no time server on the LAN
    event, reasons = dev.run(check()).value
    assert event == "failed" and "clock_unset" in reasons  # the network's fault: retried, not refused
    monkeypatch.delenv(sntp.ENV)
    assert dev.run(check()).kind == sim.RESET  # NTP back: the clock is set, the update installs


def test_clock_unset_at_first_boot_does_not_roll_back_a_good_release(world, monkeypatch):
    release.build(V2, "2.0.0", [world["key"]], world["repo"])
    dev = new_board(world)
    assert dev.run(check()).kind == sim.RESET  # 2.0.0 installed
    dev.rtc_offset = None  # the board loses power before the new image's first boot
    monkeypatch.setenv(sntp.ENV, "off")
    out = dev.run(boot())
    assert (out.kind, out.booted, out.value) == (sim.RETURNED, "ota_1", "unconfirmed")
    out = dev.run(boot())  # a power cycle later, NTP still down: still not judged, still 2.0.0
    assert (out.booted, out.value) == ("ota_1", "unconfirmed")
    monkeypatch.delenv(sntp.ENV)
    out = dev.run(boot())
    assert (out.booted, out.value) == ("ota_1", "confirmed")
    assert (dev.run(remembered("bad")).value or {}).get("n", 0) == 0  # never counted against 2.0.0


# --- 2 and 3. two heaps; NVS handles


def test_c_heap_largest_block_is_a_precondition(world):
    dev = new_board(world, min_free_idf_heap=60000)  # more than a board with Wi-Fi up has
    event, reasons = dev.run(check()).value
    assert event == "not_now" and "idf_heap" in reasons


def test_update_that_needs_two_tls_sessions_fails_out_of_memory(world):
    release.build(V2, "2.0.0", [world["key"]], world["repo"])
    dev = new_board(world)

    def app():
        from ota import clock
        from ota.http import HttpFetcher

        clock.ensure(["pool.ntp.org"])
        held = HttpFetcher(ca=world["srv"].ca_der).open(world["url"])  # the app keeps a TLS connection
        try:
            return ota_agent.Agent(self_test=healthy, connect=connect).check_now(), audit.read("ota.log")[-1]
        finally:
            held.close()

    event, last = dev.run(app).value
    assert event == "failed" and last["reason"] == "out_of_memory"


def test_nvs_handles_stay_bounded_over_many_checks_and_an_update(world):
    release.build(V1, "1.0.0", [world["key"]], world["repo"])
    dev = new_board(world)

    def many_checks():
        from espsim import chip

        a = ota_agent.Agent(self_test=healthy, connect=connect)
        a.check_now()
        first = chip.get().idf_held("nvs_handle")
        events = set(a.check_now() for _ in range(NVS_CHECKS))
        return events, first, chip.get().idf_held("nvs_handle")

    events, first, last = dev.run(many_checks).value
    assert events == {"up_to_date"}
    assert last <= first + 2, "%d NVS handles after %d checks (%d after the first)" % (last, NVS_CHECKS, first)
    big = images.app_image("2.0.0", size=300 * 1024, seed=2)  # 80 flash blocks: one NVS write per block
    release.build(big, "2.0.0", [world["key"]], world["repo"])

    def update():
        from espsim import chip

        event = ota_agent.Agent(self_test=healthy, connect=connect).check_now(reboot=False)
        return event, chip.get().idf_held("nvs_handle")

    event, held = dev.run(update).value
    assert event == "installed" and held <= 4, "%d NVS handles after a 300 KB update" % held


# --- 5. deep sleep


def test_deepsleep_boots_a_waiting_update_and_refuses_while_pending(world):
    release.build(V2, "2.0.0", [world["key"]], world["repo"])
    dev = new_board(world)

    def install_then_sleep():
        assert ota_agent.Agent(self_test=healthy, connect=connect).check_now(reboot=False) == "installed"
        ota.deepsleep(60000)  # a wake would boot 1.0.0 again: resets instead

    out = dev.run(install_then_sleep)
    assert out.kind == sim.RESET and out.booted == "ota_0"

    def pending_then_confirmed():
        from ota.errors import OTAError

        try:
            ota.deepsleep(60000)
        except OTAError as e:
            refused = e.reason
        ota_agent.Agent(self_test=healthy, connect=connect).boot()
        return refused

    out = dev.run(pending_then_confirmed)
    assert out.booted == "ota_1" and out.value == "pending_verify"
    out = dev.run(lambda: ota.deepsleep(60000))
    assert out.kind == sim.DEEP_SLEEP
    assert dev.run(lambda: ota.status()["version"]).booted == "ota_1"  # woke the same image


# --- 1, 6, 7 under the MicroPython unix port


def test_micropython_mbedtls_refuses_at_2000_and_the_agent_recovers(world, monkeypatch):
    release.build(V1, "1.0.0", [world["key"]], world["repo"])
    dev = new_board(world)
    code = """
import gc
gc.collect()
from ota.errors import OTAError
from ota.http import HttpFetcher
import time
print("year", time.gmtime()[0])
try:
    HttpFetcher(ca=open(%r, "rb").read()).open(%r).close()
except OTAError as e:
    print("before", e.reason)
from ota import agent, clock
a = agent.Agent()
print("check", a.check_now(), time.gmtime()[0] >= 2024)
""" % (str(world["tmp"] / "ca.der"), world["url"])
    (world["tmp"] / "ca.der").write_bytes(world["srv"].ca_der)
    monkeypatch.setenv(sntp.ENV, "off")
    out = dev.run_micropython(code, heap="200k")  # a fetcher of its own beside the agent (AGENT_HEAP)
    assert "year 2000" in out.stdout and "before tls_verify" in out.stdout, out.stdout + out.stderr
    assert "check failed" in out.stdout  # clock_unset: no TLS attempted
    monkeypatch.delenv(sntp.ENV)
    out = dev.run_micropython(code, heap="200k")  # a fetcher of its own beside the agent (AGENT_HEAP)
    assert "check up_to_date True" in out.stdout, out.stdout + out.stderr


def test_port_errno_values_and_viper_fallback_under_micropython(tmp_path, mp):
    # The ESP32's errno module (newlib) in place of the unix port's (Linux): compat must compare
    # with the running port's values, not Linux's 110.
    fake = tmp_path / "esp32errno"
    fake.mkdir()
    (fake / "errno.py").write_text("from uerrno import *\nETIMEDOUT = 116\nENOMEM = 12\n")
    out = mp("from ota.compat import net\nprint(net.is_timeout(OSError(116)), net.is_timeout(OSError(110)))",
             extra_path=(str(fake),))
    assert out.split() == ["True", "False"]


@pytest.mark.parametrize("version, viper", [("1.23", False), ("1.24", True)])
def test_riscv_before_1_24_falls_back_from_viper(tmp_path, version, viper):
    from tests.simhelpers import new_device

    dev = new_device(tmp_path, images.app_image("1.0.0", size=SMALL, seed=1, chip="esp32c3"),
                     chip="esp32c3", micropython=version)
    code = """
import sys
import ota.compat as c
print("viper" if "ota.compat.viper" in sys.modules else "plain", c.xor_fold(b"\\x01\\x02\\x04", 0, 3, 0))
"""
    out = dev.run_micropython(code, heap="64k")
    assert out.kind == sim.RETURNED, out.stderr
    kind, value = out.stdout.split()[:2]
    assert value == "7" and (kind == "viper") == viper

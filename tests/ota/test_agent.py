"""The device agent on simulated boards, against a real `ota-tool serve`: configuration, the
boot-time self-test and confirmation, boot attempts, rollback, reports and the audit log, the
schedule, preconditions, and staged rollout over a fleet."""
import json
import shutil

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import ota
from ota import agent as ota_agent
from ota import audit, config, schedule
from ota_tool import devfs, images, keys, release, reports, server, sim
from tests.simhelpers import SMALL, connect, healthy, remembered

V1 = images.app_image("1.0.0", size=SMALL, seed=1)
V2 = images.app_image("2.0.0", size=SMALL, seed=2)
V3_BAD = images.app_image("3.0.0", size=SMALL, seed=3, flags={"selftest_fails": True})
V3_NOWIFI = images.app_image("3.0.0", size=SMALL, seed=4, flags={"wifi_broken": True})


@pytest.fixture
def world(tmp_path):
    key = keys.generate(str(tmp_path / "k.pem"))
    repo = tmp_path / "repo"
    srv = server.start_server(str(repo) if repo.exists() else _mk(repo), tls_dir=str(tmp_path / "tls"),
                              reports=str(tmp_path / "reports.sqlite"))
    w = {"key": key, "repo": str(repo), "srv": srv, "url": srv.url + "stable.json", "tmp": tmp_path,
         "reports": str(tmp_path / "reports.sqlite")}
    yield w
    srv.stop()


def _mk(p):
    p.mkdir()
    return str(p)


def publish(w, image, version, **kw):
    return release.build(image, version, [w["key"]], w["repo"], **kw)


def new_board(w, name="dev", image=V1, **cfg):
    dev = sim.create(str(w["tmp"] / (name + ".bin")), image)
    settings = {"source": w["url"], "keys": {"release": keys.public_text(w["key"])},
                "report_url": w["srv"].url + "report", "device_id": name, "interval": 60}
    settings.update(cfg)
    devfs.put(dev.path, "ota.json", json.dumps(settings).encode())
    devfs.put(dev.path, "ota_ca.der", w["srv"].ca_der)
    return dev


def main_py(check=True, **kw):
    """What main.py does: the agent confirms (or rolls back), then checks for updates."""
    def app():
        a = ota_agent.Agent(self_test=healthy, connect=connect, **kw)
        first = a.boot()
        return first, a.check_now() if check else None

    return app


def versions_reported(w, device):
    store = reports.ReportStore(w["reports"])
    try:
        return [(r["event"], r.get("target_version"), r.get("reason")) for r in store.rows(device)]
    finally:
        store.close()


def running(dev):
    return dev.run(lambda: (ota.status()["version"], ota.status()["running"])).value


def test_update_confirm_and_up_to_date(world):
    dev = new_board(world)
    publish(world, V2, "2.0.0")
    out = dev.run(main_py())
    assert out.kind == sim.RESET and out.booted == "ota_0"  # installed, rebooting
    out = dev.run(main_py())
    assert out.kind == sim.RETURNED and out.value == ("confirmed", "up_to_date")
    assert running(dev) == ("2.0.0", "ota_1")
    events = [e for e, _, _ in versions_reported(world, "dev")]
    assert events[:3] == ["downloading", "installed", "confirmed"]
    log = dev.run(lambda: audit.read("ota.log")).value
    assert [r["event"] for r in log][-3:] == ["installed", "confirmed", "up_to_date"]


@pytest.mark.parametrize("bad", [V3_BAD, V3_NOWIFI], ids=["self-test fails", "new firmware breaks Wi-Fi"])
def test_broken_release_rolls_back_and_is_reported(world, bad):
    dev = new_board(world)
    publish(world, V2, "2.0.0")
    dev.run(main_py())
    assert dev.run(main_py()).value[0] == "confirmed"
    publish(world, bad, "3.0.0")
    assert dev.run(main_py()).kind == sim.RESET  # 3.0.0 installed
    out = dev.run(main_py())  # 3.0.0 boots, fails its check: rolls back
    assert out.kind == sim.RESET and out.booted == "ota_0"
    out = dev.run(main_py(check=False))  # 2.0.0 again; it sends the report 3.0.0 could not
    assert out.booted == "ota_1" and out.value[0] == "already_valid"
    assert ("rolled_back", "3.0.0") in [(e, v) for e, v, _ in versions_reported(world, "dev")]
    assert running(dev) == ("2.0.0", "ota_1")
    assert any(r["event"] == "rolled_back" for r in dev.run(lambda: audit.read("ota.log")).value)


def _flaky_server_check(failures):
    """main.py, with the first `failures` fetches of the manifest failing as a dropped connection."""
    def app():
        from ota import update
        from ota.errors import OTAError

        real = update.fetch_verified
        left = [failures]

        def flaky(*args, **kw):
            if left[0]:
                left[0] -= 1
                raise OTAError("connect", "cannot connect: connection reset")
            return real(*args, **kw)

        update.fetch_verified = flaky
        try:
            return main_py(check=False)()
        finally:
            update.fetch_verified = real

    return app


@pytest.mark.parametrize("failures,expected", [(2, "ota_1"), (3, "ota_0")])
def test_first_boot_server_check_outlives_a_network_fault(world, failures, expected):
    # SERVER_CHECK_TRIES (3): two faults in a row are retried past; a server down for all three
    # tries rolls the release back (and, being the network's fault, does not count as known_bad)
    assert ota_agent.SERVER_CHECK_TRIES == 3
    dev = new_board(world)
    publish(world, V2, "2.0.0")
    assert dev.run(main_py()).kind == sim.RESET  # installed
    out = dev.run(_flaky_server_check(failures))
    if expected == "ota_1":
        assert out.kind == sim.RETURNED and out.value[0] == "confirmed"
    else:
        assert out.kind == sim.RESET and out.booted == "ota_1"  # rolled back from the new image
    assert running(dev)[1] == expected
    assert (dev.run(remembered("bad")).value or {}).get("n", 0) == 0


def interrupted_self_test():
    # the first boot of the new image loses power in its self-test (a brownout, a watchdog)
    import machine

    import simhw

    if simhw.firmware_flags().get("version") == "2" and not _interrupted:
        _interrupted.append(1)
        machine.reset()
    return True


_interrupted = []


@pytest.mark.parametrize("limit,expected", [(1, ("1.0.0", "ota_0")), (3, ("2.0.0", "ota_1"))])
def test_boot_retry_limit(world, limit, expected):
    v2 = images.app_image("2.0.0", size=SMALL, seed=2, flags={"version": "2"})
    dev = new_board(world, boot_retry_limit=limit)
    publish(world, v2, "2.0.0")
    dev.run(main_py())
    _interrupted.clear()

    def boot_interrupted():
        ota_agent.Agent(self_test=interrupted_self_test, connect=connect).boot()

    assert dev.run(boot_interrupted).kind == sim.RESET
    dev.run(lambda: ota_agent.Agent(connect=connect).boot())
    assert running(dev)[1] == expected[1]


def test_retry_limit_exhausted_rolls_back(world):
    dev = new_board(world, boot_retry_limit=2)
    publish(world, V3_BAD, "3.0.0")
    dev.run(main_py())
    boots = []
    for _ in range(5):  # a firmware that never gets through its self-test (crash, watchdog)
        out = dev.run(lambda: ota_agent.Agent(self_test=lambda: __import__("machine").reset()).boot())
        boots.append(out.booted)
        if out.booted == "ota_0":
            break
    # two tries, then the third boot rolls back: the fourth runs the old image
    assert boots == ["ota_1", "ota_1", "ota_1", "ota_0"]
    assert running(dev) == ("1.0.0", "ota_0")  # as its app descriptor says: it was flashed by cable


def test_security_counter_rises_only_after_confirmation(world):
    dev = new_board(world)
    publish(world, V2, "2.0.0", security_version=2)
    dev.run(main_py())

    def first_boot():
        before = ota.status()["security_counter"]  # on probation: not raised yet
        a = ota_agent.Agent(self_test=healthy, connect=connect)
        a.boot()
        return before, ota.status()["security_counter"]

    assert dev.run(first_boot).value == (0, 2)
    publish(world, images.app_image("2.5.0", size=SMALL, seed=5), "2.5.0", security_version=1)
    assert dev.run(main_py(check=True)).value[1] == "refused"
    assert versions_reported(world, "dev")[-1][2] == "security_version"


def test_not_now_and_one_off_overrides(world):
    dev = new_board(world)
    publish(world, V2, "2.0.0")
    assert dev.run(lambda: ota_agent.Agent(power_ok=lambda: False).check_now()).value == "not_now"
    assert dev.run(lambda: ota_agent.Agent().check_now(source=world["srv"].url + "nothing.json")).value == "failed"
    out = dev.run(lambda: ota.update_now(reboot=False))
    assert out.value == "installed" and out.kind == sim.RETURNED
    log = [r["event"] for r in dev.run(lambda: audit.read("ota.log")).value]
    assert log[:2] == ["not_now", "failed"] and "installed" in log


def test_verification_off_is_explicit_and_loud(world, capsys):
    dev = new_board(world, verify=False)
    publish(world, V2, "2.0.0")
    out = dev.run(lambda: ota_agent.Agent().check_now(reboot=False))
    assert out.value == "installed"
    assert "signature verification is turned OFF" in capsys.readouterr().out
    assert "verification_off" in [r["event"] for r in dev.run(lambda: audit.read("ota.log")).value]


def test_config_api(world):
    dev = new_board(world)

    def app():
        config.set("interval", 7200)
        with pytest.raises(ota.OTAError):
            config.key("add", "again", keys.public_text(world["key"]))  # one key under two names
        config.key("add", "backup", keys.public_text(Ed25519PrivateKey.from_private_bytes(bytes(range(7, 39)))))
        with pytest.raises(ota.OTAError):
            config.key("add", "bad", "not a key")
        config.key("delete", "backup")
        with pytest.raises(ota.OTAError):
            config.key("delete", "release")  # the last trusted key stays
        with pytest.raises(ota.OTAError):
            config.set("boot_retry_limit", 0)
        return config.load()

    cfg = dev.run(app).value
    assert cfg["interval"] == 7200 and list(cfg["keys"]) == ["release"]
    on_flash = json.loads(devfs.get(dev.path, "ota.json"))
    assert on_flash["interval"] == 7200


def test_power_cut_during_config_and_log_writes(world):
    """Every flash operation of the agent's own writes: config save, audit log append with
    rotation, NVS counters. After each cut the board boots and the config is old or new, whole."""
    base = new_board(world, name="base", log_max=300)

    def writes():
        config.set("interval", 999)
        for i in range(4):
            audit.append("ota.log", 300, "checking", n=i)
        from ota import state

        state.set_int("secver", 5)

    probe = sim.Device(str(world["tmp"] / "probe.bin"))
    shutil.copyfile(base.path, probe.path)
    probe.run(writes)
    total = probe.ops
    tried = 0
    for mode in ("before", "torn"):
        for cut in range(0, total):
            dev = sim.Device(str(world["tmp"] / "cut.bin"))
            shutil.copyfile(base.path, dev.path)
            dev.arm_power_cut(cut, mode)
            dev.run(writes)
            tried += 1
            cfg = dev.run(config.load).value  # boots, mounts, and the config is whole
            assert cfg["interval"] in (60, 999) and cfg["keys"], (cut, mode)
            log = dev.run(lambda: audit.read("ota.log")).value
            assert [r["n"] for r in log] == sorted(r["n"] for r in log)
    assert tried == 2 * total and total > 10


def test_schedule_jitter_backoff_and_retry_after():
    cfg = dict(config.DEFAULTS, interval=3600, jitter=0.25, retry=60, retry_max=3600)
    delays = [schedule.next_delay(cfg) for _ in range(2000)]
    assert 0.75 * 3600000 <= min(delays) and max(delays) <= 1.25 * 3600000
    assert len(set(d // 60000 for d in delays)) >= 28  # every minute of the 30-minute window: no thundering herd
    backoff = [schedule.next_delay(cfg, failures=n) for n in range(1, 12)]
    assert all(30000 <= b <= 60000 * (1 << n) for n, b in enumerate(backoff[:6]))
    assert max(backoff) <= 3600000 and backoff[-1] >= 1800000  # capped, at least half the cap
    assert schedule.next_delay(cfg, failures=1, retry_after=900) >= 900000


def test_reports_of_a_board_flashed_by_cable_name_its_release_and_the_one_it_refused(world):
    """A board flashed by cable runs the release its app descriptor states (the ledger has no record
    of it); a policy refusal names the manifest's version, so `fleet` counts it under SKIPPED."""
    dev = new_board(world)  # V1, app descriptor version 1.0.0, flashed as by ota-tool flash
    publish(world, V2, "2.0.0", percent=0, salt="outside")  # a stage no device is in
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "refused"
    store = reports.ReportStore(world["reports"])
    try:
        rows = [(r["event"], r["running_version"], r["target_version"], r["reason"]) for r in store.rows("dev")]
        summary = store.summary()
    finally:
        store.close()
    assert rows == [("refused", "1.0.0", "2.0.0", "not_in_rollout")]
    assert reports.release_entry(summary, "2.0.0")["skipped"] == 1
    assert summary["device_list"][0]["release"] == "1.0.0"


def test_staged_rollout_over_a_fleet(world):
    """50 boards, a release at 10 %: about 10 % install it, the same ones on a second pass."""
    from ota.policy import rollout_bucket

    salt = "canary-1"
    publish(world, V2, "2.0.0", extra={"rollout": {"percent": 10, "salt": salt}})
    names = ["node-%02d" % i for i in range(50)]
    expected = sorted(n for n in names if rollout_bucket(n, salt) < 1000)
    first = sim.create(str(world["tmp"] / "template.bin"), V1)
    installed = []
    for n in names:
        dev = sim.Device(str(world["tmp"] / "fleet.bin"))
        shutil.copyfile(first.path, dev.path)
        devfs.put(dev.path, "ota.json", json.dumps({"source": world["url"], "device_id": n,
                                                   "keys": {"r": keys.public_text(world["key"])}}).encode())
        devfs.put(dev.path, "ota_ca.der", world["srv"].ca_der)
        out = dev.run(lambda: ota_agent.Agent().check_now(reboot=False))
        if out.value == "installed":
            installed.append(n)
        else:
            assert out.value == "refused"
    assert installed == expected
    assert 1 <= len(installed) <= 12


def test_key_rotation_and_revocation(world):
    """Key A rotates to key B through a key list signed by A; afterwards releases signed by A are
    refused; an older or forged key list changes nothing."""
    a, b = world["key"], keys.generate(str(world["tmp"] / "b.pem"))
    evil = keys.generate(str(world["tmp"] / "evil.pem"))
    dev = new_board(world)
    keys_path = world["tmp"] / "repo" / "keys.json"

    def write_list(version, signers, trusted, revoked=()):
        keys_path.write_bytes(keys.key_list([(n, keys.public_bytes(k)) for n, k in trusted], version, signers,
                                            revoked=[keys.key_id(k) for k in revoked]))

    # a forged list (signed by a key the device does not trust) is ignored
    write_list(2, [evil], [("evil", evil)])
    publish(world, V2, "2.0.0")
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "installed"
    assert list(json.loads(devfs.get(dev.path, "ota.json"))["keys"]) == ["release"]
    assert any("key list" in (r.get("message") or "") for r in dev.run(lambda: audit.read("ota.log")).value)
    dev.run(main_py(check=False))  # boot 2.0.0 and confirm it

    # the real rotation: A signs a list that trusts B and revokes A
    write_list(2, [a], [("b", b)], revoked=[a])
    release.build(images.app_image("2.1.0", size=SMALL, seed=6), "2.1.0", [b], world["repo"])
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "installed"
    cfg = json.loads(devfs.get(dev.path, "ota.json"))
    assert list(cfg["keys"]) == ["b"] and cfg["keys_version"] == 2 and cfg["revoked"] == [keys.key_id(a)]
    dev.run(main_py(check=False))

    # A is gone: a release it signs is refused; replaying the older list changes nothing
    release.build(images.app_image("2.2.0", size=SMALL, seed=7), "2.2.0", [a], world["repo"])
    write_list(1, [a], [("release", a)])
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "refused"
    assert versions_reported(world, "dev")[-1][2] in ("revoked_key", "unknown_key")
    assert list(json.loads(devfs.get(dev.path, "ota.json"))["keys"]) == ["b"]


AGENT_HEAP = "200k"  # the signed HTTPS flow with the library's bytecode in the heap (see README "Heap"; 160k before ota.ledger and ota.clock, 176k before issue 14's review fixes; a margin: the heap a run needs varies by several KiB with its random port, key and paths)

MP_MAIN = """
import ota, simhw
from ota import agent

def wifi():
    import network
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("lab", "secret")
    return w.isconnected()

a = agent.Agent(self_test=simhw.healthy, connect=wifi)
print("boot", a.boot())
e = a.check_now(reboot=False)
print("check", e)
if e == "failed":
    from ota import audit
    print("reason", audit.read(a.cfg["log"], 1))
if e == "installed":
    import machine
    machine.reset()
"""


@pytest.mark.micropython
def test_agent_under_micropython(world):
    dev = new_board(world)
    publish(world, V2, "2.0.0")
    out = dev.run_micropython(MP_MAIN, heap=AGENT_HEAP)
    assert out.kind == sim.RESET and "boot already_valid" in out.stdout and "check installed" in out.stdout, out.stdout + out.stderr
    out = dev.run_micropython(MP_MAIN, heap=AGENT_HEAP)
    assert "boot confirmed" in out.stdout and "check up_to_date" in out.stdout, out.stdout + out.stderr
    publish(world, V3_NOWIFI, "3.0.0")
    assert dev.run_micropython(MP_MAIN, heap=AGENT_HEAP).kind == sim.RESET
    out = dev.run_micropython(MP_MAIN, heap=AGENT_HEAP)  # 3.0.0 cannot bring Wi-Fi up: rolls back
    assert out.kind == sim.RESET and out.booted == "ota_0", out.stdout + out.stderr
    out = dev.run_micropython(MP_MAIN, heap=AGENT_HEAP)
    assert out.booted == "ota_1" and "boot already_valid" in out.stdout, out.stdout + out.stderr
    events = [e for e, _, _ in versions_reported(world, "dev")]
    assert "rolled_back" in events and events.count("confirmed") == 1


def test_canary_failure_rolls_back_everywhere_and_blocks_widening(world):
    """A broken release at a 40 % stage: every canary installs it, fails its self-test, rolls back
    and reports it; `ota-tool rollout` then refuses to widen the stage."""
    from ota_tool import rollout
    from ota_tool.errors import ToolError

    info = publish(world, V3_BAD, "3.0.0", extra={"rollout": {"percent": 40, "salt": "s1"}})
    template = sim.create(str(world["tmp"] / "template.bin"), V1)
    canaries = 0
    for i in range(12):
        name = "node-%02d" % i
        dev = sim.Device(str(world["tmp"] / ("%s.bin" % name)))
        shutil.copyfile(template.path, dev.path)
        devfs.put(dev.path, "ota.json", json.dumps({
            "source": world["url"], "device_id": name, "keys": {"r": keys.public_text(world["key"])},
            "report_url": world["srv"].url + "report"}).encode())
        devfs.put(dev.path, "ota_ca.der", world["srv"].ca_der)
        if dev.run(main_py()).kind != sim.RESET:
            continue  # not in this stage
        canaries += 1
        assert dev.run(main_py(check=False)).kind == sim.RESET  # 3.0.0 fails its self-test: back
        out = dev.run(main_py(check=False))  # 1.0.0 again; it reports the rollback
        assert out.booted == "ota_0" and out.value[0] == "already_valid"
    assert canaries >= 2
    summary = reports.summary_from_path(world["reports"])
    rel = next(r for r in summary["releases"] if r["version"] == "3.0.0")
    assert rel["rolled_back"] == canaries and rel["confirmed"] == 0
    with pytest.raises(ToolError, match="above"):
        rollout.change(info["manifest"], [world["key"]], percent=100, reports_path=world["reports"])
    rollout.change(info["manifest"], [world["key"]], halt=True, reports_path=world["reports"])
    # a halted release is never started
    dev = sim.Device(str(world["tmp"] / "node-00.bin"))
    assert dev.run(lambda: ota_agent.Agent().check_now(reboot=False)).value == "refused"

"""Slow retrieval by an on-path attacker, and what it does to an image on probation."""
import json
from urllib.parse import urlparse


from ota_tool import sim

from .lab import Lab, agent, fresh
from .rt import DripProxy


# (The review's MicroPython handshake drip is tests/ota/test_http.py's tls_handshake_drip case.)


def test_watchdog_reset_in_the_server_check_is_not_the_release_s_failure(tmp_path):
    """Promise (SECURITY.md 'Denial of service by a broken release': 'A rollback because the new
    image could not reach the network or the server does not count: otherwise a network attacker
    could make a device refuse a security fix for good'; README: probation_watchdog is 'longer
    than the self-test with its server-check retries'). The first-boot server check is not bounded
    by the probation watchdog (the drip above; or simply its own timeouts: 3 tries x (connect 15 s
    x up to 4 addresses + handshake + head 30 s + body 30 s) > 300 s), so an on-path attacker who
    slows it makes the watchdog reset the board; the bootloader's ABORTED is then counted as the
    release's own failure, and after two such first boots the good release is refused as
    known_bad. (probation_watchdog 4 s here only to keep the run short: the drip outlasts any.)
    Fixed: the first-boot server check is time-boxed to three quarters of the watchdog's period
    (ota.probation.time_left, HttpFetcher.deadline)."""
    lab = Lab(tmp_path)
    proxy = DripProxy(("127.0.0.1", urlparse(lab.srv.url).port), 0.5, hold=3600)
    src = "https://127.0.0.1:%d/stable.json" % proxy.port
    lab.put("ota.json", json.dumps({"source": src, "keys": {"release": lab.pub}, "device_id": "rev-1",
                                    "probation_watchdog": 4}).encode())
    lab.publish("2.0.0", security_version=1)
    events = []

    def check():
        fresh()
        a = agent()
        a.boot()
        return a.check_now(reboot=True)

    def first_boot():  # main.py's order: probation.start() then agent.boot()
        fresh()
        from ota import probation

        probation.start()
        return agent().boot()

    try:
        for _ in range(2):
            proxy.drip = False
            out = lab.run(check)
            events.append(("check", out.kind, out.value))
            assert out.kind == sim.RESET, out  # installed 2.0.0, reset into it
            proxy.drip = True
            out = lab.run(first_boot)
            events.append(("first boot", out.kind, out.cause))
            # the server check gives up before the watchdog fires, and the agent rolls back itself:
            # a network too slow to answer is excused (never known_bad), not a crash of the release
            assert out.kind == sim.RESET and out.cause != sim.BY_WATCHDOG, out
            proxy.close_connections()
        proxy.drip = False
        out = lab.run(check)
        events.append(("check", out.kind, out.value))
        from ota_tool import devfs

        log = devfs.get(lab.dev.path, "ota.log").decode() if hasattr(devfs, "get") else ""
        assert out.kind == sim.RESET, (events, [ln for ln in log.splitlines() if "known_bad" in ln][-1:])
    finally:
        proxy.stop()
        lab.close()

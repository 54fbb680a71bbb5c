"""Issue 14 item 4: every delay a server chooses is clamped by the settings' bounds. Retry-After on
503 and 429, in both forms RFC 9110 allows (delta-seconds, HTTP-date in its three formats), with
absurd values, through the real HTTP client, and the agent's schedule."""
import email.utils
import json
import time

import pytest

from ota import config, schedule
from ota.errors import OTAError
from ota.fetch import fetch_bytes
from ota.http import HttpFetcher
from tests.ota.faulty_server import FaultyServer, response

YEAR = 365 * 86400


def _answer(status, headers):
    def script(conn, req):
        conn.send(response(status, b"", headers))
        conn.close()
    return script


def _http_date(t, form="imf"):
    if form == "imf":
        return email.utils.formatdate(t, usegmt=True)
    tm = time.gmtime(t)
    if form == "rfc850":
        return time.strftime("%A, %d-%b-%y %H:%M:%S GMT", tm)
    return time.strftime("%a %b ", tm) + "%2d" % tm.tm_mday + time.strftime(" %H:%M:%S %Y", tm)  # asctime


def test_retry_after_is_clamped_to_retry_max(capsys):
    server = FaultyServer(plain=True)
    now = int(time.time())
    cases = {  # path: (status, headers, the seconds the server asked for)
        "huge503": (503, ["Retry-After: 999999999"], 999999999),
        "huge429": (429, ["Retry-After: 999999999"], 999999999),
        "endless": (503, ["Retry-After: " + "9" * 40], 10 ** 12),
        "imf": (503, ["Retry-After: " + _http_date(now + YEAR), "Date: " + _http_date(now)], YEAR),
        "rfc850": (429, ["Retry-After: " + _http_date(now + 3 * YEAR, "rfc850"), "Date: " + _http_date(now, "rfc850")],
                   3 * YEAR),
        "asctime": (503, ["Retry-After: " + _http_date(now + 90, "asctime"), "Date: " + _http_date(now, "asctime")], 90),
        "no_date_header": (503, ["Retry-After: " + _http_date(now + 2 * YEAR)], 2 * YEAR),  # against the clock
        "past": (503, ["Retry-After: " + _http_date(now - 60), "Date: " + _http_date(now)], None),
        "negative": (503, ["Retry-After: -5"], None),
        "junk": (429, ["Retry-After: soon"], None),
        "small": (503, ["Retry-After: 30"], 30),
    }
    for path, (status, headers, _) in cases.items():
        server.add("/" + path, _answer(status, headers))
    cfg = dict(config.DEFAULTS, retry=60, retry_max=3600, interval=600)
    try:
        f = HttpFetcher(allow_http=True)
        for path, (status, _, asked) in cases.items():
            with pytest.raises(OTAError) as e:
                fetch_bytes(f, server.url + path, 100)
            assert e.value.reason == "http_%d" % status
            got = e.value.retry_after
            if path == "no_date_header":  # judged against the (host's, trusted) clock
                assert abs(got - asked) <= 5, (path, got)
            else:
                assert got == asked, (path, got)
            for failures in (0, 1, 30):
                d = schedule.next_delay(cfg, failures, got)
                assert 0 < d <= max(cfg["retry_max"], 1.25 * cfg["interval"]) * 1000, (path, failures, d)
            if got and got >= cfg["retry_max"]:
                assert schedule.next_delay(cfg, 1, got) == cfg["retry_max"] * 1000  # the floor, capped
            if path == "small":
                assert schedule.next_delay(cfg, 1, got) >= 30000  # a sane Retry-After is still honoured
    finally:
        server.stop()
    capsys.readouterr()


def test_settings_cannot_make_a_delay_longer_than_max_delay():
    cfg = dict(config.DEFAULTS, interval=10 ** 9, retry=10 ** 9, retry_max=10 ** 9, jitter=0.0)
    for failures, ra in ((0, None), (1, None), (40, 10 ** 12)):
        assert schedule.next_delay(cfg, failures, ra) <= schedule.MAX_DELAY * 1000


def test_http_dates_in_all_three_forms():
    for t in (0, 784111777, 946684799, 951782400, 1709164800, 4102444800 - 1):
        for form in ("imf", "rfc850", "asctime"):
            if form == "rfc850" and not 946684800 - 30 * YEAR < t < 946684800 + 69 * YEAR:
                continue  # a two-digit year is read in 1970..2069
            assert schedule.http_date(_http_date(t, form).encode()) == t, (t, form)
    for bad in (b"", b"Fri, 31 Dec 1999", b"Fri, 32 Dec 1999 23:59:59 GMT", b"Fri, 31 Dez 1999 23:59:59 GMT",
                b"Fri, 31 Dec 1999 24:00:00 GMT", b"Fri, 31 Dec 1999 23:59:59 UTC", b"x" * 100, b"1 2 3 4 5",
                b"Sun Nov  6 08:49 1994", b"Sunday, 06-Nov-1994 08:49:37 GMT"):
        assert schedule.http_date(bad) is None, bad


@pytest.mark.micropython
def test_retry_after_is_clamped_under_micropython(mp):
    out = mp("""
from ota import schedule
cfg = {"retry": 60, "retry_max": 3600, "interval": 600, "jitter": 0.25}
for v, d in ((b"999999999", None), (b"9" * 40, None), (b"Sun, 06 Nov 2094 08:49:37 GMT", b"Sun, 06 Nov 1994 08:49:37 GMT"),
             (b"Sunday, 06-Nov-94 08:49:37 GMT", b"Sunday, 06-Nov-94 08:48:37 GMT"),
             (b"Sun Nov  6 08:49:37 1994", b"Sun Nov  6 08:49:07 1994"), (b"-1", None), (b"soon", None)):
    ra = schedule.retry_after(v, d, None)
    print(ra, schedule.next_delay(cfg, 1, ra) <= 3600000)
""")
    assert out.split("\n")[:7] == ["999999999 True", "1000000000000 True", "3155760000 True", "60 True",
                                   "30 True", "None True", "None True"]


def test_agent_run_never_sleeps_longer_than_retry_max(tmp_path, capsys):
    """The agent's loop with a server that answers 503 Retry-After: 999999999 (31 years): it checks
    again after retry_max, not in 2057."""
    from ota_tool import devfs, sim

    server = FaultyServer(plain=True)
    server.add("/stable.json", _answer(503, ["Retry-After: 999999999"]))
    try:
        dev = sim.create(str(tmp_path / "d.bin"), __import__("tests.campaign.world", fromlist=["V1"]).V1)
        devfs.put(dev.path, "ota.json", json.dumps({
            "source": server.url + "stable.json", "secure": False, "ca": None, "retry": 1, "retry_max": 1,
            "keys": {"release": "QOCDxVcDpRywTLp7eXXaquh8btzDuvB7ONPdHsHF3BU="}}).encode())

        def app():
            from ota import agent
            from ota.compat import ticks_diff, ticks_ms

            a = agent.Agent()
            t0 = ticks_ms()
            event = a.run(max_checks=2)
            return event, a.retry_after, a.failures, ticks_diff(ticks_ms(), t0)

        event, retry_after, failures, ms = dev.run(app).value
        assert (event, retry_after, failures) == ("failed", 999999999, 2)
        assert ms < 10000  # one retry_max (1 s) between the two checks
    finally:
        server.stop()
    capsys.readouterr()

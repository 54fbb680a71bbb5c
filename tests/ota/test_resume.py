"""Resumable downloads: over HTTPS from ota-tool serve into the simulated device, broken by
network faults and by power cuts mid-download; what is re-downloaded is measured."""
import shutil

import pytest

import ota
from ota import http, ledger, trust, update
from ota_tool import images, keys, release, server, sim
from tests.simhelpers import new_device

BLOCK = 4096


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("repo")
    key = keys.generate(str(d / "k.pem"))
    v1 = images.app_image("1.0.0", size=96 * 1024, seed=1)
    v2 = images.app_image("2.0.0", size=400 * 1024, seed=2)
    release.build(v2, "2.0.0", [key], str(d / "repo"))  # raw only: the resumable kind
    srv = server.start_server(str(d / "repo"), tls_dir=str(d / "tls"))
    yield {"v1": v1, "v2": v2, "pub": keys.public_text(key), "srv": srv, "url": srv.url + "stable.json"}
    srv.stop()


class Counting:
    """A fetcher that counts the body bytes it hands out and can break after a budget."""

    def __init__(self, inner, break_after=None):
        self.inner = inner
        self.served = 0
        self.break_after = break_after
        self.opens = []

    def open(self, url, offset=0, max_length=None, etag=None):
        body = self.inner.open(url, offset, max_length, etag)
        self.opens.append((url.rsplit("/", 1)[-1], offset, body.offset))
        outer = self

        class Body:
            def __init__(self):
                self.offset, self.total, self.etag = body.offset, body.total, body.etag

            def readinto(self, buf):
                if outer.break_after is not None and outer.served >= outer.break_after:
                    outer.break_after = None  # the network comes back after one failure
                    raise ota.OTAError("source_error", "connection reset (test)")
                n = body.readinto(buf)
                outer.served += n
                return n

            def close(self):
                body.close()

        return Body()


def run_update(r, fetcher):
    from ota import clock

    clock.ensure(["pool.ntp.org"])  # as the agent does: the board's RTC reads 2000 after power-on
    t = trust.Trust.from_list([r["pub"]])
    return update.update(fetcher, r["url"], t, facts={"channel": "stable"}, reboot=False)


def test_network_break_resumes_with_range(tmp_path, repo):
    dev = new_device(tmp_path, repo["v1"])
    f = Counting(http.HttpFetcher(ca=repo["srv"].ca_der), break_after=100 * 1024)
    out = dev.run(lambda: run_update(repo, f))
    assert out.kind == sim.RETURNED and out.value["version"] == "2.0.0", out
    art = [o for o in f.opens if o[0].endswith(".bin")]
    assert len(art) == 2 and art[1][1] > 0 and art[1][2] == art[1][1]  # second request: a Range, honoured
    wasted = f.served - len(repo["v2"]) - 0
    assert wasted < 2 * BLOCK + 1, wasted  # manifest bytes are counted apart below
    assert dev.boot_only()[0] == "ota_1"


@pytest.mark.parametrize("fraction", [0.2, 0.55, 0.9])
def test_power_cut_mid_download_resumes_after_reboot(tmp_path, repo, fraction):
    base = new_device(tmp_path, repo["v1"], name="base.bin")
    base.run(lambda: None)
    # find the flash operation index at `fraction` of the image's writes
    probe = sim.Device(str(tmp_path / "probe.bin"))
    shutil.copyfile(base.path, probe.path)
    probe.oplog = []
    probe.run(lambda: run_update(repo, http.HttpFetcher(ca=repo["srv"].ca_der)))
    slot_writes = [i for i, op in enumerate(probe.oplog) if op[0] == "write" and op[1] >= 0x190000]
    cut = slot_writes[int(len(slot_writes) * fraction)]
    dev = sim.Device(str(tmp_path / "dev.bin"))
    shutil.copyfile(base.path, dev.path)
    dev.arm_power_cut(cut, "torn")
    f1 = Counting(http.HttpFetcher(ca=repo["srv"].ca_der))
    assert dev.run(lambda: run_update(repo, f1)).kind == sim.POWER_CUT
    lost = f1.served  # includes the manifest (about 1 KB)
    f2 = Counting(http.HttpFetcher(ca=repo["srv"].ca_der))
    out = dev.run(lambda: run_update(repo, f2))
    assert out.kind == sim.RETURNED and out.value["version"] == "2.0.0", out
    resumed_at = [o for o in f2.opens if o[0].endswith(".bin")][0][1]
    every = ledger.journal_every(len(repo["v2"]))  # the journal is not written every block: NVS wear
    assert resumed_at % every == 0 and resumed_at < lost, (lost, resumed_at)
    manifest_bytes = 2 * 2048  # both checks fetch the manifest (under 2 KiB here)
    redownloaded = lost + f2.served - len(repo["v2"]) - manifest_bytes
    # bytes fetched twice: what came after the last journal entry, at most `every` + a block
    assert redownloaded < 2 * BLOCK + (lost - resumed_at), (redownloaded, lost, resumed_at)
    assert lost - resumed_at < every + 2 * BLOCK + 2048
    assert dev.boot_only()[0] == "ota_1"


def test_server_ignoring_range_restarts_from_zero(tmp_path, repo):
    dev = new_device(tmp_path, repo["v1"])

    f = Counting(http.HttpFetcher(ca=repo["srv"].ca_der), break_after=60 * 1024)
    orig = f.inner.open

    def open_ignoring_range(url, offset=0, max_length=None, etag=None):
        return orig(url, 0, max_length, None)  # as a server without Range support answers: 200

    f.inner.open = open_ignoring_range
    out = dev.run(lambda: run_update(repo, f))
    assert out.kind == sim.RETURNED and out.value["version"] == "2.0.0"
    art = [o for o in f.opens if o[0].endswith(".bin")]
    assert art[1][1] > 0 and art[1][2] == 0  # asked to resume, got the whole artifact: started over

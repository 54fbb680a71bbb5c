"""Hostile input, quick mode: every fuzzer with 150 examples (fixed seed), a sample of 20 re-run
under MicroPython in a device-sized heap, and the catalogues of earlier issues. The campaign mode
(10,000 examples each) is `python bench/campaign.py --only hostile`. See tests/campaign/hostile.py."""
import pytest

from tests.campaign import hostile

EXAMPLES = 150
SAMPLES = 20
_done = {}


def fuzzed(fz):
    if fz.name not in _done:
        _done[fz.name] = hostile.fuzz(fz, EXAMPLES, SAMPLES)
    return _done[fz.name]


@pytest.mark.parametrize("fz", hostile.FUZZERS, ids=[f.name for f in hostile.FUZZERS])
def test_fuzz(fz):
    res = fuzzed(fz)
    assert res.examples >= EXAMPLES * 0.9
    assert not res.crashes, ["%s x%d: %r" % (k, n, a) for k, (n, a) in res.crashes.items()][:3]
    assert not res.wrong, ["%s x%d: %r" % (k, n, a) for k, (n, a) in res.wrong.items()][:3]
    if fz.target != "otadata":  # (any 64 bytes are some otadata state: nothing is refused there)
        assert len(res.outcomes) >= 2  # the examples reach more than one outcome
    assert res.cpython_peak < 64 * 1024


@pytest.mark.micropython
@pytest.mark.parametrize("fz", [f for f in hostile.FUZZERS if f.device], ids=[f.name for f in hostile.FUZZERS if f.device])
def test_fuzz_sample_under_micropython(fz, tmp_path):
    res = fuzzed(fz)
    mp = hostile.micropython_sample(res, str(tmp_path))
    assert mp["mp_samples"] == len(res.samples) > 0
    assert mp["mp_crashes"] == 0 and mp["mp_oom"] == 0, mp
    assert mp["mp_disagree"] == 0, mp["mp_first_disagreement"]


@pytest.mark.parametrize("name", [n for n in hostile.CATALOGUES if "HTTP" not in n])
def test_catalogue(name, tmp_path):
    # (the HTTP catalogue needs its scripted server: tests/ota/test_http.py runs it)
    fn = hostile.CATALOGUES[name]
    n, wrong = fn(str(tmp_path)) if fn is hostile.catalogue_images else fn()
    assert n >= 10 and not wrong, wrong

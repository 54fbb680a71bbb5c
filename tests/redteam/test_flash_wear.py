"""Flash wear through the update path. SECURITY.md: "the update path cannot be turned into a way to
exhaust its memory or wear its flash"; "Denial of service by a broken release (install, fail, roll
back, repeat)" is closed by `known_bad`. These cases repeat a failure that is decided only after
the whole slot was erased and written, and count the slot's sector erases per check."""
import os

import pytest

from ota_tool import devfs, sim

from . import rt


@pytest.fixture
def world(tmp_path):
    w = rt.World(tmp_path)
    yield w
    w.close()


def _slot_erases(world):
    world.dev.oplog = []
    r = world.check()
    erases = sum(1 for kind, _, _ in world.dev.oplog if kind.startswith("erase"))
    world.dev.oplog = None
    return r, erases


def test_mirror_swapping_the_artifact_rewrites_the_slot_at_every_check(world):
    """A malicious mirror serves, under the signed raw artifact's name, other bytes of the same
    length. Each check downloads them, erases and writes the whole slot, then refuses
    (artifact_hash_mismatch) and waits only the normal interval (no backoff for a refusal).
    Property: the same swapped artifact does not cost a full slot rewrite at every check."""
    info = world.publish("2.0.0")
    art = info["artifacts"][0]
    path = os.path.join(world.repo, art["url"])
    other = world.image("9.9.9", seed=77)[:art["size"]]
    other += b"\x00" * (art["size"] - len(other))
    with open(path, "wb") as f:
        f.write(other)
    sectors = -(-art["size"] // 4096)
    per_check = []
    for i in range(3):
        r, erases = _slot_erases(world)
        # the first check meets it; the next ones leave the artifact aside (ledger.hold)
        expected = ("refused", "artifact_hash_mismatch") if i == 0 else ("failed", "artifact_held")
        assert (r["event"], rt.reason(r)) == expected, r["last"]
        per_check.append(erases)
    assert max(per_check[1:]) < sectors // 2, (
        "every check erased ~the whole slot again (%s erases per check, slot image %d sectors); at the default "
        "interval that is 8,760 erase cycles per sector per year" % (per_check, sectors))


def test_image_set_boot_refuses_is_not_reflashed_at_every_check(tmp_path):
    """A release whose image needs a newer chip revision (header min_rev_full v3.0 on a v1.0 chip):
    nothing before set_boot looks at the revision, ESP-IDF refuses it there (set_boot_failed), and
    the next check downloads and writes it again. Property: the second check does not rewrite the
    slot for the same refused image."""
    w = rt.World(tmp_path)
    try:
        w.dev = sim.create(os.path.join(w.tmp, "rev1.bin"), w.v1, chip_rev=100)
        w.put_settings(w.cfg)
        devfs.put(w.dev.path, "ota_ca.der", w.srv.ca_der)
        w.publish("2.0.0", image=w.image("2.0.0", min_rev_full=300))
        r, first = _slot_erases(w)
        assert (r["event"], rt.reason(r)) == ("refused", "set_boot_failed"), r["last"]
        r, second = _slot_erases(w)
        assert second < first // 2, "the refused image was downloaded and flashed again: %d then %d erases" % (
            first, second)
    finally:
        w.close()

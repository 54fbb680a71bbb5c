"""Wrong software (SECURITY.md): "`requires.idf` against the running image's descriptor `idf_ver`"
is enforced, and the board check "fails closed" (Issue 14 class 9). ESP-IDF writes
"HEAD-HASH-NOTFOUND" as idf_ver when it is built from a tree that is not a git checkout (a
release tarball, a CI cache); a build of a tag writes "v5.2.2". Property: a release that needs a
newer ESP-IDF than the device can be shown to have is refused (fail closed, as for the board)."""
import os

import pytest

from ota_tool import devfs, images, sim

from . import rt


@pytest.mark.parametrize("idf_ver", ["HEAD-HASH-NOTFOUND", "5.0.1", "v5.0"])
def test_requires_idf_fails_closed(tmp_path, idf_ver):
    w = rt.World(tmp_path)
    try:
        v1 = images.app_image("1.0.0", size=w.size, seed=1, idf_ver=idf_ver)
        w.dev = sim.create(os.path.join(w.tmp, "idf.bin"), v1)
        w.put_settings(w.cfg)
        devfs.put(w.dev.path, "ota_ca.der", w.srv.ca_der)
        w.publish("2.0.0", image=w.image("2.0.0", idf_ver="v5.3.1"), requires={"idf": "5.3.0"})
        r = w.check()
        assert (r["event"], rt.reason(r)) == ("refused", "requires_idf"), (idf_ver, r["event"], rt.reason(r))
    finally:
        w.close()

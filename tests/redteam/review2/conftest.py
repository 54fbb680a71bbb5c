# Shared helpers of the second review's cases (a red team on the fixed main; issues 14-16). No tests here.
import json

import pytest


@pytest.fixture
def board(tmp_path):
    """A simulated board running 1.0.0 (CPython, in process), an HTTPS update server on tmp_path/repo,
    and publish(version, image, **kw). Yields a namespace."""
    from ota_tool import devfs, images, keys, release, server, sim

    repo = tmp_path / "repo"
    repo.mkdir()
    key = keys.generate(str(tmp_path / "k.pem"))
    srv = server.start_server(str(repo), tls_dir=str(tmp_path / "tls"), reports=False)
    url = srv.url.rstrip("/") + "/stable.json"
    v1 = images.app_image("1.0.0", size=96 * 1024, seed=1)
    dev = sim.create(str(tmp_path / "dev.bin"), v1)
    settings = {"source": url, "keys": {"release": keys.public_text(key)}, "device_id": "review-1"}
    devfs.put(dev.path, "ota.json", json.dumps(settings).encode())
    devfs.put(dev.path, "ota_ca.der", srv.ca_der)

    class NS:
        pass

    ns = NS()
    ns.dev, ns.repo, ns.key, ns.url, ns.v1 = dev, str(repo), key, url, v1

    def publish(version, seed, security_version=0, **flags):
        img = images.app_image(version, size=96 * 1024, seed=seed, flags=flags or None)
        release.build(img, version, [key], str(repo), security_version=security_version)
        return img

    ns.publish = publish
    try:
        yield ns
    finally:
        srv.stop()


def wifi():
    import network

    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("demo", "secret")
    return w.isconnected()

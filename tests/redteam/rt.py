"""Red-team harness: a simulated board, a signing key, an HTTPS release server and helpers to
drive the device through the public API (ota.agent.Agent), power cuts included.

Written from the public documentation and modules only (README, docs/, lib/ota, tools/)."""
import json
import os
import shutil
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ota_tool import devfs, images, keys, release, server, sim

NVS = (0x9000, 0xD000)  # partitions.csv: nvs at 0x9000, 16 KiB
NOW = int(time.time())


def check_app(reboot=False, boot=True, **overrides):
    """Device firmware for one power cycle: agent.boot() then one update check."""
    def app():
        import simhw
        from ota import agent, audit

        a = agent.Agent(self_test=simhw.healthy)
        b = a.boot() if boot else None
        ev = a.check_now(reboot=reboot, **overrides)
        log = audit.read("ota.log", 4)
        return {"boot": b, "event": ev, "log": log, "last": log[-1] if log else None}
    return app


def status_app(boot=True):
    def app():
        import ota
        if boot:  # a power cycle without the agent would let the bootloader roll a new image back
            import simhw
            from ota import agent
            agent.Agent(self_test=simhw.healthy).boot()
        from ota import ledger, state
        st = ota.status()
        st["s0"] = state.get_json("s0")
        st["s1"] = state.get_json("s1")
        st["seen"] = ledger.seen("stable")
        st["counter"] = ledger.security_counter()
        return st
    return app


class World:
    def __init__(self, tmp, version="1.0.0", size=64 * 1024, settings=None, rollback=True, seed=1,
                 project="micropython", secure_version=0, nkeys=1):
        self.tmp = str(tmp)
        self.keys = [Ed25519PrivateKey.generate() for _ in range(nkeys)]
        self.key = self.keys[0]
        self.repo = os.path.join(self.tmp, "repo")
        os.makedirs(self.repo, exist_ok=True)
        self.srv = server.start_server(self.repo, tls_dir=os.path.join(self.tmp, "tls"), reports=False)
        self.url = self.srv.url + "stable.json"
        self.size = size
        self.v1 = images.app_image(version, size=size, seed=seed, project=project, secure_version=secure_version)
        self.dev = sim.create(os.path.join(self.tmp, "dev.bin"), self.v1, rollback=rollback)
        cfg = {"source": self.url, "keys": {"k%d" % i: keys.public_text(k) for i, k in enumerate(self.keys)},
               "device_id": "rt-1"}
        cfg.update(settings or {})
        self.put_settings(cfg)
        devfs.put(self.dev.path, "ota_ca.der", self.srv.ca_der)

    def put_settings(self, cfg):
        self.cfg = cfg
        devfs.put(self.dev.path, "ota.json", json.dumps(cfg).encode())

    def close(self):
        self.srv.stop()

    # --- releases
    def image(self, version, seed=None, **kw):
        flags = kw.pop("flags", None)
        return images.app_image(version, size=self.size, seed=seed if seed is not None else hash(version) % 1000,
                                flags=flags, **kw)

    def publish(self, version, image=None, created=None, signers=None, **kw):
        img = image if image is not None else self.image(version)
        info = release.build(img, version, signers or [self.key], self.repo,
                             created=created if created is not None else NOW, **kw)
        with open(info["manifest"], "rb") as f:
            info["blob"] = f.read()
        info["image"] = img
        return info

    def serve_manifest(self, blob, name="stable.json"):
        """What a mirror serves as the channel manifest (e.g. a replay of an older signed one)."""
        with open(os.path.join(self.repo, name), "wb") as f:
            f.write(blob)

    def hide_artifacts(self, info):
        """The artifacts of a release are not reachable (not uploaded yet, or withheld)."""
        hidden = os.path.join(self.tmp, "hidden")
        os.makedirs(hidden, exist_ok=True)
        for a in info["artifacts"]:
            p = os.path.join(self.repo, a["url"])
            if os.path.exists(p):
                shutil.move(p, os.path.join(hidden, a["url"]))

    def restore_artifacts(self):
        hidden = os.path.join(self.tmp, "hidden")
        if os.path.isdir(hidden):
            for n in os.listdir(hidden):
                shutil.move(os.path.join(hidden, n), os.path.join(self.repo, n))

    # --- the device
    def run(self, fn, *args):
        return self.dev.run(fn, *args)

    def check(self, **kw):
        out = self.dev.run(check_app(**kw))
        assert out.kind == sim.RETURNED, (out, out.value)
        return out.value

    def status(self):
        out = self.dev.run(status_app())
        assert out.kind == sim.RETURNED, out
        return out.value

    def snapshot(self, name):
        p = os.path.join(self.tmp, name)
        shutil.copy(self.dev.path, p)
        return p

    def restore(self, snap):
        shutil.copy(snap, self.dev.path)
        self.dev = sim.Device(self.dev.path)

    def nvs_ops(self, fn):
        """The flash operations `fn` (one power cycle) makes, and which of them hit NVS."""
        snap = self.snapshot("nvs-ops.bin")
        self.dev.oplog = []
        out = self.dev.run(fn)
        log = self.dev.oplog
        self.dev.oplog = None
        self.restore(snap)
        return out, [i for i, (_, addr, _) in enumerate(log) if NVS[0] <= addr < NVS[1]], len(log)


def reason(result):
    last = result.get("last") or {}
    return last.get("reason")


class HostileServer:
    """An HTTPS server (the World's CA) whose answers are scripted per path: handler(sock, path,
    headers) writes whatever it likes. What a malicious mirror or CDN can do."""

    def __init__(self, world, routes):
        import socket
        import ssl
        import threading

        files = server.ensure_tls(os.path.join(world.tmp, "tls"))
        self.ctx = server.server_context(files)
        self.routes = routes
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.url = "https://127.0.0.1:%d/" % self.sock.getsockname()[1]
        self.stopped = False
        self.requests = []
        self.ssl = ssl
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        import threading

        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn):
        try:
            conn.settimeout(30)
            s = self.ctx.wrap_socket(conn, server_side=True)
            head = b""
            while b"\r\n\r\n" not in head:
                d = s.recv(4096)
                if not d:
                    return
                head += d
            line = head.split(b"\r\n")[0].decode()
            method, path = line.split(" ")[:2]
            hdrs = {}
            for ln in head.split(b"\r\n")[1:]:
                if b":" in ln:
                    k, v = ln.split(b":", 1)
                    hdrs[k.strip().lower().decode()] = v.strip().decode()
            self.requests.append((method, path, hdrs))
            h = self.routes.get(path) or self.routes.get("*")
            if h is None:
                s.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            else:
                h(s, path, hdrs)
            try:
                s.close()
            except OSError:
                pass
        except (OSError, self.ssl.SSLError, ValueError):
            pass

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(2)


def drip(body, every, hold, status=b"200 OK", extra=b""):
    """A handler: a correct head, then the body one byte every `every` seconds, for `hold`
    seconds at most (then the connection closes). Each byte goes out in its own TLS record."""
    def handler(s, path, hdrs):
        s.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n" % len(body)
                  + extra + b"\r\n")
        t0 = time.time()
        for i in range(len(body)):
            if time.time() - t0 > hold:
                return
            s.sendall(body[i:i + 1])
            time.sleep(every)
    return handler


def static(body, status=b"200 OK"):
    def handler(s, path, hdrs):
        s.sendall(b"HTTP/1.1 " + status + b"\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    return handler


def short_timeouts(monkeypatch, read_ms=300, stall_ms=1000):
    """Scale the device's HTTP timeouts down (ota.http.HttpFetcher's defaults: read 10 s, stall
    30 s) so that a test about them runs in seconds. Everything else is the library's code."""
    from ota import http

    d = list(http.HttpFetcher.__init__.__defaults__)
    # (ca, cert, key, allow_http, connect_timeout, read_timeout, stall_timeout, ...)
    assert d[5] == 10000 and d[6] == 30000, d
    d[5], d[6] = read_ms, stall_ms
    monkeypatch.setattr(http.HttpFetcher.__init__, "__defaults__", tuple(d))


def boot_app():
    """Device firmware for one power cycle: agent.boot() only (main.py's first step)."""
    def app():
        import simhw
        from ota import agent

        return agent.Agent(self_test=simhw.healthy).boot()
    return app


def settle(dev, runs=6):
    """Power-cycle `dev` running agent.boot() until a run returns (no reset). Returns the outcomes."""
    outs = []
    for _ in range(runs):
        out = dev.run(boot_app())
        outs.append(out)
        if out.kind == sim.RETURNED:
            return outs
    raise AssertionError("the board never settled: %s" % outs)


def ledger_app():
    def app():
        from ota import ledger, slot
        run = slot.running()
        recs = {}
        for p in slot.ota_slots():
            recs[slot.label(p)] = ledger.raw(p)
        desc = slot.descriptor(run, bytearray(slot.DESCRIPTOR_END))
        return {"running": slot.label(run), "desc_version": desc and desc["version"], "records": recs,
                "counter": ledger.security_counter(), "version": ledger.running_version(run, desc),
                "known_bad": ledger.known_bad(), "probe": ledger.probe(run)}
    return app


def ledger_state(dev):
    out = dev.run(ledger_app())
    assert out.kind == sim.RETURNED, out
    return out.value


class DripProxy:
    """A TCP relay in front of `upstream` (host, port): what the client sends goes through at once,
    what the server sends comes back one byte every `every` seconds, for `hold` seconds at most
    (`drip` False: at once). An on-path attacker or a slow-loris mirror; it needs no certificate
    (it relays the real TLS). close_connections() hangs up on the client and the server."""

    def __init__(self, upstream, every, hold):
        import socket
        import threading

        self.upstream, self.every, self.hold = upstream, every, hold
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stopped = False
        self.drip = True
        self.conns = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import socket
        import threading

        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            self.conns += [c, u]
            threading.Thread(target=self._up, args=(c, u), daemon=True).start()
            threading.Thread(target=self._down, args=(u, c), daemon=True).start()

    def _up(self, c, u):
        try:
            while True:
                d = c.recv(4096)
                if not d:
                    break
                u.sendall(d)
        except OSError:
            pass

    def _down(self, u, c):
        t0 = time.time()
        try:
            while time.time() - t0 < self.hold:
                d = u.recv(4096)
                if not d:
                    break
                if not self.drip:
                    c.sendall(d)
                    continue
                for i in range(len(d)):
                    if time.time() - t0 >= self.hold:
                        break
                    c.sendall(d[i:i + 1])
                    time.sleep(self.every)
        except OSError:
            pass
        for s in (c, u):
            try:
                s.close()
            except OSError:
                pass

    def close_connections(self):
        for s in self.conns:
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopped = True
        self.sock.close()
        self.thread.join(2)
        self.close_connections()

# Device-side fuzz targets of the hostile-input campaign (tests/campaign/hostile.py). Each target
# takes one example's arguments (bytes and small ints), runs the device library's parser on it the
# way the update flow does, and returns a short outcome string; the library's own error becomes
# "E:<reason>". Any other exception escapes: that is a crash. This file runs unchanged under CPython
# (in the hypothesis campaign) and MicroPython (a sample of the examples, heap-limited), and both
# must give the same outcome for the same example.
import binascii
import hashlib

from ota.errors import OTAError

_key = None
_trusts = []
FACTS = {"chip": "esp32", "board": "GENERIC", "slot_size": 0x180000, "running_version": "1.0.0",
         "security_counter": 3, "channel": "stable", "now": None, "micropython": "1.24.0", "device_id": "dev-1"}


def setup(public_key_b64):
    """The one trusted release key of the signed-document targets."""
    global _key
    _key = public_key_b64


def _trust():
    # Made when a signed-document target first runs: the other targets (HTTP, images...) run on a
    # device without the signature code in the heap (the agent drops it before downloads).
    if not _trusts:
        from ota.trust import Trust

        _trusts.append(Trust.from_list([_key]))
    return _trusts[0]


def _h(data):
    return binascii.hexlify(hashlib.sha256(data).digest()[:6]).decode()


def judge(name, args):
    """Outcome of target `name` on `args`: its result, or "E:<reason>" for an OTAError."""
    try:
        return TARGETS[name](*args)
    except OTAError as e:
        if not e.reason or not isinstance(e.reason, str):
            raise ValueError("OTAError without a reason")
        return "E:" + e.reason


# --- signed documents: the whole path a downloaded manifest or key list takes


def manifest(blob):
    from ota import manifest as mf
    from ota import policy

    m = mf.load(blob, _trust())
    policy.check(m, FACTS)
    return "A %s %d" % (m.version, len(m.artifacts))


def keys(blob):
    from ota import manifest as mf

    doc = mf.load_keys(blob, _trust())
    names = [k["name"] for k in doc["keys"]]
    if len(set(names)) != len(names) or not all(isinstance(n, str) for n in names):
        raise ValueError("key names are not unique strings: the device would lose a key")  # (see Agent._rotate_keys)
    t = _trust().updated(doc)
    return "A %d %d %d" % (doc["version"], len(t.keys), t.threshold)


# --- HTTP: one response (status line, headers, body or chunks), as HttpFetcher.open reads it


class _Conn:
    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step


_wire = None


def _net_open(host, port, timeout_ms):
    return _Conn(_wire[0], _wire[1])  # every connection (a redirect too) gets the same response


def _net_readinto(conn, buf, nbytes, timeout_ms):
    n = min(nbytes, conn.step, len(conn.data) - conn.pos)
    buf[0:n] = conn.data[conn.pos:conn.pos + n]
    conn.pos += n
    return n


def _nothing(*args):
    return None


_NET = ("net_open", "net_readinto", "net_write", "net_close", "tls_start", "tls_context")


def _context(*args):
    return object()


def _swap_network(fake):
    # Give ota.http a scripted network (fake=True), or its own back: a module's globals are
    # writable on both interpreters. Returns what was there.
    from ota import http as H

    old = [getattr(H, n) for n in _NET]
    new = fake if fake is not True else (_net_open, _net_readinto, _nothing, _nothing, _nothing, _context)
    for n, f in zip(_NET, new):
        setattr(H, n, f)
    return old


def http(response, step, bufsize, offset, max_length, etag):
    """response: the bytes the server sends; step: bytes per network read; offset/etag: a resume;
    max_length: 0 for none."""
    global _wire
    from ota.http import HttpFetcher

    real = _swap_network(True)
    _wire = (response, step)
    try:
        f = HttpFetcher(ca=b"-", max_redirects=2)
        body = f.open("https://h.example:8443/repo/stable.json", offset, max_length or None,
                      '"%s"' % etag if etag else None)
        return _read_body(body, bufsize)
    except OTAError as e:
        if e.reason == "network":  # the scripted network raises nothing: this hides a parser bug
            raise ValueError("OTAError network without a network error: %s" % e.message)
        raise
    finally:
        _swap_network(real)


def _read_body(body, bufsize):
    try:
        h = hashlib.sha256()
        buf = bytearray(bufsize)
        got = 0
        while True:
            n = body.readinto(buf)
            if not n:
                break
            if n < 0 or n > bufsize:
                raise ValueError("readinto returned %d" % n)
            h.update(buf if n == bufsize else memoryview(buf)[:n])
            got += n
    finally:
        body.close()
    return "A %d %d %s %d %s" % (body.status, body.offset, body.total, got, binascii.hexlify(h.digest()[:6]).decode())


# --- the ESP32 app image walk (install, slot checks)


def image(data, mode, step, chip):
    """mode 0: the declared length is len(data); 1: no length (a slot read in place); 2: one byte
    more declared than given. chip: the device's chip id, or -1 for none."""
    from ota.appimage import ImageCheck

    length = len(data) if mode == 0 else None if mode == 1 else len(data) + 1
    chk = ImageCheck(length, None if chip < 0 else chip)
    mv = memoryview(data)
    i = 0
    while i < len(data) and not (length is None and chk.done):
        n = min(step, len(data) - i)
        chk.feed(mv[i:i + n], n)
        i += n
    chk.finish()
    return "A %d %d" % (chk.length, len(chk.segments))


# --- otadata (two esp_ota_select_entry_t copies) as ota.otadata reads them


class _Part:
    def __init__(self, data):
        self.data = data

    def readblocks(self, block, buf, offset=0):
        a = block * 32 + offset
        buf[0:len(buf)] = self.data[a:a + len(buf)]


def otadata(data):
    from ota import otadata as od

    ents = od.entries(_Part(data))
    out = ["A", str(od.active(ents))]
    for n in (1, 2, 3, 16):
        for i in range(min(n, 3)):
            st = od.slot_state(ents, i, n)
            out.append("-" if st is None else str(st))
    return " ".join(out)


# --- delta and compressed artifacts: the decoder stages of the update pipeline


class _Src:
    def __init__(self, data, step):
        self.data = data
        self.pos = 0
        self.step = step

    def readinto(self, buf):
        n = min(len(buf), self.step, len(self.data) - self.pos)
        buf[0:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


class _Base:
    def __init__(self, data):
        self.data = data
        self.size = len(data)

    def read_at(self, offset, buf):
        if offset < 0 or offset + len(buf) > self.size:
            raise ValueError("base read outside the base")  # Patch must never ask for this
        buf[0:len(buf)] = self.data[offset:offset + len(buf)]


_LIMIT = 1 << 20


def _drain(stage, bufsize):
    h = hashlib.sha256()
    buf = bytearray(bufsize)
    got = 0
    while True:
        n = stage.readinto(buf)
        if not n:
            return "A %d %s" % (got, binascii.hexlify(h.digest()[:6]).decode())
        if n < 0 or n > bufsize:
            raise ValueError("readinto returned %d" % n)
        got += n
        if got > _LIMIT:
            raise ValueError("a stage produced more than %d bytes" % _LIMIT)
        h.update(buf if n == bufsize else memoryview(buf)[:n])


def patch(raw, old, step, bufsize):
    from ota.delta import Patch

    return _drain(Patch(_Src(raw, step), _Base(old)), bufsize)


def delta(stream, old, to_size, wbits, step):
    """A delta artifact as update._pipeline decodes it: zlib, then the patch, to a known size."""
    from ota.delta import Patch, max_raw_patch_len
    from ota.inflate import Inflate

    return _drain(Patch(Inflate(_Src(stream, step), "zlib", wbits, max_raw_patch_len(to_size)), _Base(old),
                        to_size), 4096)


def rdelta(stream, old, to_size, wbits, step):
    """An rdelta artifact as update._pipeline decodes it: zlib, then the relocation patch."""
    from ota.inflate import Inflate
    from ota.reloc import RelocPatch, max_raw_patch_len

    return _drain(RelocPatch(Inflate(_Src(stream, step), "zlib", wbits, max_raw_patch_len(to_size)), _Base(old),
                             to_size), 4096)


def inflate(stream, gzip, wbits, step, max_out):
    from ota.inflate import Inflate

    return _drain(Inflate(_Src(stream, step), "gzip" if gzip else "zlib", wbits, max_out), 509)


# --- Ed25519 over whatever key and signature bytes arrive


def ed25519(public_key, message, signature):
    from ota import ed25519 as ed

    ok = ed.verify(public_key, message, signature)
    if ok is not True and ok is not False:
        raise ValueError("verify returned %r" % (ok,))
    return "T" if ok else "F"


# --- app bundles (ota.bundle): the signed document, and the file paths it may name


def bundle(blob):
    from ota import bundle as bd

    b = bd.load(blob, _trust())
    return "A %s %s %s %d" % (b.type, b.version, b.root, len(b.files))


def bundle_path(path, root):
    from ota import bundle as bd

    return "A " + bd.check_path(path, root or None)


TARGETS = {"manifest": manifest, "keys": keys, "http": http, "image": image, "otadata": otadata,
           "patch": patch, "delta": delta, "rdelta": rdelta, "inflate": inflate, "ed25519": ed25519, "bundle": bundle,
           "bundle_path": bundle_path}


# --- the MicroPython side: samples from a file, one outcome line each, heap figures at the end


def _decode(v):
    if isinstance(v, dict):
        return binascii.a2b_base64(v["b"])
    return v


def run_samples(path, public_key_b64):
    """Each line of `path`: JSON [target, [args]]. Prints "<index> <outcome>" per sample, then
    "HEAP <max bytes allocated by one sample> <MemoryErrors>"; a MemoryError ends the run."""
    import gc
    import json

    setup(public_key_b64)
    worst = 0
    oom = 0
    i = 0
    with open(path) as f:
        while True:
            gc.collect()
            try:
                line = f.readline()
                if not line:
                    break
                name, raw = json.loads(line)
                args = [_decode(a) for a in raw]
                line = raw = None
                gc.collect()
                before = gc.mem_alloc()
                try:
                    out = judge(name, args)
                except MemoryError:
                    raise
                except Exception as e:  # a crash: its type, as CPython names it
                    out = "CRASH " + type(e).__name__
                used = gc.mem_alloc() - before
                if used > worst:
                    worst = used
            except MemoryError:  # the heap is too small for this sample: the run ends here
                args = line = raw = None
                oom += 1
                print(i, "MEMORY")
                break
            args = None
            print(i, out)
            i += 1
    print("HEAP", worst, oom)

"""The world of the state machine (tests/campaign/stateful.py), shared by all its runs: release
keys, images, the documents a publisher signs, a faulty TLS mirror serving them (network.Mirror),
the boards as shipped, one power cycle of a board (in this process or under the MicroPython unix
port: tests/campaign/stateful_device.py), and the board read from outside with the device off
(otadata, slots and the NVS counter with the simulator's parsers; files with devfs)."""
import base64
import contextlib
import gc
import hashlib
import io
import json
import os
import re
import types

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from espsim import nvs as sim_nvs
from espsim import otadata as sim_otadata
from espsim.bootloader import Brick

from . import network
from . import world as W
from .world import sim
from ota_tool import deploy, devfs, images, keys, micropython, release
from ota_tool.errors import ToolError
from ota_tool.files import write_atomic
from tests.ota.faulty_server import response

HERE = os.path.dirname(os.path.abspath(__file__))


def key_id(pub):
    return hashlib.sha256(pub).hexdigest()[:16]


# Release keys: fixed (a run is the same on every machine); KEYS[-1] is a stranger's.
KEYS = [Ed25519PrivateKey.from_private_bytes(hashlib.sha256(b"ota statem key %d" % i).digest()) for i in range(7)]
PUBS = [keys.public_bytes(k) for k in KEYS]
KIDS = [key_id(p) for p in PUBS]
ROGUE = len(KEYS) - 1


# --- documents the publisher (or an attacker with a key) signed: any of them can be replayed


class Doc:
    def __init__(self, name, blob, label, signers, created, **facts):
        self.name = name  # where the distribution serves it
        self.blob = blob
        self.label = label
        self.signers = tuple(signers)
        self.created = created
        self.__dict__.update(facts)

    def __repr__(self):
        return "<%s>" % self.label


def document(blob):
    """The JSON document of a signed file (its last line)."""
    return json.loads(blob.rstrip(b"\n").rsplit(b"\n", 1)[-1])


# --- images: one per (version, kind), made once per process


class Image:
    def __init__(self, version, kind, data):
        self.version = version
        self.kind = kind  # normal / selftest_fails / unbootable
        self.data = data
        self.sha = hashlib.sha256(data).hexdigest()

    def __repr__(self):
        return "%s%s" % (self.version, "" if self.kind == "normal" else " (%s)" % self.kind)


FACTORY = Image("1.0.0", "normal", W.V1)


def _unbootable(version):
    # The same build with its DRAM segment in the bootloader's own RAM (ESP-IDF refuses to load it:
    # bootloader_utility.c verify_segment / espsim.image.verify(bootloader=True)).
    lay = images._LAYOUT["esp32"]
    saved = lay["dram"]
    lay["dram"] = 0x3FFE0000
    try:
        return images.app_image(version, size=W.SIZE, seed=1, base=W.V1, changes=40)
    finally:
        lay["dram"] = saved


class Images:
    def __init__(self):
        self.by_key = {("1.0.0", "normal"): FACTORY}
        self.by_version = {"1.0.0": [FACTORY]}

    def get(self, version, kind="normal"):
        img = self.by_key.get((version, kind))
        if img is None:
            if kind == "unbootable":
                data = _unbootable(version)
            else:
                flags = {"selftest_fails": True} if kind == "selftest_fails" else None
                data = images.app_image(version, size=W.SIZE, seed=1, base=W.V1, changes=40, flags=flags)
            img = self.by_key[(version, kind)] = Image(version, kind, data)
            self.by_version.setdefault(version, []).append(img)
        return img

    def identify(self, slot_bytes):
        """The pool image a slot holds (its app descriptor names the version), or None."""
        desc = images.describe(slot_bytes[:0x200])
        for img in self.by_version.get(desc and desc["version"], ()):
            if slot_bytes[:len(img.data)] == img.data:
                return img
        return None


# --- the distribution: a faulty TLS mirror serving the published documents


# Faults of this machine on top of network.Mirror's: (name, what request they wait for)
_OWN_FAULTS = {"retry_after_huge": "stable.json", "throttle_huge": "stable.json", "long_etag": ".bin"}
FAULTS = ("drop_image", "drop_image", "short_body", "http_503", "http_500", "etag_changed", "range_ignored",
          "corrupt", "reset", "retry_after_huge", "throttle_huge", "long_etag")
LONG_ETAG = '"' + "\\" * 198 + '"'  # 200 printable characters; JSON doubles every backslash
FAR = 999999999  # seconds (31 years)


class Served:
    def __init__(self, name, kind, doc, replayed):
        self.name = name
        self.kind = kind
        self.doc = doc
        self.replayed = replayed


class _ETagAs:
    """A connection whose response carries another ETag header (weak, changing, or long)."""

    def __init__(self, conn, etag):
        self._conn = conn
        self._etag = etag.encode()
        self._done = False

    def send(self, data):
        if not self._done:
            data = re.sub(rb"\r\nETag: [^\r]*", b"\r\nETag: " + self._etag.replace(b"\\", b"\\\\"), data, count=1)
            self._done = True
        self._conn.send(data)

    def __getattr__(self, name):
        return getattr(self._conn, name)


class Distribution(network.Mirror):
    """The release repository as devices reach it: artifacts from a folder shared by every run
    (content-named), the documents devices poll (stable.json, keys.json, stable-app.json) from
    what the model published, a replay in place of one of them for the next power cycle, and a
    schedule of faults, each taken by the next connection it applies to (network.Mirror)."""

    def __init__(self, root, pki):
        super().__init__(root, pki, b"", b"")
        self.reset()

    def reset(self):
        self.docs = {}
        self.override = {}
        self.validators = "strong"
        self.schedule = []
        self.log = []
        self.seen = []
        self.last = None
        self._n = 0

    def snapshot(self):
        return list(self.schedule), self._n, self.last

    def restore(self, saved):
        self.schedule, self._n, self.last = list(saved[0]), saved[1], saved[2]
        del self.log[:]

    def _doc(self, name):
        if name in self.override:
            return self.override[name], True
        return self.docs.get(name), False

    def _file(self, path):
        name = path.split("?")[0].lstrip("/")
        if name.endswith(".json"):
            doc, _ = self._doc(name)
            return doc.blob if doc is not None else None
        return super()._file(path)

    def _respond(self, conn, req, kind, x):
        name = req.path.split("?")[0].lstrip("/")
        if kind in _OWN_FAULTS and not name.endswith(_OWN_FAULTS[kind]):
            self._defer((kind, x))
            kind = "ok"
        doc, replayed = self._doc(name) if name.endswith(".json") else (None, False)
        self.log.append(Served(name, kind, doc, replayed))
        if kind in ("retry_after_huge", "throttle_huge"):
            status = 503 if kind == "retry_after_huge" else 429
            conn.send(response(status, b"come back later\n", ["Retry-After: %d" % FAR]))
            conn.close_notify()
            return
        if kind == "long_etag":
            conn, kind = _ETagAs(conn, LONG_ETAG), "ok"
        elif self.validators == "weak" and not name.endswith(".json"):
            self._n += 1
            conn = _ETagAs(conn, 'W/"edge-%d"' % self._n)  # another replica, another weak validator
        super()._respond(conn, req, kind, x)


# --- the session: what every run shares (made once per process and work folder)


class Session:
    def __init__(self, workdir):
        self.dir = workdir
        os.makedirs(workdir, exist_ok=True)
        self.repo = os.path.join(workdir, "repo")
        os.makedirs(os.path.join(self.repo, "templates"), exist_ok=True)
        self.pki = network._pki(network._Path(workdir))
        self.dist = Distribution(self.repo, self.pki)
        self.url = self.dist.url
        self.images = Images()
        self.templates = {}
        self.bases = {}
        self.initial = {}
        self.deployed = self._library()
        self.layout = None

    def _library(self):
        """{path: bytes} of what `ota-tool deploy` puts on a board: lib/ota as .mpy for the ESP32
        (xtensawin), boot.py, main.py."""
        _, ver, sub = deploy.mpy_cross_version()
        word = (deploy.ARCHS.index("xtensawin") << 10) | (sub << 8) | ver
        items, _ = deploy.plan("mpy", word)
        return {it.dest: it.data for it in items}

    def close(self):
        self.dist.stop()

    def base(self, factory, board, app):
        """A board flashed and deployed as shipped (copied for each run): ota.json, the server's CA,
        the library, main.py, boot.py; `factory`: flashed by cable (no release record), else
        provisioned with the record of the 1.0.0 it runs."""
        key = (factory, board, app)
        if key not in self.bases:
            path = os.path.join(self.dir, "base-%d-%s-%s.bin" % (factory, board, app))
            settings_ = dict(device_id="statem-board", interval=60, retry=60, retry_max=600)
            if board:
                settings_["board"] = board
            if app:  # the root of the bundles: the board's settings do not name it
                settings_["app_source"] = self.url + "stable-app.json"
            holder = types.SimpleNamespace(key=KEYS[0])
            dev = W.provision(holder, path, self.url + "stable.json", self.pki["ca_der"], **settings_)
            if factory:
                def forget():  # what the board knows of the release it runs: nothing
                    from ota import ledger, slot

                    ledger.forget(slot.running())

                assert dev.run(forget).kind == sim.RETURNED
            with devfs.mount(path) as fs:
                for dest, data in sorted(self.deployed.items()):
                    fs.put(dest, data)
            if self.layout is None:
                self.layout = {p.name: p for p in dev.partitions()}
            self.bases[key] = (path, settings_)
        return self.bases[key]

    def template(self, img, encoding, base=None):
        """A release document of `img` made by `ota-tool release` (its artifacts written into the
        repository), to be re-signed with the fields of each publication."""
        key = (img.sha, encoding, base.sha if base is not None else None)
        if key not in self.templates:
            name = "templates/t%d.json" % len(self.templates)
            kw = {"compress": encoding != "raw", "bases": [base.data] if base is not None else (), "created": 0,
                  "manifest_name": name}
            try:
                release.build(img.data, img.version, [KEYS[0]], self.repo, **kw)
                with open(os.path.join(self.repo, name), "rb") as f:
                    doc = document(f.read())
            except ToolError:
                # The host tool refuses the image (one the bootloader would refuse): a publisher
                # with another tool signs it anyway. The same document with this image, raw.
                if self.images.get(img.version) is img:
                    raise  # the good image itself: the tool's refusal is the world's defect
                doc = dict(self.template(self.images.get(img.version), "raw"))
                art = release.artifact_name(img.data, "bin")
                write_atomic(os.path.join(self.repo, art), img.data)
                doc["image"] = {"size": len(img.data), "sha256": img.sha}
                doc["artifacts"] = [{"url": art, "size": len(img.data), "sha256": img.sha, "encoding": "raw"}]
            self.templates[key] = doc
        return self.templates[key]


# --- one power cycle of the board, in this process or under MicroPython


# The device's heap under the unix port: the agent's budget (tests/ota/test_agent.py AGENT_HEAP, 176k,
# one release key) + 16k for this harness (the records, ota.status() before and after a check) +
# 16k for a trust of two keys with threshold 2 (two signatures on every document). Measured on the
# CI sample's runs (main with ota.ledger and delta): one ran out of memory at 192k, all fit at 208k;
# then (2026-12-06) eight more lines in Agent._boot made one sample run (a key rotation to a
# threshold of two, a cut at flash op 2) run out at 208k: the heap decides by its largest hole, so a
# margin of 16k more; then (issue 17's session) the decoder-room fixes of ota.update (about 1 KB
# more bytecode) made the same run (a rotation to threshold 2, then a replayed release) run out at
# 224k, where the code before passes at 216k: 16k more again. A MemoryError is caught by the agent:
# the check ends "out_of_memory", judged a:out_of_memory.
MP_HEAP = "240k"


def power_cycle(dev, cycle, args, interpreter):
    """(Outcome, records). Raises Brick when nothing boots."""
    if interpreter == "micropython":
        code = "import stateful_device\nstateful_device.run(%s)\n" % ", ".join(repr(a) for a in (cycle,) + tuple(args))
        # bytecode, as the library's: compiling the source would take heap the device never spends
        device_code = micropython.compiled_tree(HERE, ["stateful_device"])
        out = dev.run_micropython(code, heap=MP_HEAP, extra_path=(device_code,))
        records = [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("STATEM ")]
        if out.kind == sim.CRASHED:
            out.value = (out.stderr.strip().splitlines() or ["exit %s" % out.value])[-1]
        return out, records
    from . import stateful_device as D

    # The library collects garbage to keep a device heap unfragmented; in this process a collection
    # walks the host's heap (hypothesis, the simulator) and costs tens of ms: CPython frees by
    # reference counting, so skipping it changes nothing the board does.
    collect, gc.collect = gc.collect, _no_collection
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            out = dev.run(D.run, cycle, *args)
    except Brick:
        raise
    except Exception as e:  # main.py raised: the board stops at the REPL, no agent runs
        out = sim.Outcome(sim.CRASHED, "%s: %s" % (type(e).__name__, e))
    finally:
        gc.collect = collect
    return out, list(D.RECORD)


def _no_collection(generation=2):
    return 0


# --- the board read from outside, with the device off


class _MemFlash:
    """The start of the flash (NVS, otadata) in memory: NVS repairs made while reading stay here."""

    def __init__(self, data):
        self.buf = bytearray(data)

    def read(self, addr, n):
        return bytes(self.buf[addr:addr + n])

    def readinto(self, addr, buf):
        buf[:] = self.buf[addr:addr + len(buf)]

    def erase(self, addr, n):
        self.buf[addr:addr + n] = b"\xff" * n

    def write(self, addr, data):
        self.buf[addr:addr + len(data)] = bytes(a & b for a, b in zip(self.buf[addr:addr + len(data)], data))


class View:
    """otadata, what each slot holds, the anti-rollback counter (NVS "secver")."""

    def __init__(self, dev, layout, pool):
        nvs, od = layout["nvs"], layout["otadata"]
        flash = _MemFlash(dev.read(0, od.offset + od.size))
        self.entries = sim_otadata.read(flash, od.offset)
        slots = sorted((p for p in layout.values() if p.name.startswith("ota_")), key=lambda p: p.name)
        self.labels = [p.name for p in slots]
        self.images = {}
        for p in slots:
            self.images[p.name] = pool.identify(dev.read(p.offset, 0x14000))
        self.state = {}  # label -> otadata state of the newest valid entry that selects it
        best = {}
        for e in self.entries:
            if e.crc_ok():
                label = self.labels[(e.seq - 1) % len(slots)]
                if e.seq > best.get(label, -1):
                    best[label] = e.seq
                    self.state[label] = e.state
        active = sim_otadata.active_index(self.entries)
        self.seq = self.entries[active].seq if active >= 0 else None  # a set_boot raises it
        self.next_boot = self.labels[(self.seq - 1) % len(slots)] if active >= 0 else None
        try:
            self.counter = sim_nvs.NvsStorage(flash, nvs.offset, nvs.size).get_i32("ota", "secver")
        except Exception:  # no such entry (never raised), or an NVS the device will repair
            self.counter = None


def read_files(path, wanted, contents=True):
    """(missing or changed [paths], files that shadow the updater where case is ignored, app
    journal phase, settings dict) from the board's littlefs. contents=False: sizes only."""
    bad, shadows = [], []
    with devfs.mount(path, format_blank=False) as fs:
        found = fs.walk("")
        for p, data in wanted.items():
            if p not in found:
                bad.append(p)
            elif found[p] != len(data) or (contents and fs.get(p) != data):
                bad.append(p + " (changed)")
        lower = {p.lower() for p in wanted}
        for p in found:
            if p not in wanted and (p.lower() in lower or p.lower().startswith("lib/ota/")):
                shadows.append(p)
        try:
            phase = json.loads(fs.get("ota-app.journal")).get("phase")
        except (OSError, ValueError):
            phase = None
        try:
            cfg = json.loads(fs.get("ota.json"))
        except (OSError, ValueError):
            cfg = None
    return bad, shadows, phase, cfg


def device_trust(cfg):
    """The trust the board's settings hold, comparable with Trust.ident(), or None."""
    if cfg is None:
        return None
    import binascii

    pubs = set()
    for text in (cfg.get("keys") or {}).values():
        try:
            raw = binascii.unhexlify(text) if len(text) == 64 else base64.b64decode(text)
        except (ValueError, TypeError):
            raw = b""
        pubs.add(raw if len(raw) == 32 else ("undecodable", text))
    revoked = frozenset(str(r).lower() for r in cfg.get("revoked") or ())
    return frozenset(pubs), cfg.get("key_threshold", 1), revoked, cfg.get("keys_version", 0)

"""Issue 14's invariants as a stateful property-based test: a hypothesis RuleBasedStateMachine over
one simulated board (tools/espsim) and a hostile distribution (a faulty TLS mirror).

Rules: publish a release (versions with pre-releases, security versions, boards, channels, rollout
stages, halts, raw/zlib/delta artifacts, a delta that does not produce its image, an image the
bootloader refuses, an image whose self-test fails, a manifest signed by a revoked or foreign key);
re-stage or halt it; rotate or revoke keys (also key lists a device must refuse: a threshold no
unrevoked key set reaches, one key under two names, a key that does not decode, an upper-case
revocation); publish an app bundle (root "app", or "lib" that holds the updater, with a file
named like the updater in another case); a mirror replays any document ever signed; the server
misbehaves (Retry-After far away, 503/500, short bodies, dropped and corrupted downloads, ETags
that change or are 200 characters long, weak validators that change at every response); power is
cut at any flash operation (before it, or half-way); reset; self-test passes or fails;
`ota.rollback()`.

After every power cycle the board is judged against a reference model kept here, not against the
library's own records (otadata, the app images and the anti-rollback counter are read from the
flash with the simulator's parsers; files and settings from its littlefs):
  (a) the board boots (no brick, main.py does not raise) and reaches the server: a check over a
      healthy network, of documents the trust in force accepts, ends with a policy decision, and
      installs a release the reference policy says it must install;
  (b) it never runs an image whose signed security version is below its counter (the model's:
      the highest of the images that confirmed; and the device's own, in NVS);
  (c) it never installs a document the trust in force refuses (a manifest or a key list), nor a
      manifest older than the newest it has seen (same channel and board), an older version
      (SemVer 2.0.0 precedence), a halted release, one outside its rollout or for another board;
  (d) its record of the running release (ota.status()) is what the bootloader booted;
  (e) every check ends with a stable reason (never internal_error) and the agent's chosen sleep
      (and every sleep inside a check) is bounded by its settings;
  (f) lib/ota (as `ota-tool deploy` put it), main.py and boot.py are present and intact, and no
      file shadows the updater where a filesystem ignores case.

A violation is tagged "<invariant>:<kind>" (e.g. "c:installed_replayed_manifest"). Run modes:
"collect" (every run ends at its first violation, counted), "known" (the CI sample: violations
whose tag matches KNOWN_VIOLATIONS are counted, any other fails the test and is shrunk), "target"
(only one tag fails, to get its smallest sequence). See run() and bench/campaign.py --only stateful.
"""
import base64
import fnmatch
import hashlib
import os
import re
import shutil
import tempfile
import time

from hypothesis import HealthCheck, Phase, seed as hypothesis_seed, settings
from hypothesis import strategies as st
from hypothesis.stateful import (Bundle, RuleBasedStateMachine, get_state_machine_test, initialize, multiple,
                                 precondition, rule)

from espsim import otadata as sim_otadata
from espsim.bootloader import Brick
from ota_tool import app_release, keys
from ota_tool.errors import ToolError
from ota_tool.files import write_atomic

from . import stateful_world
from . import world as W
from .stateful_world import (FACTORY, FAULTS, KEYS, KIDS, PUBS, ROGUE, Doc, Session, View, device_trust, document,
                             key_id, power_cycle, read_files, sim)

# --- Violations the library is known to have on main, by tag pattern (fnmatch). The CI sample
# (tests/campaign/test_stateful.py) prints these and fails on any other. Issue 14's items all landed:
# none is listed. Add a line only for a hole found and not fixed yet, with its item.
KNOWN_VIOLATIONS = {}

INVARIANTS = {
    "a": "boots and reaches the server",
    "b": "never runs an image below its security counter",
    "c": "never installs a refused, replayed or older document",
    "d": "ota.status() names what the bootloader booted",
    "e": "stable reasons, bounded delays",
    "f": "ota, main.py and boot.py present",
}

# --- the reference model: SemVer 2.0.0 precedence, rollout buckets, trust


def semver_key(v):
    """SemVer 2.0.0 section 11 precedence as a sort key (build metadata is not used here)."""
    core, _, pre = v.partition("-")
    nums = tuple(int(x) for x in core.split("."))
    if not pre:
        return nums, 1, ()
    ids = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in pre.split("."))
    return nums, 0, ids


def in_rollout(device_id, percent, salt):
    h = hashlib.sha256(("%s:%s" % (salt, device_id)).encode()).digest()
    return int.from_bytes(h[:4], "big") % 10000 < percent * 100



class Trust:
    """A trusted key set as the model holds it: {key id: public key}, threshold, revoked ids
    (lower case), version."""

    def __init__(self, pubs, threshold=1, revoked=(), version=0):
        self.pubs = dict(pubs)
        self.threshold = threshold
        self.revoked = frozenset(r.lower() for r in revoked)
        self.version = version

    def ident(self):
        return frozenset(self.pubs.values()), self.threshold, self.revoked, self.version

    def usable(self):
        return [k for k in self.pubs if k not in self.revoked]

    def accepts(self, signers):
        return len({k for k in signers if k in self.pubs and k not in self.revoked}) >= self.threshold

    def signers(self):
        """The private keys an honest publisher signs with: threshold-many usable ones."""
        return [KEYS[KIDS.index(k)] for k in self.usable()[:self.threshold]]

    def describe(self):
        return "keys v%d %s threshold %d%s" % (self.version, [KIDS.index(k) for k in self.pubs], self.threshold,
                                               " revoked %s" % sorted(KIDS.index(k) for k in self.revoked
                                                                      if k in KIDS) if self.revoked else "")


def judge_key_list(trust, doc):
    """What a device holding `trust` must do with key list `doc`: ("apply", new Trust),
    ("either", new Trust) when refusing it is as right as applying it, or ("refuse", why)."""
    if not trust.accepts(doc.signers):
        return "refuse", "not signed by the trust in force"
    if doc.version <= trust.version:
        return "refuse", "version %d is not newer than %d" % (doc.version, trust.version)
    pubs = {}
    for name, text in doc.keys:
        try:
            raw = base64.b64decode(text, validate=True)
        except ValueError:
            raw = b""
        if len(raw) != 32:
            return "refuse", "key %s does not decode" % name
        if key_id(raw) in pubs:
            return "refuse", "one key twice"
        pubs[key_id(raw)] = raw
    if len({n for n, _ in doc.keys}) != len(doc.keys) or not 1 <= len(pubs) <= 8:
        return "refuse", "names not unique, or not 1..8 keys"
    if not all(re.fullmatch("[0-9a-fA-F]{16}", r) for r in doc.revoked):
        return "refuse", "a revocation is not a key id"
    new = Trust(pubs, doc.threshold, doc.revoked, doc.version)
    if len(new.usable()) < new.threshold:
        return "refuse", "threshold %d, %d unrevoked keys" % (new.threshold, len(new.usable()))
    if any(r != r.lower() for r in doc.revoked):
        return "either", new  # a non-canonical key id: applied (canonicalised) or refused whole
    return "apply", new


# Release versions: pre-releases whose order differs from string order (SemVer 2.0.0 section 11).
VERSIONS = ["1.0.0", "1.0.1", "1.1.0-beta.2", "1.1.0-beta.11", "2.0.0-rc.9", "2.0.0-rc.10", "2.0.0", "3.0.0"]


# --- the machine


# A check that ends in one of these reached the server and decided on the release it offers (an image
# whose load addresses the bootloader refuses is refused as it streams, before set_boot).
# artifact_held: the board's own decision not to fetch again, so soon, an artifact that failed after it was
# written here (flash wear, issue 14); a release the board must install is still judged by (a)'s second rule.
POLICY_REASONS = W.POLICY_REASONS + ("wrong_board", "wrong_channel", "wrong_chip", "bad_load_address", "artifact_held")
EVENTS = ("installed", "up_to_date", "refused", "failed", "not_now")


def known(tag, patterns=None):
    return any(fnmatch.fnmatchcase(tag, p) for p in (KNOWN_VIOLATIONS if patterns is None else patterns))


class Ref:
    """A recorded call's document argument: the i-th document the call-th call of the run signed."""

    def __init__(self, call, i):
        self.call = call
        self.i = i

    def __repr__(self):
        return "Ref(%d, %d)" % (self.call, self.i)


class Collector:
    """What the runs found: each run ends at its first violation, counted by tag, with the first
    run that ended at it (its steps as text, its calls for a replay). keep: the calls of that many
    first runs are kept too (to replay them under MicroPython)."""

    def __init__(self, keep=0):
        self.runs = 0
        self.steps = 0
        self.cycles = 0
        self.found = {}  # tag -> [count, message, steps (text), calls]
        self.keep = keep
        self.kept = []  # [(calls, tag or None)] of the first `keep` runs

    def finish(self, machine):
        if len(self.kept) < self.keep:
            self.kept.append((list(machine.calls), machine.tag))

    def record(self, tag, message, steps, calls):
        entry = self.found.setdefault(tag, [0, message, list(steps), list(calls)])
        entry[0] += 1


def _cut_at():
    """(where, mode): power fails at a flash operation of the power cycle, before it or half-way
    ("torn"); where: ("at", n) the operation n/1000 of the way, or ("end", n) the n-th before the
    last (the cycle's decisions are written last: the boot choice, the release record, an app
    tree's renames)."""
    where = st.one_of(st.tuples(st.just("at"), st.integers(0, 999)), st.tuples(st.just("end"), st.integers(0, 31)))
    return st.tuples(where, st.sampled_from(["before", "torn"]))


def _cut():
    return st.one_of(st.none(), st.none(), _cut_at())


def _then():
    """After a change to the distribution: False, or a check (True), or a check with a power cut."""
    return st.one_of(st.sampled_from([False, True, True]), _cut_at())


class StatefulBoard(RuleBasedStateMachine):
    session = None  # a Session: set by run()
    collector = None
    interpreter = "cpython"

    docs = Bundle("docs")

    def __init__(self):
        super().__init__()
        self.dead = False
        self.tag = None  # the violation the run ended at
        self.log = []  # the rules run, as text
        self.calls = []  # the rules run, as (method, arguments): see replay()
        self.made = []  # the documents signed in this run, in order
        self.collector.runs += 1

    # --- bookkeeping

    def _begin(self, name, args, text):
        """Log a rule: its readable text, and the call (for a replay of the run). False when the run
        is over (it ended at a violation: the rest of its rules do nothing)."""
        if self.dead:
            return False
        self.calls.append((name, {k: Ref(*v.ref) if isinstance(v, Doc) else v for k, v in args.items() if k != "self"}))
        self.log.append(text)
        self.collector.steps += 1
        return True

    def _made(self, doc):
        call = len(self.calls) - 1
        doc.ref = (call, sum(1 for d in self.made if d.ref[0] == call))
        self.made.append(doc)
        return doc

    def violate(self, tag, message):
        """The run ends here: the rest of its rules do nothing."""
        self.dead = True
        self.tag = tag
        self.message = message
        self.collector.record(tag, message, self.log, self.calls)

    def teardown(self):
        self.collector.finish(self)

    # --- setup

    @initialize(target=docs, factory=st.booleans(), board=st.sampled_from([None, "BOARD_A"]),
                app=st.sampled_from([None, None, "app", "lib"]), weak=st.sampled_from([False, False, True]))
    def setup(self, factory, board, app, weak):
        """A board as shipped: flashed by cable (`factory`: no release record) or provisioned; its
        board name set or not; an app bundle source or not (`app`: the root of its first bundle).
        `weak`: the server's ETags are weak and change at every response (replicas)."""
        s = self.session
        path, self.cfg = s.base(factory, board, app)
        self.board = board
        self.app = app
        self.dev = sim.Device(os.path.join(s.dir, "run.bin"))
        shutil.copyfile(path, self.dev.path)
        s.dist.reset()
        self.trust = Trust({KIDS[0]: PUBS[0]})
        self.fresh = 1  # KEYS[fresh] is the next key never listed yet
        self.clock = 1700000000
        self.secvers = {"1.0.0": 0}
        self.seen_certain = self.seen_possible = 0
        self.counter = 0
        self.suspect = set()
        self.view = View(self.dev, s.layout, s.images)
        self.running = FACTORY
        self._begin("setup", dict(factory=factory, board=board, app=app, weak=weak),
                    "setup(factory=%s, board=%s, app=%s, weak_etags=%s)" % (factory, board, app, weak))
        s.dist.validators = "weak" if weak else "strong"
        docs = [self._publish(FACTORY, "1.0.0", 0, "*", "stable", 100, False, "raw", self.trust.signers(), "")]
        if app:
            docs.append(self._app_doc("1.0.0", app, False))
        return multiple(*docs)

    # --- the publisher

    def _tick(self):
        self.clock += 10
        return self.clock

    def _publish(self, img, version, secver, board, channel, percent, halted, encoding, signers, how):
        s = self.session
        base = None
        if encoding.startswith("delta"):
            base = self.running if encoding == "delta" else (FACTORY if self.running is not FACTORY
                                                              else s.images.get("3.0.0"))
        doc = dict(s.template(img, "zlib" if encoding.startswith("delta") else encoding, base))
        for key in ("artifacts", "extra_artifacts"):  # (extra: relocation-aware deltas, ota-tool release)
            if key in doc:
                doc[key] = [dict(a) for a in doc[key]]
                for a in doc[key] if encoding == "delta_broken" else ():
                    if "base_sha256" in a:
                        a["base_sha256"] = self.running.sha  # made against another base
        created = self._tick()
        doc.update(version=version, security_version=secver, board=board, channel=channel, created=created,
                   key_id=keys.key_id(signers[0]))
        salt = "s%d" % (created % 7)
        if percent < 100:
            doc["rollout"] = {"percent": percent, "salt": salt}
        else:
            doc.pop("rollout", None)
        doc["halted"] = halted
        label = "%s sv%d %s%s%s%s %s%s" % (version, secver, img.kind + " " if img.kind != "normal" else "", encoding,
                                          " board " + board if board != "*" else "",
                                          " " + channel if channel != "stable" else "",
                                          "halted " if halted else "", "%d%%" % percent if percent < 100 else "")
        d = self._made(Doc("stable.json" if channel == "stable" else "beta.json", keys.sign(doc, signers),
                           label.strip() + how, [keys.key_id(k) for k in signers], created, kind="firmware",
                           version=version, secver=secver, image=img, board=board, channel=channel, percent=percent,
                           salt=salt, halted=halted, encoding=encoding))
        if channel == "stable":
            self.session.dist.docs["stable.json"] = d
        return d

    def _key_list(self, kind):
        t = self.trust
        cur = [(KIDS.index(k), PUBS[KIDS.index(k)]) for k in t.pubs]
        fresh = self.fresh % ROGUE
        self.fresh += 1
        entries = [("k%d" % i, p) for i, p in cur]
        threshold, revoked, version = 1, sorted(t.revoked), t.version + 1
        if kind == "add":
            entries.append(("k%d" % fresh, PUBS[fresh]))
            threshold = t.threshold
        elif kind == "replace":
            entries = [("k%d" % fresh, PUBS[fresh])]
        elif kind in ("revoke", "revoke_upper"):
            gone = t.usable()[0]
            entries.append(("k%d" % fresh, PUBS[fresh]))
            revoked = revoked + [gone.upper() if kind == "revoke_upper" else gone]
        elif kind == "threshold2":
            entries.append(("k%d" % fresh, PUBS[fresh]))
            threshold = 2
        elif kind == "lockout_revoke":
            revoked = revoked + t.usable()
        elif kind == "lockout_threshold":
            entries.append(("k%d" % fresh, PUBS[fresh]))
            revoked = revoked + [KIDS[fresh]]
            threshold = len(entries)
        elif kind == "duplicate":
            i, p = cur[0]
            entries = [("k%d" % i, p), ("k%d-again" % i, p)]
            threshold = 2
        elif kind == "undecodable":
            entries.append(("broken", "bm90IGEga2V5"))  # base64 of 9 bytes
        elif kind == "stale":
            version = t.version
        texts = [(n, p if isinstance(p, str) else base64.b64encode(p).decode()) for n, p in entries]
        body = {"type": "keys", "version": version, "threshold": threshold,
                "keys": [{"name": n, "key": k} for n, k in texts], "revoked": sorted(set(revoked))}
        signers = t.signers()
        doc = self._made(Doc("keys.json", keys.sign(body, signers), "key list v%d %s" % (version, kind),
                  [keys.key_id(k) for k in signers], self._tick(), kind="keys", version=version, keys=texts,
                  threshold=threshold, revoked=tuple(sorted(set(revoked)))))
        self.session.dist.docs["keys.json"] = doc
        return doc

    def _app_doc(self, version, root, shadow):
        s = self.session
        files = [("main.py", b"APP = %r\n" % version), ("util.py", b"X = 1\n" * 40)]
        created = self._tick()
        signers = self.trust.signers()
        info = app_release.build(files, version, signers, s.repo, root="app", created=created,
                                 name="templates/app.json")
        with open(info["manifest"], "rb") as f:
            doc = document(f.read())
        if root != "app" or shadow:
            # What the host tool may refuse, signed anyway by the publisher's keys: the device must
            # protect itself (ota/bundle.py's guards).
            doc["root"] = root
            if shadow:
                data = b"print('not the updater')\n"
                write_atomic(os.path.join(s.repo, app_release.file_name(data)), data)
                doc["files"] = doc["files"] + [{"path": "OTA/agent.py", "size": len(data),
                                                "sha256": hashlib.sha256(data).hexdigest()}]
        d = self._made(Doc("stable-app.json", keys.sign(doc, signers), "app %s root %s%s" % (
            version, root, " with OTA/agent.py" if shadow else ""), [keys.key_id(k) for k in signers], created,
            kind="app", version=version, root=root))
        s.dist.docs["stable-app.json"] = d
        return d

    # Each change to the distribution is followed by a check (a power cycle running main.py) unless
    # `then_check` is False: the board polls all the time, and a sequence stays short.
    # What can be wrong with a release, one thing at a time (most are fine).
    VARIANTS = ["fine"] * 10 + ["board_A", "board_B", "beta", "rollout_50", "rollout_0", "halted", "delta_broken",
                                "selftest_fails", "unbootable", "signed_by_revoked", "signed_by_stranger"]

    @rule(target=docs, version=st.sampled_from(VERSIONS), secver=st.integers(0, 3),
          encoding=st.sampled_from(["raw", "raw", "zlib", "delta"]), variant=st.sampled_from(VARIANTS),
          then_check=_then())
    def publish_release(self, version, secver, encoding, variant, then_check):
        """A signed release (raw image, zlib or delta artifact) and what is wrong with it: another
        board (BOARD_A is the board's name when it has one), another channel, a rollout stage, a
        halt, a delta that does not produce its image, an image whose self-test fails or that the
        bootloader refuses, a signature by a revoked key or a stranger's. A version keeps the
        security version of its first publication."""
        if not self._begin("publish_release", locals(), "publish_release(%s, sv%d, %s%s)" % (
                version, secver, encoding, "" if variant == "fine" else ", " + variant)):
            return multiple()
        secver = self.secvers.setdefault(version, secver)
        kind = variant if variant in ("selftest_fails", "unbootable") and version != "1.0.0" else "normal"
        img = self.session.images.get(version, kind)
        signers, how = self.trust.signers(), ""
        revoked = sorted(k for k in self.trust.revoked if k in KIDS)
        if variant == "signed_by_revoked" and revoked:
            signers, how = [KEYS[KIDS.index(revoked[0])]], " (signed by a revoked key)"
        elif variant == "signed_by_stranger":
            signers, how = [KEYS[ROGUE]], " (signed by an untrusted key)"
        doc = self._publish(img, version, secver, "BOARD_" + variant[6:] if variant.startswith("board_") else "*",
                            "beta" if variant == "beta" else "stable",
                            int(variant[8:]) if variant.startswith("rollout_") else 100, variant == "halted",
                            "delta_broken" if variant == "delta_broken" else encoding, signers, how)
        self._then(then_check)
        return doc

    @precondition(lambda self: not self.dead and "stable.json" in self.session.dist.docs)
    @rule(target=docs, percent=st.sampled_from([100, 50, 0]), halted=st.booleans(), then_check=_then())
    def restage(self, percent, halted, then_check):
        """`ota-tool rollout`: the current release signed again with another stage, or halted."""
        cur = self.session.dist.docs["stable.json"]
        if not self._begin("restage", dict(percent=percent, halted=halted, then_check=then_check),
                           "restage(%d%%, halted=%s) of %s" % (percent, halted, cur.label)):
            return multiple()
        doc = self._publish(cur.image, cur.version, cur.secver, cur.board, cur.channel, percent, halted,
                            cur.encoding, self.trust.signers(), "")
        self._then(then_check)
        return doc

    @rule(target=docs, kind=st.sampled_from(["add", "replace", "revoke", "threshold2"] * 3 + [
        "revoke_upper", "lockout_revoke", "lockout_threshold", "duplicate", "undecodable", "stale"]),
          then_check=_then())
    def rotate_keys(self, kind, then_check):
        """A key list (keys.json) signed by the trust in force: a rotation, or one a device must
        refuse whole (keeping its keys)."""
        if not self._begin("rotate_keys", locals(), "rotate_keys(%s)" % kind):
            return multiple()
        doc = self._key_list(kind)
        self._then(then_check)
        return doc

    @precondition(lambda self: not self.dead and self.app)
    @rule(target=docs, version=st.sampled_from(["1.0.1", "1.1.0", "2.0.0", "3.0.0"]),
          shadow=st.sampled_from([False, False, False, True]), then_check=_then())
    def publish_app(self, version, shadow, then_check):
        """The next app bundle (ota-tool release-app) in the board's app root ("app", or "lib", the
        folder that holds the updater); `shadow`: with a file named like the updater's in another
        case (OTA/agent.py)."""
        if not self._begin("publish_app", locals(), "publish_app(%s, shadow=%s)" % (version, shadow)):
            return multiple()
        doc = self._app_doc(version, self.app, shadow)
        self._then(then_check)
        return doc

    # --- the hostile network

    @rule(doc=docs, then_check=_then())
    def replay(self, doc, then_check):
        """A mirror serves this old signed document in place of the current one, for one power cycle."""
        if not self._begin("replay", locals(), "replay(%s)" % doc.label):
            return
        self.session.dist.override[doc.name if doc.name != "beta.json" else "stable.json"] = doc
        self._then(then_check)

    @rule(fault=st.sampled_from(FAULTS + ("weak_validators", "strong_validators")), where=st.integers(1, 99),
          then_check=_then())
    def misbehave(self, fault, where, then_check):
        """The next connection this fault applies to suffers it (`where`: the share of the response
        sent); or, from now on, the server's ETags are weak and different at every response
        (replicas), or strong again."""
        if not self._begin("misbehave", locals(), "misbehave(%s%s)" % (
                fault, ", %d%%" % where if not fault.endswith("validators") else "")):
            return
        if fault.endswith("validators"):
            self.session.dist.validators = fault.split("_")[0]
        else:
            self.session.dist.schedule.append((fault, where / 100.0))
        self._then(then_check)

    # --- the board

    def _then(self, then_check):
        if then_check and not self.dead:
            self.log[-1] += ", then check"
            self._cycle("main", (True,), then_check if then_check is not True else None)

    @rule(selftest_ok=st.sampled_from([True, True, True, False]), cut=_cut())
    def check(self, selftest_ok, cut):
        """A power cycle running main.py: boot() then the agent's loop until its first sleep."""
        if self._begin("check", locals(), "check" if selftest_ok else "check (self-test fails)"):
            self._cycle("main", (selftest_ok,), cut)

    @rule(cut=_cut())
    def rollback(self, cut):
        """The application calls ota.rollback() after boot()."""
        if self._begin("rollback", locals(), "rollback"):
            self._cycle("rollback", (), cut)

    @rule(cut=_cut())
    def reset(self, cut):
        """A power cycle in which nothing runs (reset before main.py)."""
        if self._begin("reset", locals(), "reset"):
            self._cycle("idle", (), cut)

    def _cycle(self, cycle, args, cut):
        s, dev = self.session, self.dev
        if cut:
            (how, n), mode = cut
            ops = self._probe(cycle, args)
            at = ops * n // 1000 if how == "at" else max(0, ops - 1 - n)
            dev.arm_power_cut(at, mode)
            self.log[-1] += " with power cut %s flash op %d of %d" % ("half-way through" if mode == "torn" else
                                                                     "before", at, ops)
        del s.dist.log[:]
        try:
            out, records = power_cycle(dev, cycle, args, self.interpreter)
        except Brick as e:
            return self.violate("a:brick", "the board does not boot: %s" % e)
        finally:
            dev.cut_at = None
        served = list(s.dist.log)
        s.dist.override.clear()
        self.collector.cycles += 1
        self._judge(cycle, out, records, served)

    def _probe(self, cycle, args):
        """The flash operations this power cycle makes (the bootloader's included): the same cycle
        on a copy of the board, the distribution put back as it was."""
        s = self.session
        probe = sim.Device(os.path.join(s.dir, "probe.bin"))
        shutil.copyfile(self.dev.path, probe.path)
        saved = s.dist.snapshot()
        try:
            out, _ = power_cycle(probe, cycle, args, self.interpreter)
            return out.ops
        except Brick:
            return 0
        finally:
            s.dist.restore(saved)

    # --- the judge

    def _judge(self, cycle, out, records, served):
        s = self.session
        before = self.view
        view = self.view = View(self.dev, s.layout, s.images)
        cut = out.kind == sim.POWER_CUT
        booted = out.booted  # None when the power failed in the bootloader
        # (f) and what only the filesystem shows: after a cut, and whenever bundles may change it
        keys_served = [x.doc for x in served if x.name == "keys.json" and x.kind == "ok" and x.doc is not None]
        phase = cfg = None
        if cut or self.app or keys_served or out.kind == sim.CRASHED:
            try:
                bad, shadows, phase, cfg = read_files(self.dev.path, s.deployed, contents=cut or any(
                    r["t"] == "installed" for r in records))
            except ToolError as e:
                return self.violate("f:filesystem", "the filesystem does not mount: %s" % e)
            if bad:
                return self.violate("f:updater_missing", "after %s: missing or changed %s" % (
                    "a power cut" if cut else "this power cycle", ", ".join(bad[:4])))
            if shadows:
                return self.violate("f:updater_shadowed", "files shadow the updater where case is ignored: %s"
                                    % ", ".join(shadows[:4]))
        if out.kind == sim.CRASHED:
            return self.violate("a:main_py_stops", "main.py stops: %s" % (out.value,))
        if any(r["t"] == "refused" and r["reason"] == "out_of_memory" for r in records):
            # Under the MicroPython unix port: the heap did not hold the flow (the device's
            # stable reason for it, but the rest of this cycle cannot be judged).
            return self.violate("a:out_of_memory", "a check ran out of memory (heap %s)" % (
                stateful_world.MP_HEAP if self.interpreter == "micropython" else "host"))
        # (e) reasons and delays
        bound_ms = max(self.cfg["interval"] * 1.25, self.cfg["retry_max"]) * 1000
        naps = 0
        for r in records:
            if r["t"] == "check":
                if r["event"] not in EVENTS:
                    return self.violate("e:event", "check_now returned %r" % (r["event"],))
                for reason in r["reasons"]:
                    if not isinstance(reason, str) or not re.fullmatch("[a-z0-9_]+", reason):
                        return self.violate("e:reason", "a refusal without a stable reason: %r" % (reason,))
                    if reason == "internal_error":
                        return self.violate("e:internal_error", "a check ended in internal_error (%s)" % r["reasons"])
            elif r["t"] == "sleep" and r["ms"] > bound_ms:
                return self.violate("e:sleep_over_bound", "the agent chose to sleep %d s (settings bound %d s)" % (
                    r["ms"] // 1000, bound_ms // 1000))
            elif r["t"] == "nap":
                naps += r["ms"]
        if naps > bound_ms:
            return self.violate("e:sleep_over_bound", "sleeps inside boot/check: %d s" % (naps // 1000))
        # what runs: from the flash
        img = view.images.get(booted) if booted else None
        if booted and img is None:
            return self.violate("b:runs_unknown_image", "%s booted an image no release names" % booted)
        # the trust in force: a key list the device was served may move it, if the model says so
        if keys_served:
            have = device_trust(cfg)
            allowed = {self.trust.ident(): self.trust}
            must = None
            for kd in keys_served:
                verdict, new = judge_key_list(self.trust, kd)
                if verdict in ("apply", "either"):
                    allowed[new.ident()] = new
                    if verdict == "apply" and not cut:
                        must = (kd, new)
            if have not in allowed:
                why = [judge_key_list(self.trust, kd)[1] for kd in keys_served]
                return self.violate("c:key_list_refused_installed", "the board holds a trust the trust in force "
                                    "does not allow (%s): %s" % (", ".join("%s: %s" % (kd.label, w) for kd, w in
                                                                          zip(keys_served, why)),
                                                                 _trust_text(have)))
            if must is not None and have != must[1].ident():
                return self.violate("c:key_list_not_applied", "a valid %s was served and ignored" % must[0].label)
            self.trust = allowed[have]
        # (b) the security counter
        if img is not None:
            floor = max(self.counter, view.counter or 0)
            if self.secvers.get(img.version, 0) < floor:
                return self.violate("b:runs_below_counter", "runs %s (security version %d) with counter %d "
                                    "(model %d, NVS %s)" % (img, self.secvers.get(img.version, 0), floor,
                                                            self.counter, view.counter))
        if img is not None and view.state.get(booted) == sim_otadata.VALID:
            self.counter = max(self.counter, self.secvers.get(img.version, 0))
        for label, st_ in view.state.items():
            if st_ in (sim_otadata.ABORTED, sim_otadata.INVALID) and view.images.get(label) is not None:
                self.suspect.add(view.images[label].sha)
        if cycle == "rollback" and img is not None:
            self.suspect.add(img.sha)  # rolled back from on purpose: reinstalling it is the device's call
        # (c) an install in this cycle: the boot choice now selects another slot, NEW
        manifests = [x for x in served if x.name == "stable.json" and x.doc is not None and x.kind == "ok"]
        installed = (cycle == "main" and booted and view.next_boot not in (None, booted)
                     and view.state.get(view.next_boot) == sim_otadata.NEW and view.seq != before.seq
                     and (cut or any(r["t"] == "installed" and r.get("version") for r in records)))
        if installed:
            new = view.images.get(view.next_boot)
            m = manifests[-1].doc if manifests else None
            problem = self._install_problem(m, new, img)
            if problem:
                return self.violate(*problem)
        # seen: manifests meant for this board, verified, decided on in a cycle that completed
        for x in manifests:
            m = x.doc
            if m.kind == "firmware" and self._meant(m) and self.trust.accepts(m.signers):
                self.seen_possible = max(self.seen_possible, m.created)
                if not cut:
                    self.seen_certain = max(self.seen_certain, m.created)
        # (d) the record of what runs
        for r in records:
            if r["t"] == "status" and img is not None:
                if r["version"] != img.version and not (img is FACTORY and r["version"] is None):
                    return self.violate("d:" + _record_tag(r["version"], img.version), "status says %s, the "
                                        "bootloader booted %s (%s)" % (r["version"], img, booted))
                if r["release_sha"] is not None and r["release_sha"] != img.sha and r["version"] == img.version:
                    return self.violate("d:record_not_booted", "status names image %s.., %s runs" % (
                        r["release_sha"][:12], img))
        if img is not None:
            self.running = img
        # (a) a healthy check ends in a decision, and installs what it must
        if cycle == "main" and not cut and booted:
            self._judge_liveness(records, served, img, view, phase)

    def _meant(self, m):
        return m.channel == "stable" and m.board in ("*", self.board)

    def _install_problem(self, m, new, running):
        if new is None:
            return "c:installed_unknown_image", "the boot choice selects an image no release names"
        if m is None:
            return "c:installed_without_manifest", "installed %s with no manifest served" % new
        if m.image.sha != new.sha:
            return "c:installed_image_not_signed", "installed %s, the manifest names %s" % (new, m.image)
        why = []
        if not self.trust.accepts(m.signers):
            why.append(("c:installed_untrusted_manifest", "the trust in force (%s) refuses it" % self.trust.describe()))
        if m.board not in ("*", self.board):
            why.append(("c:installed_other_board", "it is for board %s, this board is %s" % (m.board, self.board)))
        if m.channel != "stable":
            why.append(("c:installed_other_channel", "it is for channel %s" % m.channel))
        if m.created < self.seen_certain:
            why.append(("c:installed_replayed_manifest", "signed at %d, a newer manifest (%d) was seen" % (
                m.created, self.seen_certain)))
        if running is not None and semver_key(m.version) < semver_key(running.version):
            why.append(("c:installed_older_version", "%s is older than the running %s" % (m.version, running.version)))
        if m.halted:
            why.append(("c:installed_halted", "the release is halted"))
        if not in_rollout(self.cfg["device_id"], m.percent, m.salt):
            why.append(("c:installed_outside_rollout", "the board is not in its %d%% stage" % m.percent))
        if m.secver < max(self.counter, self.view.counter or 0):
            why.append(("b:installed_below_counter", "security version %d, counter %d" % (m.secver, self.counter)))
        if why:
            return why[0][0], "installed %s: %s" % (m.label, "; ".join(w for _, w in why))
        return None

    def _judge_liveness(self, records, served, img, view, phase):
        if any(x.kind != "ok" or x.replayed for x in served):
            return  # faults or a replay in this cycle: no promise
        decision = None  # the firmware check's: its install, or its refusal (the first of the check)
        for r in records:
            if r["t"] == "installed" and r.get("version") is not None:
                decision = decision or "installed"
            elif r["t"] == "refused":
                decision = decision or r["reason"]
            elif r["t"] == "check":
                decision = decision or r["event"]
        manifests = [x.doc for x in served if x.name == "stable.json" and x.doc is not None]
        m = manifests[-1] if manifests else None
        if decision is None or m is None or m.kind != "firmware" or not self.trust.accepts(m.signers):
            return  # no check ran (a rollback at boot), or the document is not one the board must take
        if decision != "installed" and decision not in POLICY_REASONS:
            return self.violate("a:no_decision:%s" % decision, "a check of %s over a healthy network ends in %r, "
                                "not a decision" % (m.label, decision))
        if self._must_install(m, img, view, phase) and decision != "installed":
            return self.violate("a:not_installed:%s" % decision, "%s must be installed over %s, the check says %r"
                                % (m.label, img, decision))

    def _must_install(self, m, running, view, phase):
        return (self._meant(m) and not m.halted and in_rollout(self.cfg["device_id"], m.percent, m.salt)
                and m.secver >= max(self.counter, view.counter or 0)
                and semver_key(m.version) > semver_key(running.version)
                and m.created >= self.seen_possible and m.image.sha not in self.suspect
                and m.image.kind != "unbootable" and phase in (None, "confirmed"))


def _record_tag(said, runs):
    """Which way the record of the running release is wrong."""
    if said is None:
        return "record_missing"
    try:
        older = semver_key(said) < semver_key(runs)
    except (AttributeError, ValueError):
        return "record_not_booted"
    return "record_behind" if older else "record_ahead"


def _trust_text(ident):
    if ident is None:
        return "no settings"
    pubs, threshold, revoked, version = ident
    names = sorted(PUBS.index(p) if p in PUBS else repr(p) for p in pubs)
    return "keys v%s %s threshold %s revoked %s" % (version, names, threshold, sorted(
        KIDS.index(r) if r in KIDS else r for r in revoked))


# --- running it


def machine_test(collector, session, examples, steps, seed=None, interpreter="cpython"):
    """A hypothesis test function running `examples` runs of at most `steps` rules, each judged
    after every power cycle and ended at its first violation (counted in `collector`). seed None:
    derandomized (the same runs every time); else hypothesis' seed."""
    StatefulBoard.session = session
    StatefulBoard.collector = collector
    StatefulBoard.interpreter = interpreter
    cfg = settings(max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
                   derandomize=seed is None, phases=[Phase.explicit, Phase.generate],
                   suppress_health_check=list(HealthCheck), print_blob=False)
    test = get_state_machine_test(StatefulBoard, settings=cfg)
    return test if seed is None else hypothesis_seed(seed)(test)


def replay(session, calls, collector, interpreter="cpython", max_cycles=None):
    """Run recorded calls again ([(name, arguments)] as Collector.kept and .found hold them, or
    [(index, name, arguments)], a subset of them with their first indexes): under MicroPython, or
    to shrink. A call whose document was not made (its call was left out) is skipped. Stops at the
    first violation or after `max_cycles` power cycles. Returns the machine (.truncated: stopped
    by max_cycles)."""
    StatefulBoard.session = session
    StatefulBoard.collector = collector
    StatefulBoard.interpreter = interpreter
    m = StatefulBoard()
    m.truncated = False
    start = collector.cycles
    made = {}  # index of a recorded call -> the documents it made in this replay
    for entry in calls:
        index, name, kw = entry if len(entry) == 3 else (len(made), ) + tuple(entry)
        if m.dead:
            break
        if max_cycles is not None and collector.cycles - start >= max_cycles:
            m.truncated = True
            break
        args = {}
        for k, v in kw.items():
            if isinstance(v, Ref):
                docs = made.get(v.call, [])
                v = docs[v.i] if v.i < len(docs) else None
                if v is None:
                    break
            args[k] = v
        else:
            rule_ = getattr(getattr(StatefulBoard, name), "hypothesis_stateful_rule", None)
            if all(p(m) for p in (rule_.preconditions if rule_ else ())):  # else skipped, as hypothesis would
                before = len(m.made)
                getattr(m, name)(**args)
                made[index] = m.made[before:]
                continue
        made[index] = []
    m.teardown()
    return m


# Simpler values of rules' arguments, tried in order when shrinking a failing run.
_THEN = {"then_check": [False, True]}
_SIMPLER = {
    "setup": {"factory": [False], "board": [None], "app": [None], "weak": [False]},
    "publish_release": dict(_THEN, variant=["fine"], encoding=["raw"], secver=[0]),
    "restage": dict(_THEN, percent=[100], halted=[False]),
    "rotate_keys": _THEN, "publish_app": dict(_THEN, shadow=[False]), "replay": _THEN, "misbehave": _THEN,
    "check": {"cut": [None], "selftest_ok": [True]}, "rollback": {"cut": [None]}, "reset": {"cut": [None]},
}


def shrink(session, calls, tag, interpreter="cpython", budget=200):
    """The smallest run that still ends at `tag`: calls left out one at a time while the run still
    ends there, then arguments made simpler (_SIMPLER); at most `budget` replays. Returns (steps as
    text, message), or None if the run does not end at `tag` again."""
    tries = [0]

    def fails(cand):
        tries[0] += 1
        m = replay(session, cand, Collector(), interpreter)
        return m if m.tag == tag else None

    cur = [(i, name, dict(kw)) for i, (name, kw) in enumerate(calls)]
    best = fails(cur)
    if best is None:
        return None
    changed = True
    while changed and tries[0] < budget:
        changed = False
        for j in range(len(cur) - 1, 0, -1):  # the setup (first) stays
            if j >= len(cur) or tries[0] >= budget:
                continue
            i, name, kw = cur[j]
            cands = [cur[:j] + cur[j + 1:]]  # without it; or, when it matters only for its check, the check
            if kw.get("then_check"):
                cut = kw["then_check"] if kw["then_check"] is not True else None
                cands.append(cur[:j] + [(i, "check", {"selftest_ok": True, "cut": cut})] + cur[j + 1:])
            for cand in cands:
                m = fails(cand) if tries[0] < budget else None
                if m is not None:
                    cur, best, changed = cand, m, True
                    break
        for j, (i, name, kw) in enumerate(cur):
            for k in sorted(kw):
                for simpler in _SIMPLER.get(name, {}).get(k, ()):
                    if kw[k] == simpler or tries[0] >= budget:
                        break
                    cand = list(cur)
                    cand[j] = (i, name, dict(kw, **{k: simpler}))
                    m = fails(cand)
                    if m is not None:
                        cur, best, changed = cand, m, True
                        kw = cand[j][2]
                        break
    return best.log, best.message


class Summary:
    def __init__(self, collector, seconds, run_seconds, shrunk):
        self.runs = collector.runs
        self.steps = collector.steps
        self.cycles = collector.cycles
        self.found = collector.found
        self.seconds = seconds  # in all
        self.run_seconds = run_seconds  # the runs, without shrinking
        self.shrunk = shrunk  # tag -> (steps, message) of the smallest run found

    def row(self):
        found = sorted(self.found.items())
        return {"runs": self.runs, "steps": self.steps, "power_cycles": self.cycles,
                "violations": sum(v[0] for _, v in found),
                "by_invariant": {k: sum(v[0] for t, v in found if t[0] == k) for k in INVARIANTS},
                "by_tag": {t: v[0] for t, v in found},
                "seconds": round(self.seconds, 1), "run_seconds": round(self.run_seconds, 1),
                "seconds_per_1000_runs": round(self.run_seconds * 1000.0 / max(1, self.runs), 1),
                "first": {t: {"message": v[1], "steps": v[2]} for t, v in found},
                "smallest": {t: {"message": m, "steps": s} for t, (s, m) in sorted(self.shrunk.items())}}


def run(workdir=None, runs=2000, steps=20, seed=None, shrink_found=False, interpreter="cpython", progress=None):
    """`runs` runs of the machine, every violation counted (each run ends at its first); with
    `shrink_found`, the first run of each kind of violation is then shrunk. Returns a Summary."""
    own = workdir is None
    workdir = workdir or tempfile.mkdtemp(prefix="ota-statem-")
    session = Session(workdir)
    t0 = time.time()
    try:
        col = Collector()
        machine_test(col, session, runs, steps, seed, interpreter=interpreter)()
        run_seconds = time.time() - t0
        shrunk = {}
        for tag in sorted(col.found) if shrink_found else ():
            if progress:
                progress("shrinking %s" % tag)
            found = shrink(session, col.found[tag][3], tag, interpreter)
            if found is not None:
                shrunk[tag] = found
        return Summary(col, time.time() - t0, run_seconds, shrunk)
    finally:
        session.close()
        if own:
            shutil.rmtree(workdir, ignore_errors=True)

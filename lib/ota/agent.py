# The device agent main.py runs: confirm a new image at boot (self-test, boot attempts), check for
# updates on a schedule, install them, and tell the operator (audit log, status reports).
#
#   import ota.agent
#   a = ota.agent.Agent(self_test=my_checks, connect=wifi_up)
#   a.boot()        # first thing at every boot: confirm the image on probation, or roll back
#   a.run()         # forever: check, install, sleep (jitter, backoff), a.wake() checks now
#   a.check_now(source=..., verify=..., secure=..., reboot=False)   # one run, settings overridden
import machine

from . import audit, bootstate, clock, config, ledger, otadata, slot
from .compat import c_heap_largest, collect, mem_free, sleep_ms
from .errors import OTAError

APP_JOURNAL = "ota-app.journal"  # ota.apptree.JOURNAL: app bundle code is loaded only where it exists

# Reasons that are the network's fault: retried with backoff. Everything else is a refusal.
_TRANSIENT = ("source_error", "truncated", "timeout", "stalled", "connect", "network", "tls", "dns",
              "bad_response", "http_500", "http_502", "http_503", "http_504", "http_429", "not_found",
              "http_404", "flash_error", "out_of_memory", "internal_error", "clock_unset", "artifact_held")

# A new image's server check (part of its self-test) is tried this many times, 1 s then 2 s apart,
# when it fails for the network's reasons: one dropped connection must not roll back a good release.
SERVER_CHECK_TRIES = 3
# Boots of a new image that could not judge it (no clock: NTP unreachable) before it is rolled back
# anyway, as a network failure (not counted against the release).
UNDECIDED_BOOTS = 3


def _time_box(fetcher):
    # While the probation watchdog runs (ota.probation), the server check must end before it
    # fires: cut off by it, the check would pass for the release's own failure (a reset), where a
    # network too slow to answer is excused (see _rollback).
    probation = _probation()
    left = probation.time_left() if probation is not None else None
    if left is not None:
        from .compat import ticks_add, ticks_ms

        fetcher.deadline = ticks_add(ticks_ms(), left if left > 0 else 0)


def _probation():
    # ota.probation when boot.py loaded it (it armed the watchdog), else None: never loaded here
    import sys

    return sys.modules.get("ota.probation")


def _time_for(fetcher, ms):
    # Whether a wait of ms leaves time before the fetcher's deadline (see _time_box).
    if fetcher.deadline is None:
        return True
    from .compat import ticks_diff, ticks_ms

    return ticks_diff(fetcher.deadline, ticks_ms()) > ms


def _transient(reason):
    return reason in _TRANSIENT or reason.startswith("http_5")


def _device_id():
    import binascii

    return binascii.hexlify(machine.unique_id()).decode()


def _flashed_version():
    # A board flashed by cable has no record of its release: reports name the version its app
    # descriptor states, as ota.status() does (ledger.running_version). Never raises (reports).
    try:
        run = slot.running()
        return ledger.running_version(run, slot.descriptor(run, bytearray(slot.DESCRIPTOR_END)))
    except Exception:
        return None


class Agent:
    def __init__(self, config_path=config.PATH, self_test=None, connect=None, power_ok=None, network_saved=None,
                 progress=None):
        """self_test(): your checks, truthy when the firmware works. connect(): bring the network
        up (truthy when connected). power_ok(): truthy when there is energy for an update now.
        network_saved(): raises OTAError when what connect() needs after a reset is not saved
        (ota.wifi.saved): nothing is installed then. progress(done, total): during a download."""
        self.config_path = config_path
        self.config_error = None
        self.cfg = dict(config.DEFAULTS)
        self._load_settings()
        self.self_test = self_test
        self.connect = connect
        self.power_ok = power_ok
        self.network_saved = network_saved
        self.progress = progress
        self.failures = 0
        self.retry_after = None
        self.wake_pending = False
        self._http = None  # (settings it was made for, HttpFetcher): see _fetcher

    def _load_settings(self):
        # Read at every check, so a change made elsewhere (a key revoked by another agent,
        # ota.config from the REPL) is in force at once. Unreadable settings do not stop the agent:
        # the image on probation is still judged (and fails), checks are refused as bad_config.
        try:
            self.cfg = config.load(self.config_path)
            self.config_error = None
        except OTAError as e:
            self.config_error = e
            print("ota: %s" % e)

    # --- reports

    def log(self, event, **fields):
        """One line in the audit log (never raises)."""
        audit.append(self.cfg["log"], self.cfg["log_max"], event, **fields)

    def report(self, event, **fields):
        """Audit log line, then a best-effort POST to report_url: never raises, never blocks long."""
        self.log(event, **fields)
        url = self.cfg["report_url"]
        if not url:
            return
        import json

        doc = {"device_id": self.cfg["device_id"] or _device_id(), "event": event,
               "running_version": self._running_version() or _flashed_version(), "channel": self.cfg["channel"],
               "time": audit.trusted_time()}
        for k in fields:
            doc[k] = fields[k]
        try:
            clock.ensure(self.cfg["ntp"])  # TLS needs the date (a report may be the first connection)
            f = self._fetcher(self.cfg, timeout=5000)
            f.post_json(url, json.dumps(doc).encode(), 512)
        except Exception as e:  # best effort: a report must never stop an update or a rollback
            print("ota: report not sent: %r" % (e,))

    def hang_up(self):
        """Close the connection kept open between the requests of a check and its reports (a
        socket and TLS buffers): at the end of each check and of boot()."""
        if self._http is not None:
            self._http[1].close()

    def _running_version(self):
        return ledger.running_version()

    # --- the pieces of a check

    def _fetcher(self, cfg, timeout=15000):
        from .compat import fs
        from .http import HttpFetcher

        def read(name):
            if not name:
                return None
            try:
                with fs.open(name, "rb") as f:
                    return f.read()
            except OSError:
                raise OTAError("bad_config", "cannot read %s from the filesystem" % name)

        ca = read(cfg["ca"]) if cfg["secure"] or cfg["source"].startswith("https:") else None
        made_for = (ca, read(cfg["client_cert"]), read(cfg["client_key"]), not cfg["secure"])
        # One fetcher (and so one TLS context, a 3 KB block) for the agent's life while the
        # settings stay: a new one per check and per report fragmented the heap (MemoryError in
        # `ota-tool demo` under MicroPython at 160-172k).
        if self._http is None or self._http[0] != made_for:
            self.hang_up()
            self._http = None  # the old context goes before the new one is made
            self._http = (made_for, HttpFetcher(ca=ca, cert=made_for[1], key=made_for[2], allow_http=made_for[3]))
        f = self._http[1]
        f.connect_timeout = timeout
        return f

    def _trust(self, cfg):
        from .trust import from_settings

        if not cfg["keys"]:
            raise OTAError("no_keys", "no trusted keys in %s: ota.config.key('add', name, public_key)" % self.config_path)
        return from_settings(cfg)

    def _rotate_keys(self, cfg, fetcher, trust):
        """Apply a newer signed key list (keys.json next to the manifest), signed by the keys
        trusted now. Returns the trust to use. A missing list is normal; a bad one is reported
        and ignored: the current keys stay."""
        from .fetch import fetch_bytes, resolve
        from .manifest import load_keys

        url = cfg["keys_url"] or resolve(cfg["source"], "keys.json")
        try:
            doc = load_keys(fetch_bytes(fetcher, url, 4096), trust)
            if doc["version"] <= (cfg["keys_version"] or 0):
                return trust  # the one we have (or a replay of an older one)
            new = trust.updated(doc)  # the whole list is validated before it replaces the trust in force
            keys = {}
            for k in doc["keys"]:
                keys[k["name"]] = k["key"]
            saved = config.load(self.config_path)
            saved["keys"] = keys
            saved["key_threshold"] = new.threshold
            saved["revoked"] = sorted(new.revoked)
            saved["keys_version"] = doc["version"]
            config.save(saved, self.config_path)  # atomic: old keys or new keys, never a mix
        except OTAError as e:  # a list that would not do is reported and ignored: the current keys stay
            if e.reason not in ("http_404", "http_403", "not_found"):  # S3 answers 403 without ListBucket
                self.report("refused", reason=e.reason, message=("key list: " + e.message)[:200])
            return trust
        for k in ("keys", "key_threshold", "revoked", "keys_version"):
            self.cfg[k] = cfg[k] = saved[k]
        self.log("keys_rotated", message="key list version %d: %d keys" % (doc["version"], len(keys)))
        return new

    def _facts(self, cfg):
        facts = {"channel": cfg["channel"], "allow_downgrade": cfg["allow_downgrade"],
                 "now": audit.trusted_time(), "device_id": cfg["device_id"] or _device_id()}
        if cfg["board"]:
            facts["board"] = cfg["board"]  # else the running image's (update.running_board)
        return facts

    def _not_now(self, cfg):
        """Why an update must wait (a reason string), or None. Waiting is not a failure."""
        if self.power_ok is not None:
            try:
                if not self.power_ok():
                    return "power"
            except Exception:
                return "power"
        if cfg["min_free_heap"]:
            collect()
            free = mem_free()
            if free is not None and free < cfg["min_free_heap"]:
                return "heap"
        if cfg["min_free_idf_heap"]:
            # TLS buffers and sockets come from the ESP-IDF heap, not the GC heap (two heaps)
            largest = c_heap_largest()
            if largest is not None and largest < cfg["min_free_idf_heap"]:
                return "idf_heap"
        win = cfg["window"]
        if win:
            now = audit.trusted_time()
            if now is None:
                return "clock"  # a window needs a set clock: better late than at the wrong hour
            hour = (now // 3600) % 24
            start, end = win
            inside = start <= hour < end if start <= end else (hour >= start or hour < end)
            if not inside:
                return "window"
        return None

    def check_now(self, reboot=True, **overrides):
        """One update check with the saved settings, `overrides` winning for this run only
        (source=, verify=, secure=, channel=...). Returns the event: "installed",
        "up_to_date", "refused", "failed" or "not_now"."""
        try:
            return self._check_now(reboot, overrides)
        except MemoryError:
            # Heap exhausted (fragmentation next to TLS): this check failed, the next may not.
            # Nothing was made bootable (set_boot comes after the verified image only).
            collect()
            return self._refused(OTAError("out_of_memory", "out of memory during the check (%s bytes free)" % mem_free()))
        except Exception as e:
            # A bug of ours must not end the update loop: the updater has to outlive it to be
            # able to install the fix. (BaseExceptions, e.g. machine.reset(), pass through.)
            collect()
            return self._refused(OTAError("internal_error", "%s: %s" % (type(e).__name__, e)))
        finally:
            self.hang_up()

    def _check_now(self, reboot, overrides):
        from . import update

        self._load_settings()
        self.retry_after = None
        if self.config_error is not None:
            return self._refused(self.config_error)
        cfg = dict(self.cfg)
        for k in overrides:
            cfg[k] = config.check_value(k, overrides[k])
        if not cfg["source"]:
            self.log("failed", reason="no_source")
            print("ota: no update source configured: ota.config.set('source', 'https://.../stable.json')")
            return "failed"
        if not cfg["verify"]:
            print("ota: WARNING: signature verification is turned OFF in %s: any server can install anything" % self.config_path)
            self.log("verification_off")
        why = self._not_now(cfg)
        if why:
            self.log("not_now", reason=why)
            return "not_now"
        event = self._judge_undecided()
        if event is not None:
            return event
        buf, room = update.reserve()
        fetcher = trust = None
        try:
            self.connect is None or self.connect()
            clock.ensure(cfg["ntp"])  # certificate dates: an unset clock (2000) fails every handshake
            fetcher = self._fetcher(cfg)
            if cfg["verify"]:
                trust = self._rotate_keys(cfg, fetcher, self._trust(cfg))
            m = update.check(fetcher, cfg["source"], trust, self._facts(cfg), cfg["verify"])
        except OTAError as e:
            event = self._refused(e, getattr(e, "target_version", None))  # a policy refusal names the release
            if fetcher is not None and event != "failed" and (cfg["app_source"] or cfg["config_source"]):
                trust = buf = room = None  # each document verifies with its own; the blocks are the firmware's
                return self._check_bundles(cfg, fetcher, reboot) or event
            return event
        refusal = self._network_unsaved()
        if refusal is not None:
            return self._refused(refusal, m.version)
        app = None
        if m.app is not None or _has_app():
            # The app this firmware needs is staged first (switched at the firmware's first boot);
            # a firmware the installed app does not support is refused.
            from . import bundle

            try:
                app = bundle.for_firmware(fetcher, cfg["source"], m, trust, cfg["verify"])
            except OTAError as e:
                return self._refused(e, m.version)
        m = update.Release(m)
        trust = None
        update.forget_verifier()
        if app is not None:
            url, b, fw, planned = app
            app = None
            try:
                bundle.stage(fetcher, url, b, fw, planned=planned)
            except OTAError as e:
                return self._refused(e, m.version)
        self.report("downloading", target_version=m.version, manifest_sha256=_hex(m.sha256))
        from .compat import ticks_diff, ticks_ms

        t0 = ticks_ms()
        try:
            r = update.install_release(fetcher, cfg["source"], m, progress=self.progress, buf=buf, room=room)
        except OTAError as e:
            return self._refused(e, m.version)
        self.failures = 0
        self.report("installed", target_version=m.version, bytes=r["downloaded"],
                    duration_ms=ticks_diff(ticks_ms(), t0), message=r["artifact"])
        if reboot:
            machine.reset()
        return "installed"

    def _check_bundles(self, cfg, fetcher, reboot):
        """The app and config documents (app_source, config_source): a new one is staged, switched
        to, and booted (reset) for its self-test. Returns the event, or None when up to date."""
        from . import apptree, update

        for key, doc_type in (("app_source", "app"), ("config_source", "config")):
            if not cfg[key]:
                continue
            try:
                b = self._fetch_document(cfg, fetcher, cfg[key], doc_type)
                from . import bundle

                bundle.check(b, apptree.firmware_version(), cfg["channel"], cfg["allow_downgrade"])
                planned = bundle.plan(b)
                update.forget_verifier()  # as for firmware: the heap goes to the downloads
                refusal = self._network_unsaved()
                if refusal is not None:
                    raise refusal
                n = bundle.stage(fetcher, cfg[key], b, planned=planned)
                apptree.switch()
            except OTAError as e:
                if e.reason == "up_to_date":
                    continue
                return self._refused(e)
            self.failures = 0
            self.report("installed", app=b.type, app_version=b.version, bytes=n["bytes"],
                        message="%s %s: %d files downloaded, %d copied, %d carried over" % (
                            b.type, b.version, n["downloaded"], n["copied"], n["carried"]))
            if reboot:
                machine.reset()
            return "installed"
        return None

    def _network_unsaved(self):
        # An install ends in a reset: the network must come up again after it (ota.wifi).
        if self.network_saved is not None:
            try:
                self.network_saved()
            except OTAError as e:
                return e
        return None

    def _fetch_document(self, cfg, fetcher, url, doc_type):
        # A signed app/config document. Its signatures are checked before ota.bundle is loaded, and
        # the signature code leaves the heap before the document is parsed: the peak of a check.
        from . import manifest, update
        from .fetch import fetch_bytes

        blob = fetch_bytes(fetcher, url, manifest.MAX_DOCUMENT + 512)
        if not cfg["verify"]:
            from . import bundle

            return bundle.load_unverified(blob, doc_type)
        sigs, doc = manifest.split(blob)
        collect()
        key_ids = self._trust(cfg).verify(sigs, doc)
        sigs = manifest = None
        update.forget_verifier()
        from . import bundle

        return bundle.from_verified(doc, key_ids, blob, doc_type)

    def _refused(self, e, target=None):
        if e.reason == "up_to_date":
            self.failures = 0
            self.log("up_to_date")
            return "up_to_date"
        transient = _transient(e.reason)
        if transient:
            self.failures += 1
            self.retry_after = e.retry_after
        event = "failed" if transient else "refused"
        self.report(event, target_version=target, reason=e.reason, message=e.message[:200])
        return event

    # --- boot

    def _self_test_ok(self):
        """(ok, why): the user's checks, the network, and the update server answering with a
        manifest that verifies — a firmware that cannot reach its server must not be kept.
        ok is None when the clock cannot be set (no NTP): the server check cannot run, which says
        nothing about the release."""
        from . import update

        try:
            if self.config_error is not None:
                return False, "the settings cannot be read: %s" % self.config_error
            if self.self_test is not None and not self.self_test():
                return False, "self-test failed"
            if self.connect is not None and not self.connect():
                return False, "network does not come up"
            tries = SERVER_CHECK_TRIES if self.cfg["source"] else 0
            if tries:
                try:
                    clock.ensure(self.cfg["ntp"])
                except OTAError as e:
                    return None, str(e)
            fetcher = self._fetcher(self.cfg) if tries else None
            if fetcher is not None:
                _time_box(fetcher)
            try:
                for i in range(tries):
                    try:
                        update.fetch_verified(fetcher, self.cfg["source"],
                                              self._trust(self.cfg) if self.cfg["verify"] else None)
                        break
                    except OTAError as e:
                        if i + 1 == tries or not _transient(e.reason) or not _time_for(fetcher, 1000 << i):
                            raise
                        sleep_ms(1000 << i)
            finally:
                if fetcher is not None:
                    fetcher.deadline = None
        except OTAError as e:
            return False, "update server check failed: %s" % e
        except Exception as e:
            return False, "self-test raised %r" % (e,)
        return True, None

    def _rollback(self, why, own=True):
        # own: the firmware failed by itself (its self-test, repeated crashes), not the network:
        # only that counts against the release (policy "known_bad"); a network attacker must not
        # be able to make a device refuse a good release for good.
        rec = ledger.running()
        target = rec.get("version") if rec else None
        ledger.report_later({"event": "rolled_back", "reason": why[:120], "target_version": target})
        self.log("rolled_back", reason=why[:120], target_version=target)
        try:
            bootstate.rollback(why, own)  # judges the image before set_boot; the boot counter of
            # another slot is dropped at the next boot (a cut before the reset retries the rollback)
        except OTAError as e:
            # Nothing it may go back to (no valid previous image, or one below the anti-rollback
            # counter): the image that runs is the best this board has. Keep it, and say so.
            ledger.take_report()
            self.report("rollback_refused", reason=e.reason, message=("%s; kept after: %s" % (e.message, why))[:200])
            return False
        return True

    def _send_pending_report(self):
        rep = ledger.take_report()
        if rep is not None:
            ev = rep.pop("event", "rolled_back")
            self.report(ev, **rep)

    def boot(self):
        """Confirm or roll back the image that runs, and the app bundle (ota.bundle) with it.
        Returns "confirmed", "already_valid", "app_confirmed" (an app update alone) or
        "unconfirmed" (the clock could not be set for the server check: judged next boot); does not
        return when it rolls back (machine.reset()). Call it before importing the app: it first
        finishes or undoes an interrupted app switch (self.app_state: ota.apptree.recover(); do
        not import the app when it is "unsupported" or "error")."""
        try:
            return self._boot()
        finally:
            self.hang_up()  # the app runs next: no connection held open for it

    def _boot(self):
        app = None
        self.app_state = "none"
        if _has_app():
            from . import apptree as app

            try:
                self.app_state = app.recover(self.cfg["boot_retry_limit"])
                if self.app_state == "rolled_back":  # at boot: counted out, or an interrupted one
                    j = app.journal()
                    why = j.get("why") or "rolled back"
                    ledger.report_later({"event": "rolled_back", "reason": why, "app_version": j.get("rv")})
                    self.log("rolled_back", reason=why, app_version=j.get("rv"))
            except Exception as e:  # the updater must keep running to repair it: the app must not
                print("ota: app tree recovery failed: %r" % (e,))
                self.app_state = "error"
                app = None
        limit = self.cfg["boot_retry_limit"]
        run = slot.running()
        st = bootstate.running_state(run)
        probe = ledger.probe(run)
        fresh = st in (otadata.PENDING_VERIFY, otadata.NEW, otadata.UNDEFINED)
        if fresh and (limit > 1 or st != otadata.PENDING_VERIFY):
            # Take over from ESP-IDF's single-shot rollback (one brownout would roll back a good
            # image), or stand in for it (NEW or UNDEFINED at run time: a bootloader without app
            # rollback boots this image again after any reset): count boots ourselves. The counter
            # is written before the bootloader's rollback is cancelled, so a power cut between the
            # two still rolls back.
            if probe is None:
                probe = {"slot": slot.label(run), "tries": 0}
                ledger.set_probe(probe)
            try:
                import esp32

                esp32.Partition.mark_app_valid_cancel_rollback()
            except OSError:
                pass
            fresh = False
        if probe is None and not fresh:
            rec = ledger.running()
            if rec is not None and rec["judged"] and not rec["ok"]:
                # It failed here and still runs: its rollback was cut short (a power cut after it
                # was judged). Finish it; if there is nothing to go back to, keep it on probation.
                if not self._rollback("its rollback was interrupted", own=False):
                    return self._keep_unconfirmed(run, None, "its rollback was interrupted")
            self._settle(run, True)
            if app is not None and app.settle() == "swapped" and app.pending():
                return self._confirm_app(app)
            self._send_pending_report()
            return "already_valid"
        self._settle(run, False)
        if probe is not None:
            probe["tries"] = probe.get("tries", 0) + 1
            ledger.set_probe(probe)
            if probe["tries"] > limit and self._rollback("no successful self-test in %d boots" % limit):
                return None  # not reached: the rollback resets
        ok, why = self._self_test_ok()
        if ok is None:
            probe = self._undecided(run, probe, why)
            if probe["undecided"] <= UNDECIDED_BOOTS:
                return "unconfirmed"
            ok, why = False, "not judged in %d boots: %s" % (UNDECIDED_BOOTS, why)
        if not ok and not self._rollback(why, why.startswith("self-test")):
            return self._keep_unconfirmed(run, probe, why)
        if probe is not None:
            ledger.set_probe(None)
            self._settle(run, True)
            result = "confirmed"
        else:
            result = bootstate.confirm()
        if app is not None and app.settle() == "swapped" and app.pending():
            app.confirm()  # switched before this firmware came: the self-test covered it too
        self._send_pending_report()
        self.report("confirmed", running_version=self._running_version(), boot_attempts=probe["tries"] if probe else 1)
        return result

    def _settle(self, run, confirmed):
        # The ledger follows what the bootloader did; a new image it refused to load is reported.
        if bootstate.reconcile(run, confirmed, at_boot=True) == "refused":
            msg = "the bootloader refused to load the new image: %s boots again" % slot.label(run)
            ledger.report_later({"event": "rolled_back", "reason": "bootloader_refused", "message": msg})

    def _undecided(self, run, probe, why):
        # Not judged this boot (clock_unset): neither confirmed nor rolled back, and the boot does
        # not count as a failed try. The bootloader's single-shot rollback would undo a good release
        # at the next reset for it: the agent's boot counter takes over (as with boot_retry_limit
        # > 1) and the next boot judges again, at most UNDECIDED_BOOTS times. Returns the counter.
        if probe is None:
            probe = {"slot": slot.label(run), "tries": 0, "undecided": 1}
            ledger.set_probe(probe)
            try:
                import esp32

                esp32.Partition.mark_app_valid_cancel_rollback()
            except OSError:
                pass
        else:
            probe["tries"] -= 1
            probe["undecided"] = probe.get("undecided", 0) + 1
            ledger.set_probe(probe)
        self.log("unconfirmed", reason=why[:120])
        return probe

    def _judge_undecided(self):
        # An image its boot could not judge (no clock then) is judged at the first check that can:
        # nothing may install over its way back before (install.check_can_install), and a board
        # that does not reboot for months must not stay without updates. None: go on with the check.
        run = slot.running()
        probe = ledger.probe(run)
        if probe is None or not probe.get("undecided"):
            return None
        probation = _probation()
        if probation is not None:
            probation.rearm()  # the time box of the boot is long spent: this judgement gets a whole one
        ok, why = self._self_test_ok()
        if ok is None:
            return self._refused(OTAError("clock_unset", "the running image is not judged yet: %s" % why))
        if not ok:
            if not self._rollback(why, why.startswith("self-test")):  # resets when it rolls back
                probe["undecided"] = 0  # judged: kept only because it has nothing to go back to
                ledger.set_probe(probe)
                self._keep_unconfirmed(run, probe, why)
                return "failed"
            return None  # not reached
        ledger.set_probe(None)
        self._settle(run, True)
        if probation is not None:
            probation.end()  # confirmed: as main.py does after boot()
        self.report("confirmed", running_version=self._running_version(), boot_attempts=probe["tries"])
        return None

    def _keep_unconfirmed(self, run, probe, why):
        # It failed and there is nothing it may go back to: it keeps running, on probation (judged
        # at every boot, confirmed once its self-test passes: never before, so a failed release
        # never raises the anti-rollback counter). The bootloader's own rollback is cancelled, or
        # its next reset would leave the board with no image it may boot.
        if probe is None:
            ledger.set_probe({"slot": slot.label(run), "tries": 0})
            try:
                import esp32

                esp32.Partition.mark_app_valid_cancel_rollback()
            except OSError:
                pass
        self.log("unconfirmed", reason=why[:120])
        return "unconfirmed"

    def _confirm_app(self, app):
        # An app update alone: the same self-test; a failure restores the previous tree and resets
        # (the failed app may be imported already).
        version = app.journal().get("v")
        ok, why = self._self_test_ok()
        if not ok:
            ledger.report_later({"event": "rolled_back", "reason": why[:120], "app_version": version})
            self.log("rolled_back", reason=why[:120], app_version=version)
            app.rollback(why, failed=why.startswith("self-test"))  # network faults do not count
            machine.reset()
        app.confirm()
        self._send_pending_report()
        self.report("confirmed", app_version=version, message="app %s" % version)
        return "app_confirmed"

    # --- the schedule

    def wake(self):
        """Check at the next opportunity (a push notification or a button calls this)."""
        self.wake_pending = True

    def run(self, max_checks=None):
        """Check for updates forever (or max_checks times), sleeping between checks."""
        from .schedule import Timer, next_delay

        n = 0
        while max_checks is None or n < max_checks:
            n += 1
            self.wake_pending = False
            event = self.check_now()
            if max_checks is not None and n >= max_checks:
                return event
            t = Timer(next_delay(self.cfg, self.failures if event == "failed" else 0, self.retry_after))
            while t.remaining() and not self.wake_pending:
                sleep_ms(min(t.chunk(), 1000))
        return None


def _has_app():
    from .compat import fs

    return fs.exists(APP_JOURNAL)


def _hex(b):
    import binascii

    return binascii.hexlify(b).decode()

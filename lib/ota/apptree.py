# The boot side of app bundles: the journal, the atomic switch between app trees, confirmation,
# rollback, and recover(), which runs at every boot before the app is imported. Formats, layout
# and the state machine are described in ota/bundle.py (the download side); this module stays
# small because a device loads it at every boot: no document parsing, no signatures, no network.
#
# Journal (JOURNAL, JSON, replaced atomically by new file + rename):
#   root     the app root ("app")            phase  staging|staged|swapping|swapped|rolling_back|confirmed
#   m, type  SHA-256 (hex) and type of the document staged / switched to   v, ov  versions of R, R.old
#   req, oreq, nreq  firmware requirements of the trees R, R.old, R.new (lists of ">=1.2.0,<2.0.0")
#   docs, odocs, ndocs  {type: SHA-256 hex} of the documents the trees R, R.old, R.new were built from
#   fw, fwv  firmware manifest SHA-256 (hex) and version a staged tree waits for; slot: where it ran
#   old      R existed when the switch began     tries  boots of an unbound app on probation
#   bad      [m, n]: the document whose tree failed its self-test, n times
#   why, rv  after a rollback: its reason, and the version it went back from
import json

from .compat import fs

JOURNAL = "ota-app.journal"
_MAX_JOURNAL = 4096  # about 1.6 KB at most (every field at its longest)


def journal():
    """The journal as a dict ({} when there is none: no app bundle on this device)."""
    try:
        n = fs.stat(JOURNAL)
        with fs.open(JOURNAL, "rb") as f:
            j = json.loads(f.read(min(n, _MAX_JOURNAL)))
    except (OSError, ValueError):
        return {}
    return j if isinstance(j, dict) else {}


def set_journal(j):
    data = json.dumps(j)
    if len(data) > _MAX_JOURNAL:
        raise ValueError("app journal too large")  # never: its fields are bounded
    tmp = JOURNAL + ".tmp"
    with fs.open(tmp, "w") as f:
        f.write(data)
    fs.rename(tmp, JOURNAL)


def names(root):
    """(R, R.new, R.old, R.del)."""
    return root, root + ".new", root + ".old", root + ".del"


# --- filesystem helpers (littlefs renames are atomic; nothing here recurses) ---------------------

def isdir(path):
    try:
        fs.listdir(path)
        return True
    except OSError:
        return False


def clear(path):
    """Delete the tree at `path`: files, then emptied folders."""
    if not isdir(path):
        return
    stack = [path]
    while stack:
        top = stack[-1]
        found = fs.listdir(top)
        if not found:
            fs.rmdir(top)
            stack.pop()
            continue
        for n in found:
            p = top + "/" + n
            if isdir(p):
                stack.append(p)
            else:
                fs.remove(p)


def trash(path, junk):
    """Move a tree aside in one rename; deleting it (clear(junk)) is then garbage collection."""
    clear(junk)
    fs.rename(path, junk)


# --- firmware versions and requirements -----------------------------------------------------------

def _vkey(text):
    # SemVer precedence (ota.version); None if malformed.
    from .errors import OTAError
    from .version import key

    try:
        return key(text)
    except OTAError:
        return None


def satisfied(spec, version):
    """Whether firmware `version` meets `spec` (">=1.2.0,<2.0.0"; None: anything). An unknown
    version meets no requirement."""
    if spec is None:
        return True
    v = _vkey(version) if version else None
    if v is None:
        return False
    for clause in spec.split(","):
        n = 2 if clause[1:2] == "=" else 1
        op, want = clause[:n], _vkey(clause[n:])
        if want is None or not (v >= want if op == ">=" else v <= want if op == "<=" else v == want if op == "==" else
                                v > want if op == ">" else v < want if op == "<" else False):
            return False
    return True


def supports(reqs, version):
    for spec in reqs or ():
        if not satisfied(spec, version):
            return False
    return True


def firmware_version():
    """The signed version of the running firmware (ota.ledger's record of the slot that booted,
    confirmed or on probation), or None when unknown."""
    from . import ledger

    rec = ledger.running()
    return rec.get("version") if rec else None


def _runs(fw):
    # Whether the firmware a staged tree waits for (manifest SHA-256 hex; None: any) runs now.
    if fw is None:
        return True
    from . import ledger

    rec = ledger.running()
    return rec is not None and rec.get("manifest_sha256") == fw


# --- switch, confirm, rollback --------------------------------------------------------------------

def switch():
    """Make the staged tree the app: R.old -> R.del, R -> R.old, R.new -> R, one rename each.
    The new tree is then on probation until confirm() or rollback()."""
    from .errors import OTAError

    j = journal()
    if j.get("phase") != "staged":
        raise OTAError("not_staged", "no staged app to switch to")
    j["phase"] = "swapping"
    j["old"] = isdir(j["root"])
    set_journal(j)
    _finish_swap(j)


def _finish_swap(j):
    # The directories that exist say how far an interrupted switch got.
    R, N, O, D = names(j["root"])
    if isdir(N):
        if j.get("old"):
            if isdir(R):
                if isdir(O):
                    trash(O, D)
                fs.rename(R, O)
        elif isdir(O):
            trash(O, D)  # not a tree to restore: R did not exist when the switch began
        fs.rename(N, R)
    j["phase"] = "swapped"
    j["tries"] = 0
    j["oreq"], j["ov"], j["odocs"] = (j.get("req"), j.pop("pv", None), j.get("docs")) if j.get("old") else (
        None, None, None)
    j["req"], j["docs"] = j.pop("nreq", None), j.pop("ndocs", None)
    if j.get("fw"):
        from . import slot

        j["slot"] = slot.label(slot.running())
    set_journal(j)
    clear(D)


def confirm():
    """The app on probation passed its self-test: keep it (R.old stays for a later rollback)."""
    j = journal()
    if j.get("phase") != "swapped":
        return False
    nj = {"root": j["root"], "phase": "confirmed", "v": j.get("v"), "req": j.get("req"), "docs": j.get("docs"),
          "ov": j.get("ov"), "oreq": j.get("oreq"), "odocs": j.get("odocs")}
    if j.get("bad") and j["bad"][0] != j.get("m"):
        nj["bad"] = j["bad"]
    set_journal(nj)
    return True


def rollback(reason="requested", failed=False):
    """Restore the previous tree (R.old) now. `failed`: the new tree failed its self-test (it is
    counted against a reinstall). The caller resets if the app was imported already."""
    from .errors import OTAError

    j = journal()
    if j.get("phase") in ("swapping", "rolling_back", None):
        raise OTAError("no_rollback_target", "no app tree to go back from (boot first)")
    R, N, O, D = names(j["root"])
    if j["phase"] != "swapped":
        if not isdir(O):
            raise OTAError("no_rollback_target", "there is no previous app tree to go back to")
        j = {"root": j["root"], "phase": "confirmed", "v": j.get("v"), "req": j.get("req"), "ov": j.get("ov"),
             "oreq": j.get("oreq"), "odocs": j.get("odocs"), "bad": j.get("bad"), "old": True}
    print("ota: app %s rolled back: %s" % (j.get("v"), reason))
    if failed and j.get("m"):
        bad = j.get("bad")
        j["bad"] = [j["m"], bad[1] + 1 if bad and bad[0] == j["m"] else 1]
    j["phase"] = "rolling_back"
    j["why"] = reason[:80]
    set_journal(j)
    _finish_rollback(j)


def _finish_rollback(j):
    R, N, O, D = names(j["root"])
    if j.get("old"):
        if isdir(O):
            if isdir(R):
                trash(R, D)
            fs.rename(O, R)
    elif isdir(R):
        trash(R, D)
    nj = {"root": j["root"], "phase": "confirmed", "v": j.get("ov"), "req": j.get("oreq"), "docs": j.get("odocs")}
    if j.get("bad"):
        nj["bad"] = j["bad"]
    if j.get("why"):
        nj["why"], nj["rv"] = j["why"], j.get("v")  # what went back, and why: for the agent's report
    set_journal(nj)
    clear(D)


def settle():
    """An app switched together with a firmware follows it: restored when another firmware runs
    (it went back), confirmed once that firmware is. Returns the phase after."""
    j = journal()
    if j.get("phase") != "swapped" or not j.get("fw"):
        return j.get("phase")
    from . import ledger, slot

    run = slot.label(slot.running())
    if run != j.get("slot"):
        rollback("the firmware it came with (%s) is not running" % j.get("fwv"))
        return "rolled_back"
    rec = ledger.running()
    if rec is not None and not rec.get("ok"):
        return "swapped"  # the firmware is still on probation: so is its app
    confirm()
    return "confirmed"


def pending():
    """Whether an app update alone (no firmware with it) waits for its self-test."""
    j = journal()
    return j.get("phase") == "swapped" and not j.get("fw")


def on_probation():
    """Whether a tree switched to (or being switched to) waits for its confirmation: boot.py arms
    the probation watchdog for it (ota.probation), as for a firmware."""
    return journal().get("phase") in ("swapping", "swapped")


def recover(retry_limit=1):
    """At every boot, BEFORE the app is imported: finish an interrupted switch or rollback, switch
    to a staged tree once its firmware runs, count the boots of an app on probation, and keep an
    app off a firmware it does not support. Returns "none" (no app bundle here), "ok", "pending"
    (on probation: self-test it), "rolled_back" or "unsupported" (do not import the app)."""
    j = journal()
    phase = j.get("phase")
    if phase is None:
        return "none"
    result = "ok"
    R, N, O, D = names(j["root"])
    if phase == "rolling_back":
        _finish_rollback(j)
        result = "rolled_back"
    elif phase == "swapping":
        _finish_swap(j)
    elif phase == "staged" and isdir(N) and _runs(j.get("fw")) and supports(j.get("nreq"), firmware_version()):
        switch()
    j = journal()
    if j.get("phase") == "swapped":
        if j.get("fw"):
            if settle() == "rolled_back":
                result = "rolled_back"
        else:
            j["tries"] = j.get("tries", 0) + 1
            set_journal(j)
            if j["tries"] > retry_limit:
                rollback("no successful self-test in %d boots" % retry_limit, failed=True)
                result = "rolled_back"
    clear(D)  # garbage of an interrupted switch or rollback
    j = journal()
    if j.get("phase") == "swapped":
        return "pending"
    fw = firmware_version()
    if fw is not None and isdir(R) and not supports(j.get("req"), fw):
        if isdir(O) and supports(j.get("oreq"), fw):
            rollback("the app does not support firmware %s" % fw)
            return "rolled_back"
        print("ota: the app in /%s does not support firmware %s: not starting it" % (R, fw))
        return "unsupported"
    return result

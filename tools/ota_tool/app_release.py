"""Signed app bundles and configuration documents: a folder of Python files (or one settings file)
in, a repository folder out. The device side, its formats and its limits: lib/ota/bundle.py.

Repository layout (the same folder as firmware releases, served the same way):
    <channel>-app.json        the signed app document (type "app"): ota.json "app_source"
    <channel>-config.json     the signed configuration document (type "config"): "config_source"
    sha256-<16 hex>.file      one file of a bundle, named by the SHA-256 of its bytes
    sha256-<16 hex>.zlib      the same file as a zlib stream (wbits 12), named by the SHA-256 of the
                              stream's own bytes, published with --compress when it is smaller; the
                              document then gives its length and hash ("zsize", "zsha256")
Every artifact, firmware or app, is named by the SHA-256 of its own bytes (ota_tool.release's rule,
which `ota-tool publish` and `verify` check). Files are content-named, so releases share them and a device downloads only the files whose
SHA-256 differs from what it has. They are written first and the document last (atomically).
Every document is parsed by the device's own code (ota.bundle) before it is written, so a bundle
the device would refuse (a traversal, a duplicate path, too many or too large files) is refused
here with the device's words. Symbolic links in the source folder are refused, not followed.
"""
import fnmatch
import hashlib
import json
import os
import time
import zlib

from ota import bundle as device_bundle
from ota import manifest as device_manifest
from ota.errors import OTAError
from ota.trust import Trust

from . import keys
from .errors import ToolError
from .files import write_atomic

WBITS = 12  # the device's inflate window (ota.inflate.WBITS)
SKIP = ("__pycache__", "*.pyc")
DAMAGED = "the release folder is damaged or was changed: release the app again (ota-tool release-app)"  # never packed; nor are names starting with "."


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


def file_name(data, compressed=False):
    from .release import artifact_name

    return artifact_name(data, "zlib" if compressed else "file")


def _device(fn, *args):
    try:
        return fn(*args)
    except OTAError as e:
        raise ToolError(e.message or e.reason, "the device would refuse it too: see lib/ota/bundle.py for the rules")


def collect(src_dir, exclude=()):
    """[(path inside the bundle, host path)] of the files below `src_dir`, sorted. Refuses
    symbolic links and names the device refuses."""
    if not os.path.isdir(src_dir):
        raise ToolError("%s is not a folder" % src_dir, "give the folder of the app's files (app.py and the rest)")
    out = []
    for dirpath, dirnames, names in os.walk(src_dir, followlinks=False):
        rel_dir = os.path.relpath(dirpath, src_dir).replace(os.sep, "/")
        rel_dir = "" if rel_dir == "." else rel_dir + "/"
        for d in list(dirnames):
            if os.path.islink(os.path.join(dirpath, d)):
                raise ToolError("%s%s is a symbolic link: refusing to pack it" % (rel_dir, d),
                                "copy the files into the folder instead")
        dirnames[:] = sorted(d for d in dirnames if not _skipped(rel_dir + d, d, exclude))
        for n in sorted(names):
            rel = rel_dir + n
            if _skipped(rel, n, exclude):
                continue
            full = os.path.join(dirpath, n)
            if os.path.islink(full):
                raise ToolError("%s is a symbolic link: refusing to pack it" % rel, "copy the file into the folder instead")
            if not os.path.isfile(full):
                raise ToolError("%s is not a regular file" % rel, "leave it out with --exclude, or copy a regular file in")
            out.append((rel, full))
    if not out:
        raise ToolError("%s holds no files to pack" % src_dir, "hidden files and __pycache__ are left out: is it the "
                                                               "right folder?")
    return out


def _skipped(rel, name, exclude):
    if name.startswith("."):
        return True
    return any(fnmatch.fnmatch(name, p) for p in SKIP) or any(fnmatch.fnmatch(rel, p) for p in exclude)


def _publish(out_dir, name, data):
    path = os.path.join(out_dir, name)
    if os.path.exists(path):
        with open(path, "rb") as f:
            if f.read() == data:
                return
    write_atomic(path, data)


def build(files, version, signing_keys, out_dir, doc_type="app", root="app", channel="stable", compress=False,
          requires_firmware=None, name=None, created=None, extra=None, replace=None, allow_older=None):
    """Write a signed bundle of `files` [(path, bytes)] into the repository `out_dir`. Returns a
    summary. The document is checked with the device's parser before anything is written.
    replace/allow_older (what `ota-tool release-app` asks; None checks nothing): the rule of
    ota_tool.release.version_guard over the document already published under the same name."""
    from .release import check_file_name, check_name, published, version_guard

    if doc_type not in device_bundle.TYPES:
        raise ToolError("document type must be one of %s" % ", ".join(device_bundle.TYPES), "app or config")
    _device(device_manifest.parse_version, version)
    name = check_file_name(name, "--name") if name else "%s-%s.json" % (check_name(channel), doc_type)
    if replace is not None or allow_older is not None:
        before = published(os.path.join(out_dir, name), doc_type)
        if before is not None:
            version_guard(before, name, version, replace, allow_older, "%s bundle" % doc_type)
    root = root.strip("/")
    _device(device_bundle.check_root, root)
    if requires_firmware:
        _device(device_bundle.requirement, requires_firmware)
    entries = []
    artifacts = {}
    for path, data in sorted(files):
        path = path.replace(os.sep, "/")
        _device(device_bundle.check_path, path, root)
        e = {"path": path, "size": len(data), "sha256": sha256_hex(data)}
        artifacts[file_name(data)] = data
        if compress and data:
            c = zlib.compressobj(9, zlib.DEFLATED, WBITS, 9)
            z = c.compress(data) + c.flush()
            if len(z) < len(data):
                e["zsize"] = len(z)
                e["zsha256"] = sha256_hex(z)
                artifacts[file_name(z, True)] = z
        entries.append(e)
    doc = {"type": doc_type, "version": version, "root": root, "channel": channel, "files": entries,
           "created": int(created if created is not None else time.time())}
    if any("zsize" in e for e in entries):
        doc["wbits"] = WBITS
    if requires_firmware:
        doc["requires"] = {"firmware": requires_firmware}
    if signing_keys:
        doc["key_id"] = keys.key_id(signing_keys[0])
    if extra:
        doc.update(extra)
    blob = keys.sign(doc, signing_keys)
    trust = Trust.from_list([keys.public_bytes(k) for k in signing_keys])
    b = _device(device_bundle.load, blob, trust, doc_type)  # exactly what a device will accept
    os.makedirs(out_dir, exist_ok=True)
    for art, data in artifacts.items():
        _publish(out_dir, art, data)
    write_atomic(os.path.join(out_dir, name), blob)
    return {"manifest": os.path.join(out_dir, name), "type": doc_type, "version": version, "root": root,
            "files": entries, "document_sha256": b.hex, "document_bytes": len(blob),
            "bytes": sum(e["size"] for e in entries),
            "download_bytes": sum(e.get("zsize", e["size"]) for e in entries)}


def build_app(src_dir, version, signing_keys, out_dir, exclude=(), **kw):
    """A bundle of every file below `src_dir` (hidden files and __pycache__ left out)."""
    files = []
    for rel, full in collect(src_dir, exclude):
        with open(full, "rb") as f:
            files.append((rel, f.read()))
    return build(files, version, signing_keys, out_dir, "app", **kw)


def build_config(settings_path, version, signing_keys, out_dir, path=None, **kw):
    """A configuration document: one settings file (a JSON object) at `path` in the app root."""
    data = read_document(settings_path)
    try:
        parsed = json.loads(data)
    except (ValueError, UnicodeError) as e:
        from .filekinds import kind

        raise ToolError("%s is %s, not JSON (%s)" % (settings_path, kind(data[:65536], len(data)), e),
                        "a configuration document carries a JSON object of settings")
    if not isinstance(parsed, dict):
        raise ToolError("%s holds a JSON %s, not an object" % (settings_path, type(parsed).__name__),
                        "write the settings as one object: {\"name\": value, ...}")
    return build([(path or os.path.basename(settings_path), data)], version, signing_keys, out_dir, "config", **kw)


def read_document(path):
    from .files import read_bytes

    return read_bytes(path)


def document_type(blob):
    """The "type" of a signed document (unverified: to pick how to verify it), or None."""
    try:
        doc = device_manifest.split(blob)[1]
        return json.loads(doc).get("type")
    except (OTAError, ValueError, AttributeError):
        return None


def verify(doc_path, public_keys, threshold=1, files_dir=None):
    """Check a bundle document as a device would (same code), and every file it names: present
    next to it, its size and SHA-256, and the zlib stream inflating (with the device's inflate)
    to exactly the signed file. Returns a report; ToolError on the first problem."""
    from ota.inflate import Inflate

    from . import delta

    blob = read_document(doc_path)
    trust = Trust.from_list(public_keys, threshold)
    try:
        b = device_bundle.load(blob, trust)
    except OTAError as e:
        from .release import refusal_hint

        raise ToolError("the document is refused: %s" % e, refusal_hint(e))
    root = files_dir or os.path.dirname(os.path.abspath(doc_path))
    report = {"type": b.type, "version": b.version, "root": b.root, "requires_firmware": b.requires,
              "signed_by": b.key_ids, "document_sha256": b.hex, "files": []}
    for path, size, sha, zsize in b.files:
        name = file_name_for(sha.hex())
        data = _artifact(root, name, path)
        if len(data) != size or hashlib.sha256(data).digest() != sha:
            raise ToolError("%s (%s) does not match its signed size/SHA-256" % (name, path), DAMAGED)
        entry = {"path": path, "size": size, "artifact": name}
        if zsize is not None:
            zname = file_name_for(b.zname[path].hex(), True)
            z = _artifact(root, zname, path)
            if len(z) != zsize or not hashlib.sha256(z).digest().startswith(b.zname[path]):
                raise ToolError("%s (%s) does not match its signed size/SHA-256" % (zname, path), DAMAGED)
            try:
                out = delta.drain(Inflate(delta.BytesSource(z), "zlib", b.wbits, size))
            except OTAError as e:
                raise ToolError("%s (%s) does not inflate: %s" % (zname, path, e), DAMAGED)
            if out != data:
                raise ToolError("%s (%s) does not inflate to the signed file" % (zname, path), DAMAGED)
            entry["zsize"] = zsize
        report["files"].append(entry)
    return report


def file_name_for(sha_hex, compressed=False):
    return "sha256-%s.%s" % (sha_hex[:16], "zlib" if compressed else "file")


def _artifact(root, name, path):
    full = os.path.join(root, name)
    if not os.path.exists(full):
        raise ToolError("%s (%s) is missing next to the document" % (name, path), "copy the whole release folder, or release the app again")
    with open(full, "rb") as f:
        return f.read()


def app_reference(doc_path, repo_dir):
    """The "app" member of a firmware manifest naming the app document at `doc_path` (which must
    be in the release repository `repo_dir`): its URL relative to the firmware manifest, the
    SHA-256 of its document, its version."""
    blob = read_document(doc_path)
    if document_type(blob) != "app":
        raise ToolError("%s is not a signed app document" % doc_path, "make one with ota-tool release-app")
    doc = device_manifest.split(blob)[1]
    b = _device(device_bundle._from_doc, doc, [], None, "app")
    rel = os.path.relpath(os.path.abspath(doc_path), os.path.abspath(repo_dir)).replace(os.sep, "/")
    if rel.startswith(".."):
        raise ToolError("%s is not inside the repository %s" % (doc_path, repo_dir),
                        "release the app into the same --out folder")
    return {"url": rel, "sha256": b.hex, "version": b.version}

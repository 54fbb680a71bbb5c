"""Signed releases: an app image in, a repository folder out.

A repository is a static folder (served by `ota-tool serve`, a CDN or an S3 bucket):
    <channel>.json                    the signed manifest devices poll (the only mutable file)
    sha256-<first 16 hex>.bin         the app image (raw artifact), named by its content
    sha256-<...>.zlib / .patch        compressed image / delta patches, also content-named
Artifacts are written first and the manifest last (atomically), so a device never sees a
manifest whose artifacts are missing. Everything is checked with the device's own code
(ota.appimage, ota.manifest, ota.inflate, ota.delta) and with esptool's image parser.
"""
import binascii
import hashlib
import json
import os
import re
import time
import zlib

from ota import appimage, manifest as device_manifest
from ota import version as device_version
from ota.errors import OTAError
from ota.trust import Trust

from . import images, keys
from .errors import ToolError
from .files import write_atomic

CHIP_NAMES = {v: k for k, v in device_manifest.CHIP_IDS.items()}


def sha256_hex(data):
    return hashlib.sha256(data).hexdigest()


# The one content-addressing rule of every artifact (firmware images, zlib streams, delta patches,
# app bundle files and their zlib streams): named by the SHA-256 of its own bytes. `ota-tool
# verify` and `ota-tool publish` check it.
ARTIFACT_RE = re.compile(r"^sha256-([0-9a-f]{16})\.[A-Za-z0-9]{1,16}$")


def artifact_name(data, ext):
    return "sha256-%s.%s" % (sha256_hex(data)[:16], ext)


def named_by_content(name, sha_hex):
    """Whether the file name `name` follows the rule for content whose SHA-256 is `sha_hex`."""
    m = ARTIFACT_RE.match(name)
    return m is not None and sha_hex.startswith(m.group(1))


APP_HINT = "build output: use micropython.bin (the app), not firmware.bin (or --extract-app) nor an ELF"


def check_image(data):
    """Refuse anything that is not a valid app image, with the device's own words; return the chip name."""
    if len(data) < appimage.PROLOGUE_LEN:
        raise ToolError("the file is too short to be an ESP32 app image (%d bytes)" % len(data), APP_HINT)
    try:
        _, chip_id, _ = appimage.check_header(data[:appimage.PROLOGUE_LEN], None)
        check = appimage.ImageCheck(len(data), chip_id)
        check.feed(memoryview(data))
        check.finish()
    except OTAError as e:
        hint = {"not_app_image": APP_HINT,
                "bad_load_address": "devices would refuse it before set_boot (lib/ota/memmap.py has ESP-IDF's rules): "
                                    "check the build's linker script and memory settings"}.get(
            e.reason, "the image is damaged, or not a finished build: build it again")
        raise ToolError("not a valid app image: %s" % e.message, hint)
    chip = CHIP_NAMES.get(chip_id)
    if chip is None:
        raise ToolError("image is for an unknown chip id %d" % chip_id, "build it for an ESP32-family chip")
    if chip in ("esp32", "esp32s2", "esp32s3", "esp32c3"):
        _, problems = images.parse(data, chip)
        if problems:
            raise ToolError("esptool finds the image invalid: %s" % "; ".join(problems),
                            "the image is damaged, or not a finished build: build it again")
    return chip


def _write_artifact(out_dir, data, ext, pending=None):
    # pending: a list collecting (path, data) to write once the manifest is known to be good
    name = artifact_name(data, ext)
    path = os.path.join(out_dir, name)
    if pending is not None:
        pending.append((path, data))
    elif not (os.path.exists(path) and os.path.getsize(path) == len(data)):
        write_atomic(path, data)
    return name


def _write_pending(pending):
    for path, data in pending:
        if not (os.path.exists(path) and os.path.getsize(path) == len(data)):
            write_atomic(path, data)


def check_signed(blob, signing_keys, load=None):
    """Refuse to publish a signed document the device's own parser (ota.manifest) refuses: read
    as a device that trusts exactly these signers reads it. `load`: the parser (default: the
    firmware manifest's)."""
    trust = Trust.from_list([keys.public_bytes(k) for k in signing_keys], len(signing_keys))
    try:
        (load or device_manifest.load)(blob, trust)
    except OTAError as e:
        raise ToolError("devices would refuse this release (%s): %s; nothing was written" % (e.reason, e.message),
                        "this is a bug in ota-tool if the command line was accepted: report it with the command")


def zlib_artifact(data, wbits):
    c = zlib.compressobj(9, zlib.DEFLATED, wbits, 9)
    return c.compress(data) + c.flush()


def check_name(name, option="--channel"):
    """A channel or document name: one file in the repository folder, and a URL path segment a
    device accepts (letters, digits, ".", "_", "-"; not starting with "." or "-"). ToolError else."""
    if not (isinstance(name, str) and 0 < len(name) <= 64 and re.match(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$", name)):
        raise ToolError("%s %r is not a name: up to 64 letters, digits, '.', '_' or '-', not starting with '.' or '-'"
                        % (option, name), "the name of a file in the repository folder, e.g. stable or beta-2")
    return name


def check_file_name(name, option):
    """A document's file name in the repository, perhaps in a subfolder: every part a name (as
    check_name), so it never leaves the folder."""
    for part in str(name).split("/"):
        check_name(part, "%s %r:" % (option, name))
    return name


def version_guard(before, name, version, replace, allow_older, what="release"):
    """The rule of `ota-tool release` and `release-app` over the document `before` already
    published as `name`: devices take the same version as installed already (a changed one would
    never reach them) and refuse an older one. Returns the old version's key, or None."""
    new_key = device_version.key(version)
    try:
        old_key = device_version.key(before.get("version"))
    except (OTAError, TypeError, AttributeError):
        return None
    if old_key == new_key and not replace:
        if what == "release":
            raise ToolError("%s already publishes release %s: releasing it again would replace what devices see "
                            "(its stage and its artifacts)" % (name, version),
                            "release a new version, or add --replace (the stage and the artifacts that still fit "
                            "the image are kept)")
        raise ToolError("%s already publishes %s %s: devices that installed it would never take the new one "
                        "(the same version)" % (name, what, version),
                        "release a new version, or add --replace (new devices then get this one, devices that "
                        "installed %s keep theirs)" % version)
    if new_key < old_key and not allow_older:
        raise ToolError("%s publishes %s, newer than %s: devices refuse an older %s (downgrade)" % (
            name, before.get("version"), version, what), "release a higher version (the old code under a new number), or add "
                                                          "--allow-older (devices install it only with allow_downgrade)")
    return old_key


def published(path, doc_type="firmware"):
    """The signed document of `doc_type` already at `path` (a dict, signatures not checked: this is
    about what the folder holds), or None when there is none. ToolError if it is something else."""
    try:
        with open(path, "rb") as f:
            blob = f.read(device_manifest.MAX_DOCUMENT + 1024)
    except FileNotFoundError:
        return None
    except NotADirectoryError:
        raise ToolError("%s is not a folder" % os.path.dirname(path), "--out takes the repository folder (made if missing)")
    except OSError as e:
        from .files import os_error

        raise os_error(e, path)
    try:
        import json

        doc = json.loads(device_manifest.split(blob)[1])
    except (OTAError, ValueError, UnicodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("type") != doc_type:
        raise ToolError("%s exists and is not a%s %s %s: refusing to write over it" % (
            path, "n" if doc_type[0] in "aeiou" else "", doc_type, "manifest" if doc_type == "firmware" else "document"),
            "give another --channel or --out")
    return doc


def slot_sizes(layout=None):
    """Sizes of the OTA app slots (factory excluded: never written over the air) of a layout (a
    list of ota_tool.partitions.Partition; default: the project's partitions.csv)."""
    from . import partitions as ptable
    from .sim import default_partitions_csv

    parts = layout if layout is not None else ptable.parse_csv(default_partitions_csv())
    return [p.size for p in parts if p.is_ota_slot()]


def check_fits(image_len, sizes, where="the layout"):
    if not sizes:
        raise ToolError("%s has no OTA app slot: nothing can be updated over the air" % where,
                        "give the partition table of the devices (--partitions), with ota_0 and ota_1")
    if image_len > max(sizes):
        raise ToolError("the image is %d bytes: it fits no OTA slot of %s (largest %d bytes)" % (
            image_len, where, max(sizes)), "build a smaller firmware (size optimisation, fewer features), or "
                                           "release for a layout with larger slots (--partitions CSV)")
    return [s for s in sizes if image_len > s]


def stage(percent=None, salt=None, halt=False):
    """The manifest members of a release that starts staged or halted ({} for live to all)."""
    from .rollout import check_salt, new_salt

    out = {}
    if percent is not None:
        if not 0 <= percent <= 100:
            raise ToolError("--percent must be 0..100", "a share of the devices, e.g. --percent 10")
        out["rollout"] = {"percent": percent, "salt": check_salt(salt) if salt else new_salt()}
    elif salt is not None:
        raise ToolError("--salt needs --percent", "e.g. --percent 10 --salt 2026-05", exit_code=2)
    if halt:
        out["halted"] = True
    return out


def build(image, version, signing_keys, out_dir, channel="stable", security_version=0, board="*",
          compress=False, wbits=12, bases=(), requires=None, expires=None, commit=None, min_saving=0.10,
          manifest_name=None, slot_size=None, created=None, extra=None, rdelta=True, percent=None, salt=None,
          halt=False, replace=None, allow_older=None, layout=None):
    """Write a signed release of `image` (bytes) into the repository `out_dir`. Returns a summary.
    rdelta: also publish relocation-aware patches (ota.reloc) from `bases` where they are smaller.

    percent/salt/halt: start staged or halted. replace/allow_older (what `ota-tool release` asks;
    None, the default, checks nothing): the manifest already published under the same name is the
    release devices see now, so the same version again needs `replace` (and keeps its stage and its
    artifacts that still fit the image), an older one `allow_older` (by the device's order,
    ota.version)."""
    try:
        new_key = device_version.key(version)  # refuse a version the device would refuse
    except OTAError as e:
        raise ToolError(e.message, "versions are MAJOR.MINOR.PATCH[-PRE], e.g. 1.2.0 or 1.3.0-rc.1")
    chip = check_image(image)
    warnings = []
    too_small = check_fits(len(image), slot_sizes(layout), "the target layout" if layout is not None else "partitions.csv")
    if too_small:
        warnings.append("the image (%d bytes) does not fit every OTA slot of the layout (%s): devices refuse it as "
                        "too_large where it lands in a smaller one" % (len(image), ", ".join(map(str, too_small))))
    manifest_file = check_file_name(manifest_name, "manifest name") if manifest_name else "%s.json" % check_name(channel)
    guarded = replace is not None or allow_older is not None
    before = published(os.path.join(out_dir, manifest_file)) if guarded else None
    kept = kept_extra = []
    staged = stage(percent, salt, halt)
    if before is not None:
        if version_guard(before, manifest_file, version, replace, allow_older) == new_key:
            if percent is None and not halt:
                staged = {k: before[k] for k in ("rollout", "halted") if k in before}
            if before.get("image", {}).get("sha256") == sha256_hex(image):
                def still_there(listed):
                    return [a for a in listed if isinstance(a, dict) and a.get("encoding") != "raw" and
                            os.path.exists(os.path.join(out_dir, str(a.get("url", ""))))]

                kept = still_there(before.get("artifacts", []))
                kept_extra = still_there(before.get("extra_artifacts", []))
            elif before.get("artifacts"):
                warnings.append("release %s had another image: its compressed and delta artifacts do not apply to "
                                "this one and are dropped from the manifest (the files stay)" % version)
    if not 9 <= int(wbits) <= 15:
        raise ToolError("zlib window bits %r: devices inflate with 9..15" % (wbits,), "give --wbits 9..15 (12 by default)")
    image_sha = sha256_hex(image)
    arts = []
    pending = []  # artifacts, written only once the signed manifest is checked
    raw_name = _write_artifact(out_dir, image, "bin", pending)
    arts.append({"url": raw_name, "size": len(image), "sha256": image_sha, "encoding": "raw"})
    smallest_full = len(image)
    if compress:
        z = zlib_artifact(image, wbits)
        name = _write_artifact(out_dir, z, "zlib", pending)
        arts.append({"url": name, "size": len(z), "sha256": sha256_hex(z), "encoding": "zlib", "wbits": wbits})
        smallest_full = min(smallest_full, len(z))
    skipped = []
    extra_arts = []
    use_rdelta = rdelta
    for base in bases:
        from . import delta, rdelta

        patch = delta.make_patch(base, image, wbits)
        if len(patch) > smallest_full * (1 - min_saving):
            skipped.append({"base_sha256": sha256_hex(base), "size": len(patch)})
            continue  # not worth a separate artifact: devices take the full image
        name = _write_artifact(out_dir, patch, "patch", pending)
        arts.append({"url": name, "size": len(patch), "sha256": sha256_hex(patch), "encoding": "delta",
                     "wbits": wbits, "base_sha256": sha256_hex(base)})
        # The relocation-aware patch too, for devices that know it (listed apart: older devices
        # refuse an unknown encoding in "artifacts"); only where it is smaller than today's.
        if use_rdelta and rdelta.supported(base) and rdelta.supported(image):
            rpatch = rdelta.make_patch(base, image, wbits)
            if len(rpatch) < len(patch):
                name = _write_artifact(out_dir, rpatch, "rpatch", pending)
                extra_arts.append({"url": name, "size": len(rpatch), "sha256": sha256_hex(rpatch),
                                   "encoding": "rdelta", "wbits": wbits, "base_sha256": sha256_hex(base)})
    for listed, old in ((arts, kept), (extra_arts, kept_extra)):  # what the same release published before
        for a in old:  # (--replace), unless made again now
            if not any(b["url"] == a["url"] for b in listed):
                listed.append(a)
    previous = _previous(os.path.join(out_dir, manifest_file))
    if created is None:
        # Never below the manifest it replaces: `ota-tool rollout` signs each stage at its created
        # + 1 (ahead of the clock when stages follow fast), and a device refuses a manifest signed
        # before the newest it saw (a replay).
        created = max(int(time.time()), previous.get("created", 0) + 1 if previous else 0)
    doc = {
        "type": "firmware",
        "version": version,
        "security_version": security_version,
        "chips": [chip],
        "board": board,
        "channel": channel,
        "image": {"size": len(image), "sha256": image_sha},
        "slot_size": slot_size or (len(image) + 4095) // 4096 * 4096,
        "artifacts": arts,
        "created": int(created),
        "key_id": keys.key_id(signing_keys[0]),
        "build": {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time()))},
    }
    if extra_arts:
        doc["extra_artifacts"] = extra_arts
    if commit:
        doc["build"]["commit"] = commit
    desc = images.describe(image)
    if desc and desc.get("idf_ver"):
        doc["build"]["idf"] = desc["idf_ver"]
    if desc and desc.get("version") and _is_release_version(desc["version"]) and \
            _compare(desc["version"], version):
        # a board flashed with this image by cable takes its descriptor version for the installed
        # release (ota.update): a different one makes it refuse or reinstall the wrong releases
        warnings.append("the image's app descriptor says version %s, the release is %s: build the firmware "
                        "with OTA_FIRMWARE_VERSION=%s (firmware/README.md)" % (desc["version"], version, version))
    if requires:
        doc["requires"] = dict(requires)
    if expires:
        doc["expires"] = int(expires)
    if extra:
        doc.update(extra)
    doc.update(staged)
    warnings += _replaces_newer(previous, manifest_file, version)
    blob = keys.sign(doc, signing_keys)
    check_signed(blob, signing_keys)
    os.makedirs(out_dir, exist_ok=True)
    _write_pending(pending)  # artifacts first, the manifest last: it never names a missing file
    write_atomic(os.path.join(out_dir, manifest_file), blob)
    return {"manifest": os.path.join(out_dir, manifest_file), "version": version, "chip": chip, "image_sha256": image_sha,
            "artifacts": arts + extra_arts, "skipped_deltas": skipped, "manifest_bytes": len(blob), "warnings": warnings,
            "stage": {"percent": staged.get("rollout", {}).get("percent", 100), "salt": staged.get("rollout", {}).get("salt"),
                      "halted": staged.get("halted") is True},
            "replaced": before.get("version") if before is not None else None}


def _compare(a, b):
    # -1, 0, 1 by the device's SemVer precedence (ota.version)
    ka, kb = device_version.key(a), device_version.key(b)
    return (ka > kb) - (ka < kb)


def _previous(path):
    # The manifest at `path` as a dict (not verified: it is only compared with), or None.
    try:
        with open(path, "rb") as f:
            doc = json.loads(device_manifest.split(f.read(device_manifest.MAX_DOCUMENT + 1024))[1])
    except (OSError, ValueError, TypeError, OTAError):
        return None
    return doc if isinstance(doc, dict) else None


def _replaces_newer(previous, name, version):
    # The manifest this one replaces: a device that installed its version takes this one as a
    # downgrade (or as installed already), by the device's own order (ota.version).
    try:
        before = previous["version"]
        newer = _compare(before, version) >= 0
    except (KeyError, TypeError, OTAError):
        return []  # no manifest there (or not one of ours): nothing is replaced
    if not newer:
        return []
    return ["%s replaces release %s, which is not older: devices that installed %s refuse %s (%s)" % (
        name, before, before, version,
        "downgrade" if _compare(before, version) > 0 else "up_to_date")]


def _is_release_version(text):
    try:
        device_manifest.parse_version(text)
        return True
    except OTAError:
        return False  # e.g. MicroPython's own "v1.24.1": the device ignores it too


# The refusals that depend on the keys verify is given; any other is about the document itself.
KEY_REASONS = ("unknown_key", "bad_signature", "threshold", "unsigned", "bad_key", "no_keys")


def refusal_hint(e):
    """What to do when the device's parser refuses a signed document (an OTAError)."""
    if e.reason in KEY_REASONS:
        return "check --pubkey is the release key (its .pub file from ota-tool keygen), and --threshold"
    return ("devices refuse this document whatever the key: it was not written by this ota-tool, or was edited; "
            "publish it again with ota-tool release (or release-app)")


def verify(manifest_path, public_keys, threshold=1, images_dir=None):
    """Check a release exactly as a device would, plus its files. Returns a report dict; raises
    ToolError on the first problem."""
    from .files import read_bytes

    blob = read_bytes(manifest_path)
    try:
        trust = Trust.from_list(public_keys, threshold)
    except OTAError as e:
        raise ToolError(e.message, "--threshold is at most the number of --pubkey keys")
    try:
        m = device_manifest.load(blob, trust)
    except OTAError as e:
        raise ToolError("the manifest is refused: %s" % e, refusal_hint(e))
    root = images_dir or os.path.dirname(os.path.abspath(manifest_path))
    report = {"version": m.version, "channel": m.channel, "chips": m.chips, "signed_by": m.key_ids,
              "image_size": m.image_size, "artifacts": []}
    image_sha = binascii.hexlify(m.image_sha256).decode()
    for a in m.artifacts:
        path = os.path.join(root, a.url) if "://" not in a.url else None
        entry = {"url": a.url, "encoding": a.encoding, "size": a.size}
        if path is None or not os.path.exists(path):
            raise ToolError("artifact %s is missing next to the manifest" % a.url,
                            "copy the whole release folder (or release it again with ota-tool release)")
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != a.size or hashlib.sha256(data).digest() != a.sha256:
            raise ToolError("artifact %s does not match its signed size/SHA-256" % a.url,
                            "the folder is damaged or was changed: release it again with ota-tool release")
        if not named_by_content(os.path.basename(a.url), binascii.hexlify(a.sha256).decode()):
            raise ToolError("artifact %s is not named by its content (sha256-<first 16 hex of its SHA-256>.<ext>)"
                            % a.url, "rebuild the release with ota-tool release")
        out = _decode(a, data, m, root)
        if out is None:
            entry["checked"] = "hash only (base image not found locally)"
        else:
            if len(out) != m.image_size or sha256_hex(out) != image_sha:
                raise ToolError("artifact %s does not produce the signed image" % a.url,
                                "the folder is damaged or was changed: release it again with ota-tool release")
            check_image(out)
            entry["checked"] = "produces the signed image"
        report["artifacts"].append(entry)
    return report


def _decode(a, data, m, root):
    from ota.delta import max_raw_patch_len
    from ota.inflate import Inflate

    from . import delta

    if a.encoding == "raw":
        return data
    if a.encoding in ("zlib", "gzip"):
        return delta.drain(Inflate(delta.BytesSource(data), a.encoding, a.wbits, m.image_size))
    base_path = os.path.join(root, "sha256-%s.bin" % binascii.hexlify(a.base_sha256).decode()[:16])
    if not os.path.exists(base_path):
        return None
    with open(base_path, "rb") as f:
        base = f.read()
    if a.encoding == "rdelta":
        from . import rdelta

        return rdelta.apply_patch(base, data, a.wbits, m.image_size)
    return delta.apply_patch(base, data, a.wbits, m.image_size, max_raw_patch_len(m.image_size))

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


def artifact_name(data, ext):
    return "sha256-%s.%s" % (sha256_hex(data)[:16], ext)


def check_image(data):
    """Refuse anything that is not a valid app image, with the device's own words; return the chip name."""
    if len(data) < appimage.PROLOGUE_LEN:
        raise ToolError("the file is too short to be an ESP32 app image (%d bytes)" % len(data))
    try:
        _, chip_id, _ = appimage.check_header(data[:appimage.PROLOGUE_LEN], None)
        check = appimage.ImageCheck(len(data), chip_id)
        check.feed(memoryview(data))
        check.finish()
    except OTAError as e:
        hint = {"not_app_image": "build output: use micropython.bin (the app), not firmware.bin",
                "bad_load_address": "devices would refuse it before set_boot (lib/ota/memmap.py has ESP-IDF's rules): "
                                    "check the build's linker script and memory settings"}.get(e.reason)
        raise ToolError("not a valid app image: %s" % e.message, hint)
    chip = CHIP_NAMES.get(chip_id)
    if chip is None:
        raise ToolError("image is for an unknown chip id %d" % chip_id)
    if chip in ("esp32", "esp32s2", "esp32s3", "esp32c3"):
        _, problems = images.parse(data, chip)
        if problems:
            raise ToolError("esptool finds the image invalid: %s" % "; ".join(problems))
    return chip


def _write_artifact(out_dir, data, ext):
    name = artifact_name(data, ext)
    path = os.path.join(out_dir, name)
    if not (os.path.exists(path) and os.path.getsize(path) == len(data)):
        write_atomic(path, data)
    return name


def zlib_artifact(data, wbits):
    c = zlib.compressobj(9, zlib.DEFLATED, wbits, 9)
    return c.compress(data) + c.flush()


def build(image, version, signing_keys, out_dir, channel="stable", security_version=0, board="*",
          compress=False, wbits=12, bases=(), requires=None, expires=None, commit=None, min_saving=0.10,
          manifest_name=None, slot_size=None, created=None, extra=None, rdelta=True):
    """Write a signed release of `image` (bytes) into the repository `out_dir`. Returns a summary.
    rdelta: also publish relocation-aware patches (ota.reloc) from `bases` where they are smaller."""
    device_manifest.parse_version(version)  # refuse a version the device would refuse
    chip = check_image(image)
    os.makedirs(out_dir, exist_ok=True)
    image_sha = sha256_hex(image)
    arts = []
    raw_name = _write_artifact(out_dir, image, "bin")
    arts.append({"url": raw_name, "size": len(image), "sha256": image_sha, "encoding": "raw"})
    smallest_full = len(image)
    if compress:
        z = zlib_artifact(image, wbits)
        name = _write_artifact(out_dir, z, "zlib")
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
        name = _write_artifact(out_dir, patch, "patch")
        arts.append({"url": name, "size": len(patch), "sha256": sha256_hex(patch), "encoding": "delta",
                     "wbits": wbits, "base_sha256": sha256_hex(base)})
        # The relocation-aware patch too, for devices that know it (listed apart: older devices
        # refuse an unknown encoding in "artifacts"); only where it is smaller than today's.
        if use_rdelta and rdelta.supported(base) and rdelta.supported(image):
            rpatch = rdelta.make_patch(base, image, wbits)
            if len(rpatch) < len(patch):
                name = _write_artifact(out_dir, rpatch, "rpatch")
                extra_arts.append({"url": name, "size": len(rpatch), "sha256": sha256_hex(rpatch),
                                   "encoding": "rdelta", "wbits": wbits, "base_sha256": sha256_hex(base)})
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
        "created": int(created if created is not None else time.time()),
        "key_id": keys.key_id(signing_keys[0]),
        "build": {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created or time.time()))},
    }
    if extra_arts:
        doc["extra_artifacts"] = extra_arts
    if commit:
        doc["build"]["commit"] = commit
    desc = images.describe(image)
    if desc and desc.get("idf_ver"):
        doc["build"]["idf"] = desc["idf_ver"]
    warnings = []
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
    name = manifest_name or "%s.json" % channel
    warnings += _replaces_newer(os.path.join(out_dir, name), version)
    blob = keys.sign(doc, signing_keys)
    write_atomic(os.path.join(out_dir, name), blob)
    return {"manifest": os.path.join(out_dir, name), "version": version, "chip": chip, "image_sha256": image_sha,
            "artifacts": arts + extra_arts, "skipped_deltas": skipped, "manifest_bytes": len(blob), "warnings": warnings}


def _compare(a, b):
    # -1, 0, 1 by the device's SemVer precedence (ota.version)
    ka, kb = device_version.key(a), device_version.key(b)
    return (ka > kb) - (ka < kb)


def _replaces_newer(path, version):
    # The manifest this one replaces: a device that installed its version takes this one as a
    # downgrade (or as installed already), by the device's own order (ota.version).
    try:
        with open(path, "rb") as f:
            doc = json.loads(device_manifest.split(f.read(device_manifest.MAX_DOCUMENT + 1024))[1])
        before = doc["version"]
        newer = _compare(before, version) >= 0
    except (OSError, ValueError, KeyError, TypeError, OTAError):
        return []  # no manifest there (or not one of ours): nothing is replaced
    if not newer:
        return []
    return ["%s replaces release %s, which is not older: devices that installed %s refuse %s (%s)" % (
        os.path.basename(path), before, before, version,
        "downgrade" if _compare(before, version) > 0 else "up_to_date")]


def _is_release_version(text):
    try:
        device_manifest.parse_version(text)
        return True
    except OTAError:
        return False  # e.g. MicroPython's own "v1.24.1": the device ignores it too


def verify(manifest_path, public_keys, threshold=1, images_dir=None):
    """Check a release exactly as a device would, plus its files. Returns a report dict; raises
    ToolError on the first problem."""
    with open(manifest_path, "rb") as f:
        blob = f.read()
    trust = Trust.from_list(public_keys, threshold)
    try:
        m = device_manifest.load(blob, trust)
    except OTAError as e:
        raise ToolError("the manifest is refused: %s" % e, "check --pubkey is the release key")
    root = images_dir or os.path.dirname(os.path.abspath(manifest_path))
    report = {"version": m.version, "channel": m.channel, "chips": m.chips, "signed_by": m.key_ids,
              "image_size": m.image_size, "artifacts": []}
    image_sha = binascii.hexlify(m.image_sha256).decode()
    for a in m.artifacts:
        path = os.path.join(root, a.url) if "://" not in a.url else None
        entry = {"url": a.url, "encoding": a.encoding, "size": a.size}
        if path is None or not os.path.exists(path):
            raise ToolError("artifact %s is missing next to the manifest" % a.url)
        with open(path, "rb") as f:
            data = f.read()
        if len(data) != a.size or hashlib.sha256(data).digest() != a.sha256:
            raise ToolError("artifact %s does not match its signed size/SHA-256" % a.url)
        out = _decode(a, data, m, root)
        if out is None:
            entry["checked"] = "hash only (base image not found locally)"
        else:
            if len(out) != m.image_size or sha256_hex(out) != image_sha:
                raise ToolError("artifact %s does not produce the signed image" % a.url)
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

"""Publish a release folder to S3-compatible object storage (`ota-tool publish`), usually with a CDN
in front (see docs/distribution.md).

What goes up, and how:
- Content-addressed artifacts (`sha256-<16 hex>.<ext>`, written by ota_tool.release) are immutable:
  `Cache-Control: public, max-age=31536000, immutable`. Each one's content is checked against its
  name before upload (a corrupt file must never go out under a name that caches for a year).
- Everything else is mutable and short-lived in caches (`public, max-age=60` by default):
  the signed `<channel>.json` manifests, `keys.json` (the signed key list), anything else.
- Content types: `application/json` for .json, `application/octet-stream` for the rest. Never a
  Content-Encoding: the device asks for `identity` and refuses an encoded body, and a zlib/gzip
  artifact is signed as stored bytes, not as something for the HTTP layer to undo.
- The full SHA-256 of every object is kept in its metadata (`x-amz-meta-sha256`), so a re-run
  compares content without downloading it.

Order, so no reader ever sees a manifest whose artifacts are not there yet:
  1. immutable artifacts;
  2. the other mutable files (keys.json first of all: a manifest signed by a new key needs the
     key list that brings the key);
  3. then, after a HEAD of every artifact each manifest names (present, right size), the
     manifests.
Every manifest is checked before anything is uploaded: each relative artifact it names must be in
RELEASE_DIR with the signed size and SHA-256, or already in the bucket.

Re-runs are idempotent: an object whose stored SHA-256, Cache-Control and Content-Type match is
skipped. An immutable name that holds other bytes in the bucket is refused (unless --force):
someone wrote something else under a content-addressed name, and caches may already hold it.
Nothing is ever deleted: devices in the middle of a download still need the previous artifacts.
"""
import json
import os
import re
import sys

from ota import manifest as device_manifest
from ota.errors import OTAError

from .errors import ToolError
from .files import file_digest

ARTIFACT_RE = re.compile(r"^sha256-([0-9a-f]{16})\.[A-Za-z0-9]{1,16}$")
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
DEFAULT_MANIFEST_MAX_AGE = 60
BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")

IMMUTABLE = "artifact"
MUTABLE = "mutable"
MANIFEST = "manifest"
PHASES = (IMMUTABLE, MUTABLE, MANIFEST)


def parse_s3_url(url):
    """s3://bucket[/prefix] -> (bucket, prefix without slashes at either end)."""
    if not url.startswith("s3://"):
        raise ToolError("%r is not an s3:// URL" % url, "write it as s3://BUCKET/PREFIX")
    rest = url[5:]
    bucket, _, prefix = rest.partition("/")
    if not BUCKET_RE.match(bucket) or ".." in bucket:
        raise ToolError("%r is not a valid bucket name" % bucket, "3-63 characters: a-z 0-9 . -")
    prefix = prefix.strip("/")
    if any(p in ("", ".", "..") for p in prefix.split("/")) and prefix:
        raise ToolError("the prefix %r has empty, . or .. components" % prefix)
    return bucket, prefix


def content_type(name):
    return "application/json" if name.endswith(".json") else "application/octet-stream"


def mutable_cache(max_age):
    return "public, max-age=%d" % max_age


def manifest_artifacts(blob):
    """[(url, size, sha256 hex)] named by a signed firmware manifest (signatures NOT checked: this
    is about where files are), or None when the blob is not a firmware manifest."""
    try:
        _, doc = device_manifest.split(blob)
        d = json.loads(doc)
    except (OTAError, ValueError, UnicodeError):
        return None
    if not isinstance(d, dict) or d.get("type") != "firmware" or not isinstance(d.get("artifacts"), list):
        return None
    out = []
    extra = d.get("extra_artifacts")  # rdelta patches (ota.manifest): files like the others
    for a in d["artifacts"] + (extra if isinstance(extra, list) else []):
        if isinstance(a, dict) and isinstance(a.get("url"), str):
            out.append((a["url"], a.get("size"), a.get("sha256")))
    return out


def _join(*parts):
    return "/".join(p for p in parts if p)


def _named_artifacts(f):
    """(url, size, sha256, bucket key) of each artifact the manifest file `f` names in this bucket."""
    with open(f.path, "rb") as fh:
        arts = manifest_artifacts(fh.read())
    for url, size, sha in arts or ():
        key = _resolve_key(f.key, url)
        if key is not None:
            yield url, size, sha, key


def _resolve_key(manifest_key, url):
    """The object key a relative artifact URL in the manifest at `manifest_key` points to, or None
    for an absolute URL (another host: not ours to check)."""
    if "://" in url or url.startswith("//"):
        return None
    if url.startswith("/"):
        return url.lstrip("/")
    base = manifest_key.rsplit("/", 1)[0] if "/" in manifest_key else ""
    parts = []
    for p in _join(base, url).split("/"):
        if p == "..":
            if parts:
                parts.pop()
        elif p not in ("", "."):
            parts.append(p)
    return "/".join(parts)


class LocalFile:
    def __init__(self, path, rel, key, kind, sha256, size):
        self.path = path
        self.rel = rel  # path inside RELEASE_DIR, with "/"
        self.key = key  # object key in the bucket
        self.kind = kind
        self.sha256 = sha256
        self.size = size
        self.cache_control = None
        self.content_type = content_type(rel)
        self.action = None  # "upload", "skip", "fix-headers"
        self.why = ""

    def as_dict(self):
        return {"file": self.rel, "key": self.key, "kind": self.kind, "size": self.size, "sha256": self.sha256,
                "cache_control": self.cache_control, "content_type": self.content_type, "action": self.action,
                "why": self.why}


def scan(release_dir, prefix, manifest_max_age=DEFAULT_MANIFEST_MAX_AGE):
    """The files to publish, classified and hashed. Refuses an artifact whose content does not
    match its content-addressed name."""
    if not os.path.isdir(release_dir):
        raise ToolError("%s is not a directory" % release_dir, "give the folder `ota-tool release` wrote")
    files = []
    bad = []
    for dirpath, dirnames, names in os.walk(release_dir):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in sorted(names):
            if n.startswith(".") or n.endswith(".tmp"):
                continue  # hidden files and unfinished atomic writes are never published
            path = os.path.join(dirpath, n)
            if not os.path.isfile(path):
                continue
            rel = os.path.relpath(path, release_dir).replace(os.sep, "/")
            sha = file_digest(path)
            size = os.path.getsize(path)
            m = ARTIFACT_RE.match(n)
            if m:
                if sha[:16] != m.group(1):
                    bad.append(rel)
                kind = IMMUTABLE
            elif n.endswith(".json") and _is_manifest(path):
                kind = MANIFEST
            else:
                kind = MUTABLE
            f = LocalFile(path, rel, _join(prefix, rel), kind, sha, size)
            f.cache_control = IMMUTABLE_CACHE if kind == IMMUTABLE else mutable_cache(manifest_max_age)
            files.append(f)
    if bad:
        raise ToolError("content does not match the content-addressed name: %s" % ", ".join(bad),
                        "the release folder is damaged: rebuild it with `ota-tool release`")
    if not files:
        raise ToolError("nothing to publish in %s" % release_dir)
    # keys.json before any other mutable file, then by name: a stable order for re-runs and logs
    files.sort(key=lambda f: (PHASES.index(f.kind), os.path.basename(f.rel) != "keys.json", f.rel))
    return files


def _is_manifest(path):
    if os.path.getsize(path) > device_manifest.MAX_DOCUMENT + 1024:
        return False
    with open(path, "rb") as f:
        return manifest_artifacts(f.read()) is not None


def verify_signatures(files, public_keys, threshold=1):
    """Refuse to publish a manifest or key list the given keys do not verify (optional check)."""
    from ota.trust import Trust

    trust = Trust.from_list(public_keys, threshold)
    for f in files:
        if f.kind != MANIFEST:
            continue
        with open(f.path, "rb") as fh:
            blob = fh.read()
        try:
            device_manifest.load(blob, trust)
        except OTAError as e:
            raise ToolError("%s does not verify with the given key(s): %s" % (f.rel, e.message),
                            "publish only what devices will accept (check --pubkey)")


class Bucket:
    """The few S3 calls publish needs, over boto3."""

    def __init__(self, bucket, endpoint_url=None, region=None, profile=None, client=None):
        self.name = bucket
        if client is None:
            try:
                import boto3
                from botocore.config import Config
            except ImportError:
                raise ToolError("publishing to S3 needs boto3", "pip install 'boto3>=1.34'")
            session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
            client = session.client("s3", endpoint_url=endpoint_url, region_name=region,
                                    config=Config(retries={"max_attempts": 5, "mode": "standard"}))
        self.client = client

    def head(self, key):
        """{sha256, size, cache_control, content_type, etag} of the object, or None if absent."""
        from botocore.exceptions import ClientError

        try:
            h = self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as e:
            code = str(e.response.get("Error", {}).get("Code", ""))
            status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("404", "NoSuchKey", "NotFound") or status == 404:
                return None
            raise ToolError("cannot read s3://%s/%s: %s" % (self.name, key, e), _cred_hint(e))
        return {"sha256": (h.get("Metadata") or {}).get("sha256"), "size": h.get("ContentLength"),
                "cache_control": h.get("CacheControl"), "content_type": h.get("ContentType"),
                "etag": (h.get("ETag") or "").strip('"')}

    def upload(self, f, callback=None):
        from botocore.exceptions import BotoCoreError, ClientError

        extra = {"ContentType": f.content_type, "CacheControl": f.cache_control, "Metadata": {"sha256": f.sha256}}
        try:
            self.client.upload_file(f.path, self.name, f.key, ExtraArgs=extra, Callback=callback)
        except (ClientError, BotoCoreError) as e:
            raise ToolError("upload of %s to s3://%s/%s failed: %s" % (f.rel, self.name, f.key, e),
                            _cred_hint(e) or "re-run the same command: what is already there is skipped")


def _cred_hint(e):
    text = str(e)
    if "AccessDenied" in text or "403" in text or "credentials" in text.lower() or "InvalidAccessKeyId" in text:
        return ("check the credentials (AWS_PROFILE / AWS_ACCESS_KEY_ID...) and that they may "
                "s3:PutObject and s3:GetObject on this bucket")
    return None


def plan(files, bucket, force=False):
    """Decide per file: upload or skip, from what the bucket holds. Refuses an immutable name that
    holds other bytes (unless force) and a manifest naming an artifact found nowhere."""
    remote = {}
    for f in files:
        r = bucket.head(f.key)
        remote[f.key] = r
        if r is None:
            f.action, f.why = "upload", "new"
            continue
        # Is the remote copy this file? Known from our metadata, a size difference, or a plain-MD5
        # ETag (single-part upload without KMS); unknown otherwise (another tool's multipart upload).
        if r["size"] != f.size:
            same, known = False, True
        elif r["sha256"]:
            same, known = r["sha256"] == f.sha256, True
        elif re.match(r"^[0-9a-f]{32}$", r["etag"] or ""):
            same, known = r["etag"] == file_digest(f.path, "md5"), True
        else:
            same, known = False, False
        if not same:
            if f.kind == IMMUTABLE and known and not force:
                raise ToolError("s3://%s/%s already holds OTHER bytes under this content-addressed name" % (
                    bucket.name, f.key), "investigate (and invalidate the CDN) before --force overwrites it")
            f.action, f.why = "upload", "changed" if known else "remote copy unverifiable: rewritten"
        elif r["cache_control"] != f.cache_control or r["content_type"] != f.content_type:
            f.action, f.why = "upload", "headers differ"
        else:
            f.action, f.why = "skip", "up to date"
    local = {f.key: f for f in files}
    for f in files:
        if f.kind != MANIFEST:
            continue
        for url, size, sha, key in _named_artifacts(f):
            have = local.get(key)
            if have is not None:
                if (size is not None and have.size != size) or (sha is not None and have.sha256 != sha):
                    raise ToolError("%s names %s with another size/SHA-256 than the file in the folder" % (f.rel, url))
                continue
            r = remote.get(key) or bucket.head(key)
            remote[key] = r
            if r is None:
                raise ToolError("%s names %s, which is neither in the release folder nor in s3://%s/%s" % (
                    f.rel, url, bucket.name, key), "publish the folder that holds it (or rebuild the release)")
            if size is not None and r["size"] != size:
                raise ToolError("s3://%s/%s has %s bytes, the manifest %s says %d" % (bucket.name, key, r["size"], f.rel, size))
    return files


def _progress_bar(total, enabled):
    try:
        from tqdm import tqdm
    except ImportError:
        tqdm = None
    if not enabled or tqdm is None:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="upload", file=sys.stderr,
                leave=True, dynamic_ncols=True)


def publish(release_dir, s3_url, endpoint_url=None, region=None, profile=None, manifest_max_age=DEFAULT_MANIFEST_MAX_AGE,
            dry_run=False, force=False, progress=True, public_keys=None, threshold=1, client=None, log=None):
    """Upload RELEASE_DIR to s3://bucket/prefix in the safe order. Returns a summary dict."""
    if manifest_max_age < 0:
        raise ToolError("--manifest-max-age must be >= 0")
    bucket_name, prefix = parse_s3_url(s3_url)
    files = scan(release_dir, prefix, manifest_max_age)
    if public_keys:
        verify_signatures(files, public_keys, threshold)
    bucket = Bucket(bucket_name, endpoint_url, region, profile, client)
    plan(files, bucket, force)
    todo = [f for f in files if f.action == "upload"]
    summary = {"bucket": bucket_name, "prefix": prefix, "dry_run": dry_run, "files": [f.as_dict() for f in files],
               "uploaded": 0, "skipped": len(files) - len(todo), "bytes": 0}
    if dry_run or not todo:
        return summary
    say = log or (lambda line: None)
    bar = _progress_bar(sum(f.size for f in todo), progress)
    try:
        for phase in PHASES:
            batch = [f for f in todo if f.kind == phase]
            if phase == MANIFEST and batch:
                _check_artifacts_live(files, bucket)
            for f in batch:
                bucket.upload(f, bar.update if bar is not None else None)
                summary["uploaded"] += 1
                summary["bytes"] += f.size
                line = "uploaded %s -> s3://%s/%s (%s, %s)" % (f.rel, bucket_name, f.key, f.content_type, f.cache_control)
                if bar is not None:
                    bar.write(line, file=sys.stderr)
                else:
                    say(line)
    finally:
        if bar is not None:
            bar.close()
    return summary


def _check_artifacts_live(files, bucket):
    # Right before the manifests go up: every artifact they name answers in the bucket with its
    # signed size (some S3-compatible stores list or serve new objects late).
    for f in files:
        if f.kind != MANIFEST or f.action != "upload":
            continue
        for _, size, _, key in _named_artifacts(f):
            r = bucket.head(key)
            if r is None or (size is not None and r["size"] != size):
                raise ToolError("s3://%s/%s is not readable with its signed size after upload: %s NOT published" % (
                    bucket.name, key, f.rel), "re-run the same command")

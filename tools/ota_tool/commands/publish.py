"""`ota-tool publish`: upload a release folder to S3-compatible object storage in a safe order."""
import json
import sys

HELP = "upload a release folder to S3-compatible storage (artifacts first, manifests last)"
DESCRIPTION = """Upload RELEASE_DIR to s3://BUCKET/PREFIX (AWS S3 or any S3-compatible store: give
--endpoint-url). Content-addressed artifacts get Cache-Control "public, max-age=31536000, immutable";
manifests, keys.json and other mutable files "public, max-age=N" (--manifest-max-age, default 60).
Artifacts go up first, then keys.json and other mutable files, then the manifests, after a check
that every artifact they name is in the bucket with its signed size. Re-runs skip what is already
there (SHA-256 in the object metadata). Nothing is deleted. Credentials come from the usual AWS
places (environment, profile, instance role). Devices read the objects over HTTPS, normally through
a CDN: see docs/distribution.md."""


def add_arguments(p):
    p.add_argument("release_dir", metavar="RELEASE_DIR", help="the folder `ota-tool release` wrote")
    p.add_argument("destination", metavar="s3://BUCKET/PREFIX", help="where to publish")
    p.add_argument("--endpoint-url", metavar="URL",
                   help="S3-compatible endpoint (MinIO, Ceph, R2, moto...); default: AWS (or $AWS_ENDPOINT_URL)")
    p.add_argument("--region", metavar="NAME", help="region (default: from the AWS configuration)")
    p.add_argument("--profile", metavar="NAME", help="AWS profile to take credentials from")
    p.add_argument("--manifest-max-age", type=int, default=60, metavar="SECONDS",
                   help="cache lifetime of manifests and other mutable files (default 60): how long a CDN "
                        "may serve the previous manifest, e.g. after a rollout is halted")
    p.add_argument("--pubkey", action="append", default=[], metavar="KEY",
                   help="refuse to publish a manifest these public keys do not verify (repeatable)")
    p.add_argument("--threshold", type=int, default=1, help="signatures required with --pubkey (default 1)")
    p.add_argument("--force", action="store_true",
                   help="overwrite a content-addressed object that holds other bytes (investigate first)")
    p.add_argument("--dry-run", action="store_true", help="show what would be uploaded, upload nothing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import keys, publish

    pubs = [keys.load_public(k) for k in args.pubkey]
    summary = publish.publish(
        args.release_dir, args.destination, endpoint_url=args.endpoint_url, region=args.region,
        profile=args.profile, manifest_max_age=args.manifest_max_age, dry_run=args.dry_run, force=args.force,
        progress=not (args.no_progress or args.json) and sys.stderr.isatty(), public_keys=pubs,
        threshold=args.threshold, log=None if args.json else (lambda line: print(line, file=sys.stderr)))
    if args.json:
        print(json.dumps(dict(summary, ok=True)))
        return 0
    for f in summary["files"]:
        print("%-6s %-8s %-40s %9d  %s" % (
            f["action"] if not args.dry_run or f["action"] == "skip" else "would", f["kind"], f["key"], f["size"],
            f["why"]))
    verb = "would upload" if args.dry_run else "uploaded"
    print("%s %d file(s), %d bytes; %d already up to date in s3://%s/%s" % (
        verb, sum(1 for f in summary["files"] if f["action"] == "upload") if args.dry_run else summary["uploaded"],
        sum(f["size"] for f in summary["files"] if f["action"] == "upload") if args.dry_run else summary["bytes"],
        summary["skipped"], summary["bucket"], summary["prefix"]))
    return 0

"""Check a built micropython.bin before it is released (run by firmware/build.sh): an app image
(the device's own image check), of this version, that fits the OTA slots of the table it was built
for with at least `--margin` bytes to spare.

    python firmware/check_image.py micropython.bin VERSION partitions.csv [--margin BYTES]

Exit status 0 when it passes, 1 with the reason otherwise."""
import argparse
import sys

from ota_tool import images, partitions, release

DEFAULT_MARGIN = 65536


def check(app, version, table, margin=DEFAULT_MARGIN):
    """The line to print when `app` passes; raises ValueError with the reason otherwise."""
    release.check_image(app)
    desc = images.describe(app) or {}
    if desc.get("version") != version:
        raise ValueError("the app descriptor says version %r, expected %r" % (desc.get("version"), version))
    slot = min(p.size for p in partitions.load_csv(table) if p.is_app())
    if len(app) > slot:
        raise ValueError("micropython.bin is %d bytes, the app partitions hold %d" % (len(app), slot))
    if slot - len(app) < margin:
        raise ValueError("micropython.bin is %d bytes: it leaves %d bytes of the %d-byte slot, less than the "
                         "margin of %d (SLOT_MARGIN)" % (len(app), slot - len(app), slot, margin))
    return "ok: micropython.bin %d bytes (%d%% of a %d KiB slot, %d bytes to spare), version %s" % (
        len(app), len(app) * 100 // slot, slot // 1024, slot - len(app), version)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("image", help="the built app image (micropython.bin)")
    ap.add_argument("version", help="the version its app descriptor must carry")
    ap.add_argument("table", help="the partition table CSV it was built with")
    ap.add_argument("--margin", type=int, default=DEFAULT_MARGIN, help="bytes that must stay free in the slot")
    args = ap.parse_args()
    with open(args.image, "rb") as f:
        app = f.read()
    try:
        print(check(app, args.version, args.table, args.margin))
    except Exception as e:  # the release check raises its own error types
        print("error: %s" % e, file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()

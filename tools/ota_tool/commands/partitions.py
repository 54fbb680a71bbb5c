import json
import sys

from ..errors import ToolError

HELP = "check a partition table (CSV, or a binary one) and write the binary table for flash offset 0x8000"
DESCRIPTION = (HELP + ". The CSV is ESP-IDF's format (gen_esp32part); a binary table (partition-table.bin "
               "from a build) is read and shown too. Errors name the row.")


def add_arguments(p):
    p.add_argument("csv", metavar="CSV", help="partition table: ESP-IDF's CSV format (e.g. partitions.csv) or binary")
    p.add_argument("-o", "--output", help="write the 0xC00-byte binary table here")
    p.add_argument("--flash-size", default="4MB", help="flash size to check against (default 4MB)")
    p.add_argument("--json", action="store_true", help="print the parsed table as JSON")
    p.add_argument("--micropython", metavar="VERSION",
                   help="the firmware's MicroPython release (e.g. 1.25): before 1.26 the table must have a vfs row")


def flash_size(text):
    t = text.upper().rstrip("B")
    try:
        if t.endswith("M"):
            return int(t[:-1]) * 1024 * 1024
        if t.endswith("K"):
            return int(t[:-1]) * 1024
        return int(t, 0)
    except ValueError:
        raise ToolError("bad --flash-size %r" % text, "use e.g. 4MB, 8MB or 0x400000", exit_code=2)


def run(args):
    from ..files import os_error
    from ..flashing import load_table

    from .. import partitions

    if args.output:
        from ..files import check_not_input

        check_not_input(args.output, {"CSV": args.csv})
    parts, binary = load_table(args.csv, flash_size(args.flash_size))
    try:
        partitions.check_filesystem(parts, args.micropython)
    except partitions.PartitionTableError as e:
        raise ToolError("%s: %s" % (args.csv, e), "add a vfs row, or flash MicroPython 1.26 or later")
    if args.output:
        try:
            with open(args.output, "wb") as f:
                f.write(binary)
        except OSError as e:
            raise os_error(e, args.output, "write")
    if args.json:
        print(json.dumps({"ok": True, "partitions": [p.to_dict() for p in parts], "output": args.output}))
    else:
        for p in parts:
            print("%-10s %-4s 0x%02x  0x%06x  %7d KiB" % (p.name, "app" if p.is_app() else "data", p.subtype,
                                                        p.offset, p.size // 1024))
        if args.output:
            print("wrote %s (%d bytes, for flash offset 0x8000)" % (args.output, len(binary)), file=sys.stderr)
    return 0

import json
import sys

from ..errors import ToolError

HELP = "flash a board by cable: bootloader, partition table, blank otadata and the app (esptool)"
DESCRIPTION = (
    HELP + ". The app goes to the factory partition if the table has one, else to ota_0. Every piece "
    "is checked first (a merged firmware.bin given as the app is refused). With --merge-only, writes "
    "one whole-flash image instead (for factory programming: esptool write-flash 0x0 full.bin).")


def add_arguments(p):
    from ..ports import add_port_arguments

    add_port_arguments(p, baud=460800)  # auto: esptool finds the board; -b: the baud rate after connecting
    p.add_argument("--firmware", "-f", required=True, metavar="micropython.bin",
                   help="the app image (micropython.bin from the build, NOT firmware.bin)")
    p.add_argument("--bootloader", metavar="bootloader.bin",
                   help="2nd-stage bootloader (build/bootloader/bootloader.bin); without it the board keeps its own")
    p.add_argument("--partitions", metavar="CSV|BIN",
                   help="partition table, CSV or binary (default: the project's partitions.csv)")
    p.add_argument("--chip", default="esp32", help="target chip (default esp32)")
    p.add_argument("--flash-size", default="4MB", help="flash size the table must fit (default 4MB)")
    p.add_argument("--no-stub", action="store_true", help="talk to the ROM loader only (slower; some adapters need it)")
    p.add_argument("--before", default="default-reset",
                   choices=["default-reset", "usb-reset", "no-reset", "no-reset-no-sync"],
                   help="how to enter the bootloader (default: reset via DTR/RTS)")
    p.add_argument("--after", default="hard-reset", choices=["hard-reset", "soft-reset", "no-reset", "no-reset-stub"],
                   help="what to do when done (default: hard-reset, the board boots the new app)")
    p.add_argument("--erase-all", action="store_true",
                   help="erase the whole flash first (also removes the filesystem and NVS: keys, config, OTA state)")
    p.add_argument("--read-back", action="store_true",
                   help="after esptool's MD5 verify, also read every written byte back and compare")
    p.add_argument("--merge-only", action="store_true", help="do not flash: write one whole-flash image to -o")
    p.add_argument("--pad", action="store_true", help="with --merge-only: pad the image to the flash size")
    p.add_argument("-o", "--output", metavar="full.bin", help="output of --merge-only")
    p.add_argument("--json", action="store_true", help="machine-readable result on stdout (esptool's output goes to stderr)")
    p.add_argument("--micropython", metavar="VERSION",
                   help="the firmware's MicroPython release (e.g. 1.25): before 1.26 the table must have a vfs row")


def run(args):
    from .. import flashing
    from .partitions import flash_size

    if args.merge_only and not args.output:
        raise ToolError("--merge-only needs -o FILE", "e.g. --merge-only -o full.bin")
    if args.output:
        from ..files import check_not_input

        from ..sim import DEFAULT_PARTITIONS

        check_not_input(args.output, {"--firmware": args.firmware, "--bootloader": args.bootloader,
                                      "--partitions": args.partitions or DEFAULT_PARTITIONS})
    size = flash_size(args.flash_size)
    app = flashing.read_file(args.firmware, "firmware")
    boot = flashing.read_file(args.bootloader, "bootloader") if args.bootloader else None
    if args.merge_only and boot is None:
        raise ToolError("a whole-flash image needs the bootloader", "add --bootloader build/bootloader/bootloader.bin")
    layout = flashing.plan(app, boot, args.partitions, args.chip, size, micropython=args.micropython)
    out = sys.stderr if args.json else sys.stdout
    for r in layout.regions:
        print("  0x%06x  %-16s %8d bytes" % (r.offset, r.name, len(r.data)), file=out)
    for note in layout.notes:
        print("note: " + note, file=out)
    result = dict(layout.to_dict(), ok=True)
    if args.merge_only:
        data = flashing.merge(layout, pad=args.pad)
        try:
            with open(args.output, "wb") as f:
                f.write(data)
        except OSError as e:
            from ..files import os_error

            raise os_error(e, args.output, "write")
        result["output"] = args.output
        result["output_size"] = len(data)
        print("wrote %s: %d bytes for flash offset 0x0 (esptool --chip %s write-flash 0x0 %s)"
              % (args.output, len(data), args.chip, args.output), file=out)
    else:
        from ..ports import candidates

        port = None if args.port == "auto" else candidates(args.port)[0]  # None: esptool's own detection
        report = flashing.write(layout, port, baud=args.baud, no_stub=args.no_stub, before=args.before,
                                after=args.after, erase_all=args.erase_all, read_back=args.read_back, log=out)
        result.update(report)
        print("flashed %s: the app is in %s%s" % (report.get("port") or port or "the board", layout.app_partition.name,
                                                   ", read back and compared" if report["read_back"] else ""), file=out)
    if args.json:
        print(json.dumps(result))
    return 0

import json
import os

from ..errors import ToolError

HELP = "explain a flash image: partitions, otadata, app images, and what boots next"
DESCRIPTION = (HELP + ". FLASH is a simulated device (ota-tool demo makes one) or a dump of a real "
               "board: esptool read-flash 0 0x400000 dump.bin")


def add_arguments(p):
    p.add_argument("flash", metavar="FLASH", help="flash image file")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import flashinfo

    if not os.path.isfile(args.flash):
        raise ToolError("no such file: %s" % args.flash, "give a flash dump or a simulated device file")
    info = flashinfo.inspect(args.flash)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(flashinfo.format_text(info))
    return 0 if info.get("boot", {}).get("partition") else 1

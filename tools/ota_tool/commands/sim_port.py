import os

from ..errors import ToolError

HELP = "serve a simulated board on a pseudo-terminal, for deploy/device/mpremote without hardware"
DESCRIPTION = (
    HELP + ". Runs the MicroPython unix port attached to a simulated ESP32 (a flash file, e.g. from "
    "ota-tool demo, or --new) with FS_DIR as its filesystem, and prints the port to connect to. Like a board it "
    "runs boot.py and main.py, takes Ctrl-C, reboots through the simulated bootloader on machine.reset() and "
    "when its watchdog (machine.WDT) runs out, answers soft resets, and stops at the REPL when main.py raises.")


def add_arguments(p):
    from ..simport import DEFAULT_HEAP
    from .common import heap

    p.add_argument("--flash", required=True, metavar="DEVICE.bin", help="simulated device (flash image file)")
    p.add_argument("--fs", required=True, metavar="FS_DIR", help="folder playing the board's filesystem")
    p.add_argument("--new", action="store_true",
                   help="create DEVICE.bin first (a synthetic v1.0.0 app, flashed as by ota-tool flash)")
    p.add_argument("--partitions", metavar="CSV", help="with --new: partition table (default partitions.csv)")
    p.add_argument("--heap", default=DEFAULT_HEAP, type=heap,
                   help="MicroPython heap for the device code (default %s: see the README, \"The simulated "
                        "board's heap\")" % DEFAULT_HEAP)
    p.add_argument("--wifi", metavar="SSID",
                   help="the one Wi-Fi network in the board's reach (default: any SSID joins)")
    p.add_argument("--wifi-password-env", metavar="VAR", help="its password, from this environment variable")


def run(args):
    from .. import images, sim, simport

    wifi = None
    if args.wifi:
        password = os.environ.get(args.wifi_password_env, "") if args.wifi_password_env else ""
        wifi = (args.wifi, password)
    elif args.wifi_password_env:
        raise ToolError("--wifi-password-env needs --wifi SSID", "e.g. --wifi lab --wifi-password-env WIFI_PASSWORD", exit_code=2)
    if args.new:
        if os.path.exists(args.flash):
            raise ToolError("%s exists: refusing to overwrite it" % args.flash, "drop --new to use it")
        csv = None
        if args.partitions:
            from .. import filekinds
            from ..files import read_bytes

            raw = read_bytes(args.partitions)
            got = filekinds.kind(raw[:filekinds.SNIFF], len(raw))
            if got != "a partition table CSV":
                filekinds.refuse(args.partitions, "csv", got)
            csv = raw.decode()
        sim.create(args.flash, images.app_image("1.0.0"), partitions_csv=csv)
    simport.serve(args.flash, args.fs, args.heap, wifi=wifi)
    return 0

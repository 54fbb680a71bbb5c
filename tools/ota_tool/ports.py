"""Serial port names as mpremote and esptool take them.

    auto            the first USB serial port (mpremote's `connect auto`: a port with a USB VID:PID)
    u0 a0 c0 ...    /dev/ttyUSB0, /dev/ttyACM0, COM0 ... (mpremote's shortcuts, 0..9 here)
    id:SERIAL       the USB port with this serial number
    port:PATH       PATH, whatever it looks like
    anything else   a device path or pyserial URL (/dev/ttyUSB0, COM3, socket://host:port, a pty)
"""
from .errors import ToolError

SHORTCUTS = {"u": "/dev/ttyUSB", "a": "/dev/ttyACM", "c": "COM"}
PORT_HELP = ("serial port: auto (the first USB serial port, the default), u0/a0/c0 (/dev/ttyUSB0, /dev/ttyACM0, "
             "COM0), id:SERIAL, or a path or pyserial URL (/dev/ttyUSB0, COM3, socket://host:port, a pty from "
             "ota-tool sim-port)")
BAUD_HELP = "serial baud rate (default %d)"


def add_port_arguments(p, baud=115200, required=False):
    """--port/-p and --baud/-b, the same on every command that talks to a board."""
    p.add_argument("--port", "-p", default=None if required else "auto", required=required, metavar="PORT",
                   help=PORT_HELP)
    p.add_argument("--baud", "-b", type=int, default=baud, metavar="BAUD", help=BAUD_HELP % baud)


def candidates(name):
    """The device paths `name` stands for, in the order to try them."""
    name = (name or "auto").strip()
    if name.startswith("port:"):
        return [name[5:]]
    if len(name) >= 2 and name[0] in SHORTCUTS and name[1:].isdigit():
        return [SHORTCUTS[name[0]] + name[1:]]
    if name == "auto" or name.startswith("id:"):
        import serial.tools.list_ports

        found = sorted(serial.tools.list_ports.comports())
        if name == "auto":
            paths = [p.device for p in found if p.vid is not None and p.pid is not None]
            if not paths:
                raise ToolError("no USB serial port found (--port auto)",
                                "plug the board in, or give --port /dev/ttyUSB0 (a simulated board: the port "
                                "ota-tool sim-port prints)")
            return paths
        paths = [p.device for p in found if p.serial_number == name[3:]]
        if not paths:
            raise ToolError("no USB serial port with serial number %s" % name[3:], "list them: mpremote connect list")
        return paths
    return [name]

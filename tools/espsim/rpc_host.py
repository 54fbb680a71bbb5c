# The host side of espsim.rpc: answers a device process's chip calls with a LocalChip.
from .chip import PowerCut


def serve(chip, f):
    """Answer one device's calls on the binary file-like `f` with `chip` (a LocalChip), until the
    device hangs up or power fails. Runs in the host process."""
    import json

    while True:
        line = f.readline()
        if not line:
            return
        a = line.decode().split()
        if not a:
            continue  # a device resynchronising (espsim.rpc: _resync)
        op = a[0]
        try:
            out = b""
            if op == "partitions":
                out = json.dumps(chip.partitions()).encode()
                head = "OK %d" % len(out)
            elif op == "running":
                head = "OK %d" % chip.running()
            elif op == "boot_partition":
                head = "OK %d" % chip.boot_partition()
            elif op == "next_update":
                head = "OK %d" % chip.next_update(int(a[1]))
            elif op == "read":
                buf = bytearray(int(a[2]))
                chip.read(int(a[1]), buf)
                head, out = "OK", bytes(buf)
            elif op == "erase":
                chip.erase(int(a[1]), int(a[2]))
                head = "OK"
            elif op == "write":
                data = f.read(int(a[2]))
                chip.write(int(a[1]), data)
                head = "OK"
            elif op == "set_boot":
                err = chip.set_boot(int(a[1]))
                head = "ERR %d" % err if err else "OK"
            elif op == "mark_valid":
                err = chip.mark_valid()
                head = "ERR %d" % err if err else "OK"
            elif op == "nvs":
                sub, ns, key = a[1], a[2], a[3]
                value = None
                if sub == "set_blob":
                    value = f.read(int(a[4]))
                elif sub == "set_i32":
                    value = int(a[4])
                err, v = chip.nvs(sub, ns, key, value)
                if err:
                    head = "ERR %d" % err
                elif sub == "get_i32":
                    head = "OK %d" % v
                elif sub == "get_blob":
                    head, out = "OK %d" % len(v), v
                else:
                    head = "OK"
            elif op == "flags":
                out = json.dumps(chip.firmware_flags()).encode()
                head = "OK %d" % len(out)
            elif op == "mac":
                head = "OK " + chip.mac()
            elif op == "idf_info":
                out = json.dumps(chip.idf_heap_info()).encode()
                head = "OK %d" % len(out)
            elif op == "idf_charge":
                token = chip.idf_charge(a[1])
                head = "ERR %d" % 0x101 if token is None else "OK " + token  # ESP_ERR_NO_MEM
            elif op == "idf_release":
                chip.idf_release(a[1])
                head = "OK"
            elif op == "idf_held":
                head = "OK %d" % chip.idf_held(a[1])
            elif op == "idf_peak":
                head = "OK" if chip.idf_peak(int(a[1])) else "ERR %d" % 0x101
            elif op == "reset_cause":
                head = "OK %d" % chip.reset_cause()
            elif op == "micropython":
                head = "OK " + chip.micropython()
            elif op == "sync":
                head = "SYNC " + a[1]
            else:
                head = "ERR %d" % 0x102  # ESP_ERR_INVALID_ARG
        except PowerCut:
            f.write(b"CUT\n")
            f.flush()
            raise
        f.write(head.encode() + b"\n" + out)
        f.flush()

# The ESP-IDF heap of a simulated ESP32 (the "C heap", next to MicroPython's GC heap): where
# mbedTLS's buffers, lwIP's sockets and NVS handles live on a chip. A first-fit allocator over the
# chip's free regions, reporting what esp32.idf_heap_info() reports (ports/esp32/modesp32.c
# esp32_idf_heap_info: per region total, free, largest free block, minimum free seen).
#
# The budget: a stock ESP32_GENERIC with Wi-Fi connected, before the application opens anything.
#  - free 8-bit-capable regions at startup, ESP32 (pico-d4, IDF v4.4), in address order:
#    4,452 + 69,256 + 13,440 + 112,208 bytes (micropython/micropython#8940, "esp32: Heap
#    fragmentation and mbedtls/lwip", the startup heap dump);
#  - MicroPython takes its GC heap from them: 56 KiB at start (MICROPY_GC_INITIAL_HEAP_SIZE for
#    CONFIG_IDF_TARGET_ESP32, ports/esp32/mpconfigport.h), grown once by as much on demand
#    (MICROPY_GC_SPLIT_HEAP_AUTO; "chosen so they can grow the heap once (double it) and still
#    have enough internal RAM to start WiFi and make a HTTPS request", same file): the ~100 KB
#    device heap this project is written for;
#  - Wi-Fi: 28 KiB at initialisation (taken here as 1,600-byte buffers, the Wi-Fi driver's RX
#    buffer size) and 2.5 KiB once associated (#8940);
# played through this allocator at power-on (see BOOT), which leaves about 53 KB free, the largest
# block about 50 KB. What the device code then opens is charged here (CHARGES).
#
# Allocation failure returns None; the callers turn it into what the real call raises.

# multi_heap (TLSF since ESP-IDF 5.1): a 4-byte block header, 4-byte alignment; counted as 8 bytes
# of overhead per block (header + alignment on average).
BLOCK_OVERHEAD = 8
ALIGN = 4

STARTUP_REGIONS = (4452, 69256, 13440, 112208)
WIFI_BUFFER = 1600
BOOT = (("gc_heap", 56 * 1024), ("gc_heap", 56 * 1024)) + (("wifi", WIFI_BUFFER),) * 18 + (("wifi", 2560),)

# What the device's own objects cost in the C heap, in allocations of these sizes:
CHARGES = {
    # nvs_open: `new NVSHandleSimple` (nvs_partition_manager.cpp open_handle: list node, vtable,
    # Storage*, 4 flags) and `new NVSHandleEntry` (nvs_api.cpp nvs_open_from_partition: list node,
    # the handle, its number, the partition name). MicroPython never calls nvs_close.
    "nvs_handle": (24, 20),
    # an lwIP TCP socket: its PCB and the buffers it keeps while open (#8940: 4-7 KiB per socket)
    "socket": (4096,),
    # mbedTLS session with MicroPython's sdkconfig.base (CONFIG_MBEDTLS_ASYMMETRIC_CONTENT_LEN: 16 KiB
    # in, 4 KiB out): the record buffers as mbedtls_ssl_setup allocates them (16,717 and 4,429 bytes,
    # micropython/micropython#5303) and the session context
    "tls_session": (16717, 4429, 1024),
}
# The handshake's own peak on top of the session, freed when it ends (#8940: "a further ~15kiB at
# peak"; ESP-IDF's mbedtls.rst "Reducing Heap Usage": 42,196 B in all for a default connection).
TLS_HANDSHAKE_PEAK = 15 * 1024


class IdfHeap:
    def __init__(self, regions=STARTUP_REGIONS, boot=BOOT):
        # each region: [total, list of free [start, size] runs, minimum free seen]
        self.regions = []
        for size in regions:
            self.regions.append([size, [[0, size]], size])
        self.blocks = {}  # id -> (region index, start, size, tag)
        self._next = 1
        self.counts = {}  # tag -> blocks held
        for tag, n in boot:
            if self.alloc(n, tag) is None:
                raise ValueError("the boot allocations do not fit the heap")

    def alloc(self, n, tag):
        size = BLOCK_OVERHEAD + ((n + ALIGN - 1) // ALIGN) * ALIGN
        for ri, region in enumerate(self.regions):
            for run in region[1]:
                if run[1] >= size:
                    start = run[0]
                    run[0] += size
                    run[1] -= size
                    if not run[1]:
                        region[1].remove(run)
                    region[2] = min(region[2], self._free(region))
                    h = self._next
                    self._next += 1
                    self.blocks[h] = (ri, start, size, tag)
                    self.counts[tag] = self.counts.get(tag, 0) + 1
                    return h
        return None

    def free(self, h):
        ri, start, size, tag = self.blocks.pop(h)
        self.counts[tag] -= 1
        runs = self.regions[ri][1]
        runs.append([start, size])
        runs.sort()
        merged = []
        for run in runs:  # coalesce neighbours, as the real allocator does
            if merged and merged[-1][0] + merged[-1][1] == run[0]:
                merged[-1][1] += run[1]
            else:
                merged.append(run)
        self.regions[ri][1] = merged

    def charge(self, kind):
        """Allocate the blocks of one `kind` (CHARGES): their handles, or None (and nothing held)
        when one of them does not fit."""
        got = []
        for n in CHARGES[kind]:
            h = self.alloc(n, kind)
            if h is None:
                for g in got:
                    self.free(g)
                return None
            got.append(h)
        return got

    def release(self, handles):
        for h in handles:
            self.free(h)

    def held(self, tag):
        """How many of `tag` are held: charges of a CHARGES kind, else blocks."""
        return self.counts.get(tag, 0) // len(CHARGES.get(tag, (0,)))

    @staticmethod
    def _free(region):
        return sum(r[1] for r in region[1])

    def info(self):
        """[(total, free, largest free block, minimum free seen)] per region, as idf_heap_info."""
        out = []
        for total, runs, low in self.regions:
            free = sum(r[1] for r in runs)
            largest = max([r[1] for r in runs] or [0])
            # the largest block a caller can have: less the header of the block it would get
            out.append((total, free, max(0, largest - BLOCK_OVERHEAD) if largest else 0, low))
        return out

    def largest_free(self):
        return max(i[2] for i in self.info())

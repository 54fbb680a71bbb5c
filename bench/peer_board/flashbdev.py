# Stand-in for the ESP32 firmware's frozen `flashbdev` module (ports/esp32/modules/flashbdev.py),
# for bench/bench_peers.py only: the block device of the filesystem partition, found the same way
# (the "vfs" data partition, else TinyUF2's "ffat" with 512-byte blocks), here on the simulated
# board's esp32.Partition.
from esp32 import Partition

bdev = Partition.find(Partition.TYPE_DATA, label="vfs") or Partition.find(Partition.TYPE_DATA, label="ffat", block_size=512)
bdev = bdev[0] if bdev else None

"""The chip over a socket (espsim.rpc) when a call is cut short on the device: mpremote's Ctrl-C
lands between bytecodes, so between a request and the end of its response. The next call must get
its own answer (it once read the stale one: "can't convert NoneType to int" in running())."""
import pytest

from ota_tool import paths
from ota_tool.sim import _ChipServer

pytestmark = pytest.mark.micropython


class FakeChip:
    def running(self):
        return 0x10000

    def read(self, addr, buf):
        buf[:] = bytes((addr + i) & 0xFF for i in range(len(buf)))

    def write(self, addr, data):
        self.written = (addr, bytes(data))


CODE = """
import sys
sys.path.insert(0, %r)
from espsim.rpc import RemoteChip
c = RemoteChip(%d)
# a read cut short after its request: its response and 4 KiB payload are left unread
c._busy = True
c._s.write(b"read 0 4096\\n")
print("running", c.running())
# a write cut short half-way through its payload: the host still waits for 4096 bytes
c._busy = True
c._s.write(b"write 0 4096\\n" + bytes(100))
print("running", c.running())
buf = bytearray(8)
c.read(8, buf)
print("read", list(buf))
"""


def test_a_call_cut_short_does_not_put_the_next_out_of_step(mp):
    server = _ChipServer(chip=FakeChip())
    try:
        out = mp(CODE % (paths.SIM_ROOT, server.port), heap="128k")
    finally:
        server.close()
    assert out.split("\n")[:3] == ["running 65536", "running 65536", "read [8, 9, 10, 11, 12, 13, 14, 15]"], out
    assert server.error is None, server.error

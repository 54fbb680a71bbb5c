# The hot loops of the relocation-aware delta (ota/reloc.py): the transform T of the base image,
# as @micropython.viper on MicroPython and as plain Python (the twin) on CPython, where the host
# tool runs the same function over a whole image. Both must give the same bytes: tests compare
# them (tests/ota/test_reloc.py runs the viper twin under the MicroPython unix port).
#
# Common arguments:
#   src, s0   original base bytes: src[i - s0] is the base byte at file offset i
#   dst, d0   output: dst[i - d0] receives T(base) at file offset i, for a <= i < b; it holds the
#             original bytes on entry and only changed bytes are written
#   sf, se    the segment's file offsets [sf, se), loaded at address va (for file offset sf)
#   ms, md, nm  the address map: md[k] - BIAS is the shift of addresses ms[k] <= x < ms[k + 1]
#   ps, pe, np  literal pools [ps[k], pe[k]) (addresses, 4-aligned, sorted, disjoint)
# The caller provides src for file offsets max(sf, a - 4) .. min(se, b + 4): an instruction at q
# covers q..q+2 and is rewritten only if no instruction was found at q-1 or q-2.
#
# Xtensa encodings (Xtensa Instruction Set Architecture Reference Manual, "CALLN", "L32R",
# "ENTRY"; little-endian byte order as on the ESP32):
#   CALL4/8/12  op0 = 5 (bits 0-3), n = 1..3 (bits 4-5), offset = signed 18 bits (bits 6-23);
#               target = (PC & ~3) + (offset << 2) + 4
#   L32R        op0 = 1, imm16 = bits 8-23; literal = ((PC + 3) & ~3) + ((imm16 - 0x10000) << 2)
#   ENTRY       op0 = 6, n = 3, m = 0 (low byte 0x36), s = 1 (a1, the stack pointer) in bits 8-11
from . import MICROPYTHON

BIAS = 0x1000000  # map shifts are stored + BIAS: always a positive 32-bit array entry

if MICROPYTHON:
    from .xtensa_viper import code_rules, word_rules  # noqa: F401
else:
    from .xtensa_py import code_rules, word_rules  # noqa: F401 (the plain twins)

# The hot loops of the relocation-aware delta (ota/reloc.py): the transform T of the base image,
# as @micropython.viper on MicroPython and as plain Python (the twin) on CPython, where the host
# tool runs the same function over a whole image. Both must give the same bytes: tests compare
# them (tests/ota/test_delta_reloc.py runs the viper twin under the MicroPython unix port).
#
# Common arguments:
#   buf, d0, n  the base bytes at file offsets d0 .. d0 + n, transformed IN PLACE: only the bytes
#               T changes are written, each byte is read before any write could reach it
#   ctx         8 bytes: the base bytes at d0 - 4 .. d0 and d0 + n .. d0 + n + 4 (an instruction
#               at q covers q..q+2 and is rewritten only if none was found at q-1 or q-2; a word
#               may straddle the edges); only [a, b) is written
#   sf, se, va  the segment's file offsets [sf, se), loaded at address va (for file offset sf)
#   ms, md, nm  the address map: md[k] - BIAS is the shift of addresses ms[k] <= x < ms[k + 1]
#   ps, pe, np  literal pools [ps[k], pe[k]) (addresses, 4-aligned, sorted, disjoint)
#   entry       entry(t) -> 1 if an ENTRY instruction is at address t of the base (a flash read,
#               asked only where the map moves the target by another amount than the CALL)
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

import struct

from esp_idf_defs import otadata as idf_otadata

from espsim import otadata


def test_crc_matches_esp_idf():
    # REFERENCE §2: crc32_le(UINT32_MAX, seq) for seq = 1
    assert otadata.seq_crc(1) == 0x4743989A


def test_entry_roundtrip_and_independent_parser():
    e = otadata.Entry(seq=5, state=otadata.PENDING_VERIFY)
    e.crc = otadata.seq_crc(5)
    raw = e.pack()
    assert len(raw) == 32
    parsed = idf_otadata.OtaDataSelectEntry.from_bytes(raw)
    assert parsed.seq == 5
    assert int(parsed.ota_state) == otadata.PENDING_VERIFY
    # and the other way round: esp-idf-defs' own encoding reads back identically here
    theirs = idf_otadata.OtaDataSelectEntry(9, idf_otadata.OtaImageState.VALID).to_bytes()
    mine = otadata.Entry.unpack(theirs)
    assert (mine.seq, mine.state) == (9, otadata.VALID)
    assert mine.valid() and mine.crc == otadata.seq_crc(9)


def entry(seq, state=otadata.VALID, crc=None):
    e = otadata.Entry(seq=seq, state=state)
    e.crc = otadata.seq_crc(seq) if crc is None else crc
    return e


def test_selection_rules():
    blank = otadata.Entry()
    assert otadata.active_index([blank, blank]) == -1
    assert otadata.active_index([entry(1), blank]) == 0
    assert otadata.active_index([entry(1), entry(2)]) == 1
    assert otadata.active_index([entry(3), entry(2)]) == 0
    # aborted / invalid / bad crc copies are skipped
    assert otadata.active_index([entry(1), entry(2, otadata.ABORTED)]) == 0
    assert otadata.active_index([entry(1), entry(2, otadata.INVALID)]) == 0
    assert otadata.active_index([entry(1), entry(2, crc=123)]) == 0
    # a tie goes to copy 0
    assert otadata.active_index([entry(2), entry(2)]) == 0
    # "invalid" (bootloader's own predicate) ignores the CRC, "valid" does not
    assert not entry(2, crc=123).invalid() and not entry(2, crc=123).valid()


def test_unpack_layout():
    raw = struct.pack("<I20sII", 7, b"\xff" * 20, otadata.NEW, otadata.seq_crc(7))
    e = otadata.Entry.unpack(raw)
    assert (e.seq, e.state, e.crc) == (7, otadata.NEW, otadata.seq_crc(7))

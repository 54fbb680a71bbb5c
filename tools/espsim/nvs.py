"""ESP-IDF NVS (nvs_flash, on-flash format version 2) over a simulated Flash.

This is what `esp32.NVS(namespace)` reads and writes on a device: i32 and blob entries in
namespaces. Written from the ESP-IDF sources (components/nvs_flash/src: nvs_types.hpp/.cpp,
nvs_page.hpp/.cpp, nvs_pagemanager.cpp, nvs_storage.cpp); its images are byte-identical to those
of Espressif's generator (esp_idf_nvs_partition_gen) and it reads the generator's v1 and v2
images. No code was copied.

Format (little-endian). The partition is a row of 4 KiB pages:
  page +0    header, 32 bytes: state u32 | seq u32 | version u8 (0xFE = v2, 0xFF = v1) |
             19 x 0xFF | crc32 of bytes 4..27
  page +32   entry state table: 2 bits per entry, entry i at bits 2*(i%16) of word i//16:
             0b11 empty, 0b10 written, 0b00 erased (0b01 is illegal)
  page +64   126 entries of 32 bytes:
             ns u8 | type u8 | span u8 | chunk u8 | crc32 u32 | key[16] (NUL padded) | data[8]
             with crc32 over bytes 0..3 and 8..31. Types: u8 0x01, i8 0x11, u16 0x02, i16 0x12,
             u32 0x04, i32 0x14, u64 0x08, i64 0x18, float 0x24, double 0x28 (value in data[],
             0xFF padded); str 0x21, blob v1 0x41, blob data 0x42 (data[] = size u16 | 0xFFFF |
             crc32 of the data, then span-1 entries of data, the last one 0xFF padded); blob
             index 0x48. Namespace entries: ns 0, type u8, key = name, data[0] = index 1..254.
  blob (v2): chunks (0x42, chunk = chunkStart + n), each at most the tail room of one page,
             then an index (0x48, chunk 0xFF): size u32 | chunk count u8 | chunkStart u8 (0x00
             or 0x80, toggled on every update) | 0xFFFF.
  page state words: 0xFFFFFFFF uninitialized, 0xFFFFFFFE active, 0xFFFFFFFC full,
             0xFFFFFFF8 freeing; anything else, a bad header crc, or an "uninitialized" header on
             a page that is not all 0xFF is corrupt. Pages are used in sequence-number order.

Writes happen in IDF's order and with its flash operation granularity (one Flash.write per IDF
partition write): an entry, then its state-table word; the data of a variable length item in
one write, then its state words from the highest to the lowest; an update writes the new item,
then erases the old one; a blob update writes the new chunks and index, then erases the old
index, then the old chunks; an unchanged value is not written. When the active page is full it
is marked full and a new page is taken; when only one free page is left, the page with the most
unused entries is marked freeing, its live entries copied to the free page one by one, and it is
erased: one page always stays free.

Loading (the constructor) repairs what a power cut leaves, as IDF's load does: entries written
after the last one the state table knows are marked erased; variable length items whose entries
are not all written are erased; of two items with the same namespace, key and chunk on the active
page the older is erased; the newest page's last item erases its older copy on an earlier page;
an interrupted reclaim (freeing page) is redone; blob chunks no index covers are erased; corrupt
pages are set aside and erased when taken.

API: NvsStorage(flash, offset, size, idf_quirks=True) with get_i32/set_i32, get_blob (bytes, or
get_blob(ns, key, buf) -> length, filling buf like esp32.NVS)/set_blob, erase_key, keys(ns) ->
[(key, type name)], namespaces(). NvsNotFound for a missing key or namespace; NvsError(reason,
message) otherwise, reasons: bad_partition, key_too_long, bad_key, bad_value, value_too_long,
type_mismatch, no_space, no_free_pages, new_version, corrupt, invalid_state. flash.PowerCut is
never caught. MicroPython's ESP32 port erases the whole NVS partition at boot when
nvs_flash_init() fails with no_free_pages or new_version (ports/esp32/main.c,
boardctrl_startup). dump(flash, offset, size): a read-only summary for inspection.
RAM (MicroPython unix port, x64): an open NvsStorage of 4 pages takes ~2 KB (per page a 32-byte
state table and a 126-byte hash index, a few 32-byte buffers, the namespace table); nothing grows
with the number of keys, and blobs are read into one buffer (or the caller's). The module itself
takes ~22 KB of heap once imported from .mpy; dump() is for the host.

Deviations from IDF, on purpose:
- A new page is the lowest-numbered free page; IDF keeps a FIFO list of free pages. They only
  differ after a load that redid a reclaim; this way the state after a reboot is the state of a
  running instance, which the power-cut tests rely on.
- Reads never write: IDF erases an item whose data crc fails when it reads it. Here such a read
  raises NvsError("corrupt"), as does a blob with a missing chunk (IDF returns ESP_FAIL there).
- Items are found through a one-byte hash per entry and compared exactly; IDF's 24-bit hash list
  decides duplicates on the hash alone, so a collision could erase an unrelated item there.
- Reading with the wrong type raises NvsError("type_mismatch") (IDF's nvs_get_* returns
  ESP_ERR_NVS_NOT_FOUND); writing an existing key with another type raises it too (IDF replaces
  an i32 by a blob and the reverse inconsistently, sometimes keeping both).
- A namespace entry is written on the first set in that namespace (IDF: at nvs_open READWRITE).
- A blob write that runs out of space erases its chunks by their real chunk indices (IDF
  erases chunk indices 0..n-1, which can hit the previous version; esp-idf PR #18827).
- Entries are validated like IDF's Item::checkHeaderConsistency (recent IDF); an unknown type is
  invalid and erased at load. No encryption; strings are listed and dumped, not written.
- idf_quirks=True (default) keeps IDF's "check that last item is not duplicate" step of the
  active page load as it is: for a blob data chunk it looks the key up WITHOUT the chunk index,
  so a cut after a new chunk is complete and before its index is written erases the previous
  version's chunk when that sits on the same page; the key then reads as NvsError("corrupt")
  (IDF: ESP_FAIL) until it is written again. idf_quirks=False looks the chunk up with its index
  and keeps the old value.
"""
import struct
from binascii import crc32

PAGE = 4096
_ENTRY = 32
_ENTRIES = 126
_BITMAP = 32
_DATA = 64
_CHUNK_MAX = 4000  # (_ENTRIES - 1) * _ENTRY
_VERSION = 0xFE
_NS_MAX = 254

# page states, in memory
UNINITIALIZED = 0
ACTIVE = 1
FULL = 2
FREEING = 3
CORRUPT = 4
STATE_NAMES = ("UNINITIALIZED", "ACTIVE", "FULL", "FREEING", "CORRUPT")
# ... and on flash
_PS_WORDS = (0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFC, 0xFFFFFFF8)

# entry states
_EMPTY = 3
_WRITTEN = 2
_ILLEGAL = 1
_ERASED = 0

T_U8 = 0x01
T_I32 = 0x14
T_STR = 0x21
T_BLOB_V1 = 0x41
T_BLOB_DATA = 0x42
T_BLOB_IDX = 0x48
_ANY = 0xFF
_VER0 = 0x00
_VER1 = 0x80

TYPE_NAMES = {
    0x01: "u8", 0x11: "i8", 0x02: "u16", 0x12: "i16", 0x04: "u32", 0x14: "i32",
    0x08: "u64", 0x18: "i64", 0x24: "float", 0x28: "double", 0x21: "str", 0x41: "blob",
    0x42: "blob_data", 0x48: "blob",
}
_PRIMITIVES = {0x01: "<B", 0x11: "<b", 0x02: "<H", 0x12: "<h", 0x04: "<I", 0x14: "<i",
               0x08: "<Q", 0x18: "<q", 0x24: "<f", 0x28: "<d"}
_FF4 = b"\xff\xff\xff\xff"
_Z16 = bytes(16)
_FF128 = b"\xff" * 128
# number of written entries in one byte of the state table (4 entries)
_NWRITTEN = bytes(sum(1 for s in (0, 2, 4, 6) if (b >> s) & 3 == _WRITTEN) for b in range(256))


class NvsError(Exception):
    def __init__(self, reason, message):
        super().__init__(message)
        self.reason = reason


class NvsNotFound(Exception):
    pass


def _is_var(t):
    return t == T_BLOB_DATA or t == T_BLOB_V1 or t == T_STR


def _item_crc(buf):
    mv = memoryview(buf)
    return crc32(mv[8:32], crc32(mv[0:4], 0xFFFFFFFF))


def _crc_ok(buf):
    return struct.unpack_from("<I", buf, 4)[0] == _item_crc(buf)


def _consistent(buf, i):
    # Item::checkHeaderConsistency: crc, then what the type allows for span/chunk/size.
    if not _crc_ok(buf):
        return False
    t = buf[1]
    span = buf[2]
    if t in _PRIMITIVES:
        return span == 1
    if t == T_BLOB_IDX:
        return span == 1 and buf[3] == _ANY and struct.unpack_from("<I", buf, 24)[0] <= 127 * _CHUNK_MAX
    if _is_var(t):
        if t == T_BLOB_DATA and buf[3] == _ANY:
            return False
        size = struct.unpack_from("<H", buf, 24)[0]
        if size > (_ENTRIES - i - 1) * _ENTRY or span > _ENTRIES - i:
            return False
        return span == (size + _ENTRY - 1) // _ENTRY + 1
    return False


def _hash(buf):
    # 1..255 from (ns, key, chunk) of an entry; 0 marks "no live item starts here"
    return 1 + crc32(memoryview(buf)[8:24], buf[0] << 8 | buf[3]) % 255


def _key_eq(buf, kb):
    # strncmp(key, item.key, 15) == 0
    n = len(kb)
    return memoryview(buf)[8:8 + n] == kb and (n == 15 or buf[8 + n] == 0)


def _item_key(buf):
    k = bytes(buf[8:23])
    z = k.find(b"\x00")
    return k if z < 0 else k[:z]


def _key_bytes(name):
    # a key or namespace name: a str of 1..15 bytes (UTF-8), no NUL
    kb = name.encode() if isinstance(name, str) else b""
    if len(kb) > 15:
        raise NvsError("key_too_long", "name longer than 15 bytes: %r" % name)
    if not kb or b"\x00" in kb:
        raise NvsError("bad_key", "name must be a str of 1..15 bytes: %r" % (name,))
    return kb


def _decode(kb):
    try:
        return kb.decode()
    except UnicodeError:
        return repr(kb)


class NvsStorage:
    """The NVS partition at `offset` (`size` bytes) of `flash`, loaded and repaired as IDF does."""

    def __init__(self, flash, offset, size, idf_quirks=True):
        if offset % PAGE or size % PAGE or size < 3 * PAGE:
            raise NvsError("bad_partition", "NVS needs 3+ aligned 4 KiB pages: 0x%x+0x%x" % (offset, size))
        self.flash = flash
        self.base = offset
        self.npages = n = size // PAGE
        self.quirks = idf_quirks
        self._st = [UNINITIALIZED] * n
        self._seq = [0] * n
        self._bm = [bytearray(_FF128[:32]) for _ in range(n)]
        self._next = [0] * n
        # per page, at each live item's first entry: _hash() of it (IDF's HashList, one byte each)
        self._hx = [bytearray(_ENTRIES) for _ in range(n)]
        self._used = []  # pages holding data (or taken), oldest sequence number first
        self._next_seq = 0
        self._buf = bytearray(_ENTRY)
        self._buf2 = bytearray(_ENTRY)
        self._w = bytearray(4)
        self._h1 = bytearray(1)
        self._ns = {}  # namespace name (bytes) -> index
        self._found = (0, 0)  # where _lookup found its item
        self._load()

    # ---- public API

    def get_i32(self, ns, key):
        self._lookup(ns, key)
        if self._buf[1] != T_I32:
            raise self._mismatch(key, "i32")
        return struct.unpack_from("<i", self._buf, 24)[0]

    def set_i32(self, ns, key, value):
        kb = _key_bytes(key)
        if not isinstance(value, int) or not -0x80000000 <= value <= 0x7FFFFFFF:
            raise NvsError("bad_value", "not an i32: %r" % (value,))
        nsi = self._namespace(ns, True)
        old = self._sfind(nsi, _ANY, kb)
        if old is not None:
            if self._buf[1] != T_I32:
                raise self._mismatch(key, "i32")
            if struct.unpack_from("<i", self._buf, 24)[0] == value:
                return  # IDF skips writing an unchanged value
        new = self._write_item(nsi, T_I32, kb, struct.pack("<i", value))
        if old is not None:
            # the old item: the first match that is not the new one (a reclaim may have moved it)
            r = self._sfind(nsi, _ANY, kb)
            if r is not None and r != new:
                self._erase_span(r[0], r[1])

    def get_blob(self, ns, key, buf=None):
        """The blob's bytes; or, given `buf`, fill it and return the length (like esp32.NVS)."""
        self._lookup(ns, key)
        t = self._buf[1]
        nsi = self._buf[0]
        kb = _item_key(self._buf)
        if t == T_BLOB_V1:
            size = struct.unpack_from("<H", self._buf, 24)[0]
            count = 1
            start = 0
        elif t == T_BLOB_IDX:
            size, count, start = struct.unpack_from("<IBB", self._buf, 24)
        else:
            raise self._mismatch(key, "blob")
        if buf is None:
            # one chunk: read it as the bytes returned, without a second copy
            out = None if count == 1 else bytearray(size)
        elif len(buf) < size:
            raise NvsError("bad_value", "blob %r needs %d bytes" % (key, size))
        else:
            out = buf
        off = 0
        for c in range(count):
            r = self._found if t == T_BLOB_V1 else self._sfind(nsi, T_BLOB_DATA, kb, start + c)
            n = struct.unpack_from("<H", self._buf, 24)[0] if r is not None else 0
            if r is None or off + n > size:
                raise NvsError("corrupt", "blob %r: chunk %d missing" % (key, c))
            want = struct.unpack_from("<I", self._buf, 28)[0]
            a = self._addr(r[0], r[1] + 1)
            if out is None:
                out = self.flash.read(a, n)
                data = out
            else:
                data = memoryview(out)[off:off + n]
                if n:
                    self.flash.readinto(a, data)
            if crc32(data, 0xFFFFFFFF) != want:
                raise NvsError("corrupt", "blob %r: chunk %d crc" % (key, c))
            off += n
        if off != size:
            raise NvsError("corrupt", "blob %r: chunks short" % key)
        if buf is not None:
            return size
        return out if isinstance(out, bytes) else bytes(out or b"")

    def set_blob(self, ns, key, data):
        kb = _key_bytes(key)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise NvsError("bad_value", "blob must be bytes-like: %r" % type(data))
        n = len(data)
        limit = min(self.npages - 1, 127) * _CHUNK_MAX
        if n > limit:
            raise NvsError("value_too_long", "blob over %d bytes" % limit)
        nsi = self._namespace(ns, True)
        old = self._sfind(nsi, _ANY, kb)
        prev = -1
        if old is not None:
            t = self._buf[1]
            if t == T_BLOB_IDX:
                prev = self._buf[29]
                if self._blob_equal(nsi, kb, data):
                    return
            elif t != T_BLOB_V1:
                raise self._mismatch(key, "blob")
        self._write_blob(nsi, kb, data, _VER1 if prev == _VER0 else _VER0)
        if prev >= 0:
            self._erase_blob(nsi, kb, prev)
        elif old is not None:
            r = self._sfind(nsi, T_BLOB_V1, kb)
            if r is not None:
                self._erase_span(r[0], r[1])

    def erase_key(self, ns, key):
        self._lookup(ns, key)
        t = self._buf[1]
        if t == T_BLOB_IDX or t == T_BLOB_DATA:
            self._erase_blob(self._buf[0], _item_key(self._buf), _ANY)
        else:
            self._erase_span(self._found[0], self._found[1])

    def keys(self, ns):
        """[(key, type name)] of namespace `ns`, oldest first; [] for an unknown namespace."""
        nsi = self._ns.get(_key_bytes(ns))
        out = []
        if nsi is None:
            return out
        for p in self._used:
            i = self._find(p, nsi, _ANY, None, _ANY, _ANY, 0)
            while i >= 0:
                t = self._buf[1]
                if t != T_BLOB_DATA:
                    out.append((_decode(_item_key(self._buf)), TYPE_NAMES.get(t, "0x%02x" % t)))
                i = self._find(p, nsi, _ANY, None, _ANY, _ANY, i + (self._buf[2] if _is_var(t) else 1))
        return out

    def namespaces(self):
        return sorted(_decode(k) for k in self._ns)

    # ---- lookups

    def _namespace(self, ns, create):
        nb = _key_bytes(ns)
        nsi = self._ns.get(nb)
        if nsi is None:
            if not create:
                raise NvsNotFound(ns)
            used = list(self._ns.values())
            nsi = 1
            while nsi in used:
                nsi += 1
            if nsi > _NS_MAX:
                raise NvsError("no_space", "no namespace index left")
            self._write_item(0, T_U8, nb, bytes((nsi,)))
            self._ns[nb] = nsi
        return nsi

    def _lookup(self, ns, key):
        # The item of key in ns (any type but a blob chunk): left in self._buf, its place in
        # self._found.
        kb = _key_bytes(key)
        nsi = self._namespace(ns, False)
        r = self._sfind(nsi, _ANY, kb)
        if r is None:
            raise NvsNotFound(key)
        self._found = r

    def _mismatch(self, key, want):
        return NvsError("type_mismatch", "%r is not a %s" % (key, want))

    def _sfind(self, ns, typ, kb, chunk=_ANY, cstart=_ANY):
        # Storage::findItem: the first page (oldest first) whose findItem succeeds.
        for p in self._used:
            i = self._find(p, ns, typ, kb, chunk, cstart, 0)
            if i >= 0:
                return (p, i)
        return None

    def _find(self, p, ns, typ, kb, chunk, cstart, start):
        """Page::findItem: index of the item (left in self._buf), -1 not found, -2 type mismatch."""
        if self._st[p] not in (ACTIVE, FULL, FREEING):
            return -1
        # IDF's hash index starts the scan at the first item with this (ns, key, chunk); the items
        # after it that decide the result have the same (ns, key, chunk), so only those are read.
        h = 0
        if ns != _ANY and kb is not None and (typ != T_BLOB_DATA or chunk != _ANY):
            q = self._buf2
            q[0] = ns
            q[3] = chunk
            q[8:24] = _Z16
            q[8:8 + len(kb)] = kb
            h = self._h1[0] = _hash(q)
        hx = self._hx[p]
        buf = self._buf
        i = start
        while i < _ENTRIES:
            if h:
                i = hx.find(self._h1, i)
                if i < 0:
                    return -1
            elif not hx[i]:
                i += 1
                continue
            j = i
            i += 1
            self._read(p, j, buf)
            t = buf[1]
            if h and (buf[0] != ns or buf[3] != chunk or not _key_eq(buf, kb)):
                continue  # a hash collision
            if ns != _ANY and buf[0] != ns:
                continue
            if kb is not None and not _key_eq(buf, kb):
                continue
            if not _crc_ok(buf):
                continue  # IDF erases it there; a load leaves none (checked only here, for speed)
            if typ == T_BLOB_DATA and ((chunk != _ANY and buf[3] != chunk) or (chunk == _ANY and t != T_BLOB_DATA)):
                continue
            if chunk == _ANY and typ == T_BLOB_V1:
                if t == T_BLOB_IDX:
                    return -2
                if t == T_BLOB_DATA:
                    continue
            if typ == T_BLOB_IDX and (buf[3] != _ANY or (cstart != _ANY and buf[29] != cstart)):
                continue
            if typ != _ANY and t != typ:
                if kb is None and ns == _ANY and chunk == _ANY:
                    continue
                return -2
            return j
        return -1

    # ---- blobs

    def _blob_equal(self, nsi, kb, data):
        # Storage::cmpMultiPageBlob, streaming the flash side 32 bytes at a time.
        size, count, start = struct.unpack_from("<IBB", self._buf, 24)
        n = len(data)
        if size != n:
            return False
        src = memoryview(data)
        b2 = self._buf2
        off = 0
        for c in range(count):
            r = self._sfind(nsi, T_BLOB_DATA, kb, start + c)
            if r is None:
                return False
            csize, _, dcrc = struct.unpack_from("<HHI", self._buf, 24)
            if off + csize > n or crc32(src[off:off + csize], 0xFFFFFFFF) != dcrc:
                return False
            a = self._addr(r[0], r[1] + 1)
            k = 0
            while k < csize:
                m = min(_ENTRY, csize - k)
                self.flash.readinto(a + k, b2)
                if memoryview(b2)[:m] != src[off + k:off + k + m]:
                    return False
                k += m
            off += csize
        return off == n

    def _write_blob(self, nsi, kb, data, start):
        # Storage::writeMultiPageBlob
        src = memoryview(data)
        n = len(data)
        count = 0
        off = 0
        remaining = n
        try:
            while True:
                p = self._used[-1]
                tail = self._tailroom(p)
                if count == 0 and (tail < n or (tail == 0 and n == 0)) and tail < _CHUNK_MAX // 10:
                    # too little room for a first chunk: start it on a new page
                    if self._st[p] != FULL:
                        self._mark_state(p, FULL)
                    self._request_new_page()
                    if self._tailroom(self._used[-1]) == tail:
                        raise NvsError("no_space", "NVS full")
                    continue
                if tail == 0:
                    raise NvsError("no_space", "NVS full")
                size = min(remaining, tail)
                remaining -= size
                self._page_write(p, nsi, T_BLOB_DATA, kb, src[off:off + size], start + count)
                count += 1
                if remaining or tail - size < _ENTRY:
                    if self._st[p] != FULL:
                        self._mark_state(p, FULL)
                    self._request_new_page()
                off += size
                if not remaining:
                    idx = struct.pack("<IBBH", n, count, start, 0xFFFF)
                    if self._page_write(self._used[-1], nsi, T_BLOB_IDX, kb, idx) < 0:
                        raise NvsError("no_space", "NVS full")
                    return
        except NvsError:
            for c in range(count):
                r = self._sfind(nsi, T_BLOB_DATA, kb, start + c)
                if r is not None:
                    self._erase_span(r[0], r[1])
            raise

    def _erase_blob(self, nsi, kb, cstart):
        # Storage::eraseMultiPageBlob: the index first (making the chunks orphans), then chunks.
        r = self._sfind(nsi, T_BLOB_IDX, kb, _ANY, cstart)
        if r is None:
            return
        count, start = struct.unpack_from("<BB", self._buf, 28)
        self._erase_span(r[0], r[1])
        for c in range(count):
            r = self._sfind(nsi, T_BLOB_DATA, kb, start + c)
            if r is not None:
                self._erase_span(r[0], r[1])

    # ---- pages and entries

    def _addr(self, p, i):
        return self.base + p * PAGE + _DATA + i * _ENTRY

    def _read(self, p, i, buf):
        self.flash.readinto(self._addr(p, i), buf)

    def _es(self, p, i):
        return (self._bm[p][i >> 2] >> ((i & 3) << 1)) & 3

    def _mark(self, p, a, b, v):
        # Page::alterEntryState / alterEntryRangeState: entries [a, b) to state v, writing each
        # 4-byte word of the table once, from the highest to the lowest.
        bm = self._bm[p]
        for i in range(a, b):
            sh = (i & 3) << 1
            bm[i >> 2] = (bm[i >> 2] & (0xFF ^ (3 << sh))) | (v << sh)
        w = (b - 1) >> 4
        while w >= a >> 4:
            self.flash.write(self.base + p * PAGE + _BITMAP + w * 4, memoryview(bm)[w * 4:w * 4 + 4])
            w -= 1

    def _erase_span(self, p, i):
        # Page::eraseEntryAndSpan
        span = 1
        if self._es(p, i) == _WRITTEN:
            b = self._buf2
            self._read(p, i, b)
            if _consistent(b, i):
                span = b[2]
        self._hx[p][i] = 0
        self._mark(p, i, i + span, _ERASED)
        if i + span > self._next[p]:
            self._next[p] = i + span

    def _written(self, p):
        n = 0
        for b in self._bm[p]:
            n += _NWRITTEN[b]
        return n

    def _tailroom(self, p):
        # Page::getVarDataTailroom
        st = self._st[p]
        if st == UNINITIALIZED:
            return _CHUNK_MAX
        if st != ACTIVE:
            return 0
        n = self._next[p]
        return (_ENTRIES - n - 1) * _ENTRY if n < _ENTRIES - 1 else 0

    def _init_page(self, p):
        # Page::initialize: one 32-byte header write.
        h = bytearray(_FF128[:32])
        struct.pack_into("<IIB", h, 0, _PS_WORDS[ACTIVE], self._seq[p], _VERSION)
        struct.pack_into("<I", h, 28, crc32(memoryview(h)[4:28], 0xFFFFFFFF))
        self.flash.write(self.base + p * PAGE, h)
        self._st[p] = ACTIVE
        self._next[p] = 0

    def _mark_state(self, p, st):
        # Page::alterPageState: the state word alone.
        self.flash.write(self.base + p * PAGE, struct.pack("<I", _PS_WORDS[st]))
        self._st[p] = st

    def _erase_page(self, p):
        self.flash.erase(self.base + p * PAGE, PAGE)
        self._st[p] = UNINITIALIZED
        self._bm[p][:] = _FF128[:32]
        self._hx[p][:] = bytes(_ENTRIES)
        self._next[p] = 0

    def _page_write(self, p, nsi, typ, kb, data, chunk=_ANY):
        """Page::writeItem: index of the new item, or -1 if the page cannot take it."""
        if self._st[p] == UNINITIALIZED:
            self._init_page(p)
        if self._st[p] != ACTIVE:
            return -1
        n = len(data)
        var = _is_var(typ)
        i = self._next[p]
        if i + 1 + ((n + _ENTRY - 1) // _ENTRY if var else 0) > _ENTRIES:
            return -1
        buf = self._buf
        buf[:] = _FF128[:32]
        buf[0] = nsi
        buf[1] = typ
        buf[2] = 1 + (n + _ENTRY - 1) // _ENTRY if var else 1
        buf[3] = chunk
        buf[8:24] = _Z16
        buf[8:8 + len(kb)] = kb
        if var:
            struct.pack_into("<HHI", buf, 24, n, 0xFFFF, crc32(data, 0xFFFFFFFF))
        else:
            buf[24:24 + n] = data
        struct.pack_into("<I", buf, 4, _item_crc(buf))
        self.flash.write(self._addr(p, i), buf)
        self._mark(p, i, i + 1, _WRITTEN)
        self._hx[p][i] = _hash(buf)
        nxt = i + 1
        if var:
            full = n - n % _ENTRY
            if full:
                self.flash.write(self._addr(p, nxt), data[:full])
                self._mark(p, nxt, nxt + full // _ENTRY, _WRITTEN)
                nxt += full // _ENTRY
            if full < n:
                buf[:] = _FF128[:32]
                buf[:n - full] = data[full:]
                self.flash.write(self._addr(p, nxt), buf)
                self._mark(p, nxt, nxt + 1, _WRITTEN)
                nxt += 1
        self._next[p] = nxt
        return i

    def _write_item(self, nsi, typ, kb, data):
        # Storage::writeItem's write: the current page, else mark it full and take a new one.
        p = self._used[-1]
        i = self._page_write(p, nsi, typ, kb, data)
        if i < 0:
            if self._st[p] != FULL:
                self._mark_state(p, FULL)
            self._request_new_page()
            p = self._used[-1]
            i = self._page_write(p, nsi, typ, kb, data)
            if i < 0:
                raise NvsError("no_space", "NVS full")
        return (p, i)

    def _free_pages(self):
        return [p for p in range(self.npages) if p not in self._used]

    def _activate(self):
        # PageManager::activatePage (lowest free page; see the module docstring).
        free = self._free_pages()
        if not free:
            raise NvsError("no_space", "NVS full")
        p = free[0]
        if self._st[p] == CORRUPT:
            self._erase_page(p)
        self._used.append(p)
        self._seq[p] = self._next_seq
        self._next_seq += 1

    def _request_new_page(self):
        # PageManager::requestNewPage: keep one page free, reclaiming the emptiest page.
        free = len(self._free_pages())
        if free == 0:
            raise NvsError("invalid_state", "no free page")
        if free >= 2:
            self._activate()
            return
        victim = -1
        best = 0
        for p in self._used:
            unused = _ENTRIES - self._written(p)
            if unused > best:
                best = unused
                victim = p
        if victim < 0:
            raise NvsError("no_space", "NVS full")
        if self._st[victim] not in (ACTIVE, FULL):
            raise NvsError("invalid_state", "page %d" % victim)
        self._mark_state(victim, FREEING)
        self._activate()
        self._copy(victim, self._used[-1])
        self._erase_page(victim)
        self._used.remove(victim)

    def _copy(self, src, dst):
        # Page::copyItems: every written item, entry by entry (entry write + state word each).
        if not self._written(src):
            return
        i = 0
        if self._st[dst] == UNINITIALIZED:
            self._init_page(dst)
        b = self._buf2
        while i < _ENTRIES:
            if self._es(src, i) != _WRITTEN:
                i += 1
                continue
            self._read(src, i, b)
            end = min(i + max(b[2], 1), _ENTRIES)
            for j in range(i, end):
                if j > i:
                    self._read(src, j, b)
                k = self._next[dst]
                if k >= _ENTRIES:
                    raise NvsError("invalid_state", "reclaim overflow")
                self.flash.write(self._addr(dst, k), b)
                self._mark(dst, k, k + 1, _WRITTEN)
                if j == i:
                    self._hx[dst][k] = self._hx[src][i]
                self._next[dst] = k + 1
            i = end

    # ---- load

    def _load(self):
        for p in range(self.npages):
            self._load_page(p)
        used = [p for p in range(self.npages) if self._st[p] in (ACTIVE, FULL, FREEING)]
        used.sort(key=lambda p: (self._seq[p], p))
        self._used = used
        if not used:
            self._next_seq = 0
            self._activate()
            return
        self._next_seq = self._seq[used[-1]] + 1
        self._drop_old_copy_of_last_item()
        for p in used:
            if self._st[p] == FREEING:
                # power failed while p was being reclaimed: drop the partial copy, copy again
                newest = used[-1]
                if self._st[newest] == ACTIVE:
                    self._erase_page(newest)
                    used.remove(newest)
                self._activate()
                self._copy(p, used[-1])
                self._erase_page(p)
                used.remove(p)
                break
        if not self._free_pages():
            raise NvsError("no_free_pages", "no free page (ESP_ERR_NVS_NO_FREE_PAGES)")
        self._load_items()

    def _load_page(self, p):
        # Page::load
        a = self.base + p * PAGE
        h = self._buf
        self.flash.readinto(a, h)
        word = struct.unpack_from("<I", h, 0)[0]
        if word == _PS_WORDS[UNINITIALIZED]:
            # an erased page must be blank through and through (a torn erase is not)
            self._st[p] = UNINITIALIZED
            b = bytearray(128)
            for k in range(0, PAGE, 128):
                self.flash.readinto(a + k, b)
                if b != _FF128:
                    self._st[p] = CORRUPT
                    break
            return
        if struct.unpack_from("<I", h, 28)[0] != crc32(memoryview(h)[4:28], 0xFFFFFFFF):
            self._st[p] = CORRUPT
            return
        if h[8] < _VERSION:
            raise NvsError("new_version", "page %d format 0x%02x (ESP_ERR_NVS_NEW_VERSION_FOUND)" % (p, h[8]))
        self._seq[p] = struct.unpack_from("<I", h, 4)[0]
        st = CORRUPT
        for s in (ACTIVE, FULL, FREEING):
            if word == _PS_WORDS[s]:
                st = s
        self._st[p] = st
        if st == CORRUPT:
            return
        self.flash.readinto(a + _BITMAP, self._bm[p])
        if st == ACTIVE:
            self._load_active(p)
        else:
            self._load_full(p)

    def _load_active(self, p):
        # Page::mLoadEntryTable for an active page.
        nxt = 0
        while nxt < _ENTRIES and self._es(p, nxt) != _EMPTY:
            nxt += 1
        # a power cut after an entry was (partly) written but before its state word: the
        # entries after the last written one are not blank
        while nxt < _ENTRIES:
            self.flash.readinto(self._addr(p, nxt), self._w)
            if self._w == _FF4:
                break
            self._mark(p, nxt, nxt + 1, _ERASED)
            nxt += 1
        self._next[p] = end = nxt
        buf = self._buf
        last = bytearray(_ENTRY)
        last_i = -1
        seen = self._hx[p]
        i = 0
        while i < end:
            span = 1
            s = self._es(p, i)
            if s == _ERASED:
                last_i = -1
                i += 1
                continue
            if s == _ILLEGAL:
                last_i = -1
                self._erase_span(p, i)
                i += 1
                continue
            last_i = i
            self._read(p, i, buf)
            last[:] = buf
            if not _consistent(buf, i):
                self._erase_span(p, i)
                i += 1
                continue
            if _is_var(buf[1]):
                span = buf[2]
                incomplete = False
                for j in range(i, i + span):
                    if self._es(p, j) != _WRITTEN:
                        incomplete = True
                if incomplete:
                    last_i = -1
                    self._erase_span(p, i)
                    i += span
                    continue
            # an older live item with the same namespace, key and chunk (IDF ignores the type)
            h = _hash(buf)
            b = self._buf2
            for j in range(i):
                if seen[j] == h:
                    self._read(p, j, b)
                    if b[0] == buf[0] and b[3] == buf[3] and memoryview(b)[8:24] == memoryview(buf)[8:24]:
                        self._erase_span(p, j)
                        break
            seen[i] = h
            i += span
        # IDF's "check that last item is not duplicate" (see idf_quirks in the module docstring)
        if last_i >= 0:
            t = last[1]
            chunk = last[3] if (t == T_BLOB_DATA and not self.quirks) else _ANY
            j = self._find(p, last[0], t, _item_key(last), chunk, _ANY, 0)
            if 0 <= j < last_i:
                self._erase_span(p, j)

    def _load_full(self, p):
        # Page::mLoadEntryTable for a full or freeing page.
        self._next[p] = _ENTRIES
        buf = self._buf
        i = 0
        while i < _ENTRIES:
            if self._es(p, i) != _WRITTEN:
                i += 1
                continue
            self._read(p, i, buf)
            if not _consistent(buf, i):
                self._erase_span(p, i)
                i += 1
                continue
            span = buf[2]
            self._hx[p][i] = _hash(buf)
            if _is_var(buf[1]):
                for j in range(i + 1, i + span):
                    if self._es(p, j) != _WRITTEN:
                        self._erase_span(p, i)
                        break
            i += span

    def _drop_old_copy_of_last_item(self):
        # PageManager::load: an update cut between writing the new item (the newest page's last
        # item) and erasing the old one leaves the old one on an earlier page.
        last = self._used[-1]
        hx = self._hx[last]
        i = _ENTRIES - 1
        while i >= 0 and not hx[i]:
            i -= 1
        if i < 0:
            return
        self._read(last, i, self._buf)
        item = bytes(self._buf)
        kb = _item_key(item)
        for typ in (item[1], T_BLOB_V1):
            for p in self._used[:-1]:
                if self._st[p] != FREEING:
                    j = self._find(p, item[0], typ, kb, item[3], _ANY, 0)
                    if j >= 0:
                        self._erase_span(p, j)
                        return
            if item[1] != T_BLOB_IDX:
                return

    def _load_items(self):
        # Storage::init, in one pass over the live items: the namespaces, then the blob chunks
        # that no index covers (left by an interrupted set_blob or erase_key) are erased.
        index = []
        chunks = []
        for p in self._used:
            i = self._find(p, _ANY, _ANY, None, _ANY, _ANY, 0)
            while i >= 0:
                b = self._buf
                t = b[1]
                if b[0] == 0 and t == T_U8:
                    name = _item_key(b)
                    if name not in self._ns:
                        self._ns[name] = b[24]
                elif t == T_BLOB_IDX:
                    index.append((b[0], _item_key(b), b[29], b[28]))
                elif t == T_BLOB_DATA:
                    chunks.append((p, b[0], _item_key(b), b[3]))
                i = self._find(p, _ANY, _ANY, None, _ANY, _ANY, i + (b[2] if _is_var(t) else 1))
        for p, nsi, kb, c in chunks:
            covered = False
            for e in index:
                if e[0] == nsi and e[1] == kb and e[2] <= c < e[2] + e[3]:
                    covered = True
            if not covered:
                j = self._find(p, nsi, T_BLOB_DATA, kb, c, _ANY, 0)
                if j >= 0:
                    self._erase_span(p, j)


def dump(flash, offset, size):
    """A read-only summary of the NVS partition as it is on flash, before any repair:
    {"pages": [{index, address, state, seq, version, written, erased, empty, illegal}],
     "namespaces": {name: index},
     "entries": [{namespace, key, type, value, page, entry[, chunks][, error]}]}
    Entries are listed oldest page first; numbers are ints/floats, blobs bytes, strings str; a
    value that cannot be read is None with an "error". An update cut short shows as it is on
    flash (both copies of a key, say): NvsStorage would repair that when opened."""
    pages = []
    items = []  # (seq, page, entry, raw 32 bytes) of every valid written item
    for p in range(size // PAGE):
        a = offset + p * PAGE
        h = flash.read(a, 32)
        word, seq, ver = struct.unpack_from("<IIB", h, 0)
        info = {"index": p, "address": a, "state": "CORRUPT", "seq": None, "version": None,
                "written": 0, "erased": 0, "empty": 0, "illegal": 0}
        pages.append(info)
        if word == _PS_WORDS[UNINITIALIZED]:
            blank = True
            for k in range(0, PAGE, 512):
                if flash.read(a + k, 512) != _FF128 * 4:
                    blank = False
            info["state"] = "UNINITIALIZED" if blank else "CORRUPT"
            continue
        if struct.unpack_from("<I", h, 28)[0] != crc32(h[4:28], 0xFFFFFFFF):
            continue
        info["seq"] = seq
        info["version"] = ver
        for s in (ACTIVE, FULL, FREEING):
            if word == _PS_WORDS[s]:
                info["state"] = STATE_NAMES[s]
        if info["state"] == "CORRUPT":
            continue
        bm = flash.read(a + _BITMAP, 32)
        states = [(bm[i >> 2] >> ((i & 3) << 1)) & 3 for i in range(_ENTRIES)]
        for s, name in ((_WRITTEN, "written"), (_ERASED, "erased"), (_EMPTY, "empty"), (_ILLEGAL, "illegal")):
            info[name] = states.count(s)
        i = 0
        while i < _ENTRIES:
            if states[i] != _WRITTEN:
                i += 1
                continue
            e = flash.read(a + _DATA + i * _ENTRY, _ENTRY)
            if not _consistent(e, i):
                i += 1
                continue
            items.append((seq, p, i, e))
            i += e[2] if _is_var(e[1]) else 1
    items.sort(key=lambda it: (it[0], it[1], it[2]))
    names = {}
    for it in items:
        e = it[3]
        if e[0] == 0 and e[1] == T_U8:
            names.setdefault(e[24], _decode(_item_key(e)))

    def data_of(it):
        p, i, e = it[1], it[2], it[3]
        n = struct.unpack_from("<H", e, 24)[0]
        d = flash.read(offset + p * PAGE + _DATA + (i + 1) * _ENTRY, n)
        if crc32(d, 0xFFFFFFFF) != struct.unpack_from("<I", e, 28)[0]:
            raise ValueError("data crc mismatch")
        return d

    entries = []
    for it in items:
        e = it[3]
        t = e[1]
        if e[0] == 0 or t == T_BLOB_DATA:
            continue
        kb = _item_key(e)
        ent = {"namespace": names.get(e[0], "#%d" % e[0]), "key": _decode(kb),
               "type": TYPE_NAMES.get(t, "0x%02x" % t), "value": None, "page": it[1], "entry": it[2]}
        try:
            if t in _PRIMITIVES:
                ent["value"] = struct.unpack_from(_PRIMITIVES[t], e, 24)[0]
            elif t == T_STR:
                ent["value"] = data_of(it).split(b"\x00")[0].decode()
            elif t == T_BLOB_V1:
                ent["value"] = data_of(it)
            elif t == T_BLOB_IDX:
                size, count, start = struct.unpack_from("<IBB", e, 24)
                parts = []
                for c in range(start, start + count):
                    for ch in items:
                        x = ch[3]
                        if x[1] == T_BLOB_DATA and x[0] == e[0] and x[3] == c and _item_key(x) == kb:
                            parts.append(data_of(ch))
                            break
                    else:
                        raise ValueError("chunk %d missing" % (c - start))
                v = b"".join(parts)
                if len(v) != size:
                    raise ValueError("chunks hold %d of %d bytes" % (len(v), size))
                ent["value"] = v
                ent["chunks"] = count
        except (ValueError, UnicodeError) as ex:
            ent["error"] = str(ex)
        entries.append(ent)
    ns_map = {}
    for idx in names:
        ns_map[names[idx]] = idx
    return {"pages": pages, "namespaces": ns_map, "entries": entries}

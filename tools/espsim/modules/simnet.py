# The simulated board's network stack as its C heap sees it. On a chip, an lwIP socket and an
# mbedTLS session are ESP-IDF heap allocations, outside MicroPython's GC heap (mbedTLS allocates
# with calloc: CONFIG_MBEDTLS_DEFAULT_MEM_ALLOC in ports/esp32/boards/sdkconfig.base); here the
# sockets are the host's, so the device library's port layer (ota.compat.net) reports each
# connection, TLS session and close to this module, which charges the simulated ESP-IDF heap
# (espsim.idfheap CHARGES) and fails as the chip does when it is exhausted: OSError(ENOMEM), what
# MicroPython raises for MBEDTLS_ERR_SSL_ALLOC_FAILED (extmod/modtls_mbedtls.c mbedtls_raise_error)
# and for an lwIP allocation failure. A real board's firmware has no such module.
from espsim import chip as _chip

_ENOMEM = 12
_HANDSHAKE_PEAK = 15 * 1024  # espsim.idfheap.TLS_HANDSHAKE_PEAK
_held = {}  # id(raw socket) -> (the chip charged, its tokens); a reboot's new chip starts afresh


def _charge(sock, kind):
    c = _chip.current
    if c is None:
        return  # no board attached: host-side use of the device library, nothing to charge
    token = c.idf_charge(kind)
    if token is None:
        raise OSError(_ENOMEM, "no room in the ESP-IDF heap for a %s" % kind)
    entry = _held.get(id(sock))
    if entry is None or entry[0] is not c:
        entry = _held[id(sock)] = (c, [])
    entry[1].append(token)


def opened(sock):
    """A TCP connection was made on `sock`."""
    _charge(sock, "socket")


def tls(sock):
    """A TLS session is set up on `sock` (mbedtls_ssl_setup, then the handshake's peak)."""
    _charge(sock, "tls_session")
    if _chip.current is not None and not _chip.current.idf_peak(_HANDSHAKE_PEAK):
        closed(sock)
        raise OSError(_ENOMEM, "no room in the ESP-IDF heap for the TLS handshake")


def closed(sock):
    """`sock` (and any TLS session on it) was closed: its C heap is free again."""
    entry = _held.pop(id(sock), None)
    if entry is not None and entry[0] is _chip.current:
        for token in entry[1]:
            entry[0].idf_release(token)


def held():
    """Connections the stack holds open on the running board now."""
    return sum(1 for c, _ in _held.values() if c is _chip.current)

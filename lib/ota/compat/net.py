# Sockets and TLS (used by ota/http.py and ota/push.py).
from . import ENOMEM, ETIMEDOUT, MICROPYTHON, ticks_diff, ticks_ms

# http.py and push.py reach the network only through the functions below. What differs:
# - MicroPython's TLS socket is a stream (read/readinto/write). A blocking readinto() fills the
#   whole buffer before it returns, so reads run non-blocking behind select.poll to return what
#   arrived and to time out; CPython's SSLSocket.recv_into returns what one record holds and
#   honours settimeout() as a deadline per call.
# - CPython loads a client certificate only from files, MicroPython from DER bytes.
# - getaddrinfo gives a bytearray sockaddr on the unix port and a tuple elsewhere: it is only ever
#   handed back to connect().
# - After the first net_readinto a MicroPython socket is non-blocking, so a later write (the next
#   request on a kept HTTP connection, an MQTT packet) may take part of the data or none: net_send
#   waits for room with poll. CPython's socket keeps its timeout: sendall.
# - The TLS handshake. mbedTLS's blocking handshake (modtls_mbedtls.c, ssl_socket_make_new with
#   do_handshake_on_connect) reads with the socket's timeout per read: a peer sending a byte just
#   inside it holds the handshake for days, before any certificate is checked. So on MicroPython
#   tls_start only wraps the socket, non-blocking (do_handshake_on_connect=False), and the handshake
#   runs inside the first net_send (mbedtls_ssl_write does it first), under that call's one deadline;
#   a certificate refused there raises as in a blocking handshake (ssl_check_async_handshake_failure:
#   ValueError). CPython's do_handshake honours the socket timeout as one deadline.
# The CPython half is in compat/_net_cpython.py, which a device never loads.
# A connection is a list [socket, poller, raw_socket] so the poller is made once per connection.
import socket as _socket

_ETIMEDOUT = ETIMEDOUT  # the running port's value (newlib's 116 on the ESP32): see compat

import sys as _sys


def _stack():
    # A simulated board (espsim) loads `simnet` before the app and charges each connection and TLS
    # session to its ESP-IDF heap, as lwIP and mbedTLS allocate them outside the GC heap on a chip.
    # Looked up, never imported: a real board has no such module, and nothing is loaded for it.
    return _sys.modules.get("simnet")

if MICROPYTHON:
    import select as _select

    def _tls_context(ca):
        # The native `tls` module: `ssl` is a Python wrapper over it (micropython-lib, frozen in the
        # firmware but not on every import path) whose context starts with CERT_NONE.
        import tls

        ctx = tls.SSLContext(tls.PROTOCOL_TLS_CLIENT)
        ctx.verify_mode = tls.CERT_REQUIRED  # pyright: ignore[reportAttributeAccessIssue] (stub lacks it)
        ctx.load_verify_locations(ca)
        return ctx

    def _client_cert(ctx, cert, key):
        ctx.load_cert_chain(cert, key)

    def net_send(conn, data, timeout_ms):
        s = conn[0]
        view = memoryview(data)
        done = 0
        if conn[1] is None:  # never read from: still blocking, write() sends it all
            conn[2].settimeout(timeout_ms / 1000)
            while done < len(data):
                n = s.write(view[done:])
                if not n:
                    raise OSError(_ETIMEDOUT)
                done += n
            return
        waiter = None
        start = ticks_ms()
        while done < len(data):
            n = s.write(view[done:])  # on a new TLS connection, a step of the handshake first
            if n:
                done += n
                continue
            left = timeout_ms - ticks_diff(ticks_ms(), start)  # one deadline for the whole call
            if left <= 0:
                raise OSError(_ETIMEDOUT)
            if waiter is None:
                waiter = _select.poll()
                waiter.register(s, _select.POLLOUT)  # also when the handshake waits to read (poll_mask)
            waiter.poll(left)

    def net_readinto(conn, buf, nbytes, timeout_ms):
        """Read at most nbytes into buf[0:]: n > 0 bytes, 0 at the end of the stream, None when
        nothing arrived within timeout_ms, -1 when bytes arrived but no whole TLS record yet."""
        s = conn[0]
        poller = conn[1]
        if poller is None:
            s.setblocking(False)
            poller = _select.poll()
            poller.register(s, _select.POLLIN)
            conn[1] = poller
        n = s.readinto(buf, nbytes)
        if n is not None:
            return n
        for _ in poller.ipoll(timeout_ms):  # ipoll: no list allocated per wait
            n = s.readinto(buf, nbytes)
            return -1 if n is None else n
        return None

    def net_quiet(conn):
        """True when nothing waits to be read on a connection kept between requests: a server that
        closed it has sent a FIN or a TLS alert, which makes it readable (poll, no wait)."""
        poller = conn[1]
        if poller is None:
            return True
        for _ in poller.ipoll(0):
            return False
        return True

    def is_timeout(e):
        return isinstance(e, OSError) and e.args and e.args[0] in (_ETIMEDOUT, -_ETIMEDOUT)

    def tls_rejected(e):
        # mbedTLS reports a failed certificate verification (CA, name, dates) as ValueError.
        return isinstance(e, ValueError)

    def _wrap(conn, ctx, host):
        raw = conn[2]
        raw.setblocking(False)
        s = ctx.wrap_socket(raw, server_hostname=host, do_handshake_on_connect=False)
        poller = _select.poll()
        poller.register(s, _select.POLLIN)
        conn[0] = s
        conn[1] = poller

else:
    from ._net_cpython import _check_dates, _client_cert, _tls_context, is_timeout, net_quiet, net_readinto, net_send, tls_rejected  # noqa: F401

    def _wrap(conn, ctx, host):
        conn[0] = ctx.wrap_socket(conn[2], server_hostname=host)  # the handshake, one deadline
        _check_dates(conn[0])


def tls_context(ca, cert=None, key=None):
    """Client TLS context trusting only `ca` (DER). Loading a self-signed server certificate as the
    only CA pins that certificate. `cert`/`key` (DER, key in PKCS#8) enable mutual TLS."""
    ctx = _tls_context(ca)
    if cert is not None:
        _client_cert(ctx, cert, key)
    return ctx


def net_open(host, port, timeout_ms):
    """TCP connect to the first of (at most 4) addresses getaddrinfo gives that answers; blocking
    with timeout_ms per socket operation. Returns a connection: [socket, poller, raw socket]."""
    addrs = _socket.getaddrinfo(host, port, 0, _socket.SOCK_STREAM)
    err = OSError("no address for " + host)
    for ai in addrs[:4]:
        raw = _socket.socket(ai[0], _socket.SOCK_STREAM)
        try:
            raw.settimeout(timeout_ms / 1000)
            raw.connect(ai[-1])
            stack = _stack()
            if stack is not None:
                stack.opened(raw)
            return [raw, None, raw]
        except OSError as e:
            raw.close()
            _out_of_memory(e)
            err = e
    raise err


def _out_of_memory(e):
    # mbedTLS's and lwIP's allocation failures are OSError(ENOMEM) on MicroPython: the C heap is as
    # exhausted as the GC heap is for a MemoryError, and is reported the same way.
    if isinstance(e, OSError) and e.args and e.args[0] == ENOMEM:
        raise MemoryError("ESP-IDF heap: %s" % (e,))


def tls_start(conn, ctx, host):
    """TLS on a fresh connection; the name is always sent (SNI) and checked against the
    certificate. CPython: the handshake, within the connect timeout. MicroPython: the handshake
    comes with the first net_send, within that call's timeout (see above): its failures
    (tls_rejected, is_timeout) are raised there."""
    try:
        stack = _stack()
        if stack is not None:
            stack.tls(conn[2])
        _wrap(conn, ctx, host)
    except OSError as e:
        _out_of_memory(e)
        raise


def net_close(conn):
    stack = _stack()
    if stack is not None:
        stack.closed(conn[2])
    for s in (conn[0], conn[2]):
        try:
            s.close()
        except Exception:
            pass

# Sockets and TLS (used by ota/http.py).
from . import ENOMEM, ETIMEDOUT, MICROPYTHON

# http.py reaches the network only through the functions below. What differs:
# - MicroPython's TLS socket is a stream (read/readinto/write). A blocking readinto() fills the
#   whole buffer before it returns, so reads run non-blocking behind select.poll to return what
#   arrived and to time out; CPython's SSLSocket.recv_into returns what one record holds and
#   honours settimeout() as a deadline per call.
# - CPython loads a client certificate only from files, MicroPython from DER bytes.
# - getaddrinfo gives a bytearray sockaddr on the unix port and a tuple elsewhere: it is only ever
#   handed back to connect().
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

    def net_write(conn, data, timeout_ms):
        # Still blocking here (requests are written before the first read): write() sends it all.
        conn[2].settimeout(timeout_ms / 1000)
        view = memoryview(data)
        done = 0
        while done < len(data):
            n = conn[0].write(view[done:])
            if not n:
                raise OSError(_ETIMEDOUT)
            done += n

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

    def is_timeout(e):
        return isinstance(e, OSError) and e.args and e.args[0] in (_ETIMEDOUT, -_ETIMEDOUT)

    def tls_rejected(e):
        # mbedTLS reports a failed certificate verification (CA, name, dates) as ValueError.
        return isinstance(e, ValueError)

else:
    import ssl as _ssl

    def _tls_context(ca):
        ctx = _ssl.SSLContext(_ssl.PROTOCOL_TLS_CLIENT)  # loads no system CAs
        ctx.verify_mode = _ssl.CERT_REQUIRED
        ctx.check_hostname = True  # pyright: ignore[reportAttributeAccessIssue] (CPython only)  # mbedTLS checks the name given as server_hostname itself
        ctx.load_verify_locations(cadata=ca)
        return ctx

    def _client_cert(ctx, cert, key):
        # CPython loads the pair only from files: write PEM copies to a private temporary folder.
        import binascii
        import os
        import tempfile

        def pem(label, der):
            b64 = binascii.b2a_base64(der, newline=False).decode()
            lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
            return "-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label, "\n".join(lines), label)

        with tempfile.TemporaryDirectory() as d:
            cpath = d + "/cert.pem"
            kpath = d + "/key.pem"
            with open(cpath, "w") as f:
                f.write(pem("CERTIFICATE", cert))
            with open(os.open(kpath, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:  # pyright: ignore[reportAttributeAccessIssue] (CPython only)
                f.write(pem("PRIVATE KEY", key))  # PKCS#8 DER
            ctx.load_cert_chain(cpath, kpath)

    def net_write(conn, data, timeout_ms):
        conn[0].settimeout(timeout_ms / 1000)
        conn[0].sendall(data)

    def net_readinto(conn, buf, nbytes, timeout_ms):
        """Read at most nbytes into buf[0:]: n > 0 bytes, 0 at the end of the stream, None when
        nothing arrived within timeout_ms (-1, 'bytes but no whole record', never happens here)."""
        s = conn[0]
        s.settimeout(max(timeout_ms, 1) / 1000)
        try:
            return s.recv_into(buf, nbytes)
        except (_socket.timeout, _ssl.SSLWantReadError):  # pyright: ignore[reportAttributeAccessIssue] (CPython only)
            return None

    def is_timeout(e):
        return isinstance(e, TimeoutError)

    def tls_rejected(e):
        return isinstance(e, _ssl.SSLCertVerificationError)

    def _check_dates(tls):
        # mbedTLS on the ESP32 checks the certificate's dates against the board's RTC
        # (CONFIG_MBEDTLS_HAVE_TIME_DATE), OpenSSL here against the host's clock: check them against
        # the device's clock (compat.unix_time) too, so an unset clock fails here as on a chip.
        from . import unix_time

        cert = tls.getpeercert()
        now = unix_time()
        if not _ssl.cert_time_to_seconds(cert["notBefore"]) <= now <= _ssl.cert_time_to_seconds(cert["notAfter"]):
            tls.close()
            raise _ssl.SSLCertVerificationError("certificate verify failed: not valid at the device's time (%d)" % now)


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
    """TLS handshake on a fresh connection (same timeout as the connect); the name is always sent
    (SNI) and checked against the certificate."""
    try:
        stack = _stack()
        if stack is not None:
            stack.tls(conn[2])
        conn[0] = ctx.wrap_socket(conn[2], server_hostname=host)
    except OSError as e:
        _out_of_memory(e)
        raise
    if not MICROPYTHON:
        _check_dates(conn[0])


def net_close(conn):
    stack = _stack()
    if stack is not None:
        stack.closed(conn[2])
    for s in (conn[0], conn[2]):
        try:
            s.close()
        except Exception:
            pass


# --- added for ota.push: a long-lived connection written to after it has been read from (MQTT).
# After net_readinto a MicroPython socket is non-blocking (see above), so a write may take only
# part of the data or none: wait for room with poll. CPython's socket keeps its timeout: sendall.
if MICROPYTHON:
    def net_send(conn, data, timeout_ms):
        if conn[1] is None:  # never read from: still blocking
            net_write(conn, data, timeout_ms)
            return
        s = conn[0]
        view = memoryview(data)
        done = 0
        waiter = None
        while done < len(data):
            n = s.write(view[done:])
            if n:
                done += n
                continue
            if waiter is None:
                waiter = _select.poll()
                waiter.register(s, _select.POLLOUT)
            if not waiter.poll(timeout_ms):
                raise OSError(_ETIMEDOUT)

else:
    def net_send(conn, data, timeout_ms):
        net_write(conn, data, timeout_ms)

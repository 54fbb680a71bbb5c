# Sockets and TLS under CPython: the CPython half of compat/net.py (see there for what differs),
# in its own module so that a device never loads it (its code and names would cost heap).
import socket as _socket
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


def net_send(conn, data, timeout_ms):
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


def net_quiet(conn):
    """True when nothing waits to be read on a connection kept between requests (see above)."""
    import select

    s = conn[0]  # (wrap_socket detached the raw socket: its fileno() is -1)
    pending = getattr(s, "pending", None)  # bytes TLS has decrypted but not handed out
    if pending is not None and pending():
        return False
    return not select.select([s], [], [], 0)[0]


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

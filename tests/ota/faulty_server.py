"""A TLS server on loopback that misbehaves on purpose, for the HTTP client's fault tests.

TLS runs over memory BIOs, so a script controls the bytes on the wire as well as the plaintext:
it can drop the connection at any byte, stall, drip plaintext or raw TLS bytes, reset the socket.
Scripts are registered per URL path: script(conn, request) -> None. A connection serves requests
until a script closes it (or the client does), so scripts also decide about keep-alive: answer
and keep the connection, close it after a response, in the middle of a body, or between requests
(conn.served counts the requests it has had). `handshakes` counts the TLS sessions set up.

Also: certificates for tests (make_ca, make_cert) with the cryptography package.
"""
import datetime
import ipaddress
import socket
import ssl
import struct
import threading
import time

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


# --- certificates


class Cert:
    def __init__(self, cert, key):
        self.cert = cert
        self.key = key

    @property
    def der(self):
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def pem(self):
        return self.cert.public_bytes(serialization.Encoding.PEM)

    @property
    def key_der(self):  # PKCS#8, what HttpFetcher(key=...) takes
        return self.key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    @property
    def key_pem(self):
        return self.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())

    def write(self, folder, stem):
        """Write stem.pem and stem.key in folder; returns (cert path, key path)."""
        cpath = str(folder / (stem + ".pem"))
        kpath = str(folder / (stem + ".key"))
        with open(cpath, "wb") as f:
            f.write(self.pem)
        with open(kpath, "wb") as f:
            f.write(self.key_pem)
        return cpath, kpath


def _now():
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(name="test CA"):
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - datetime.timedelta(days=1))
        .not_valid_after(_now() + datetime.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Cert(cert, key)


def make_cert(ca, names=("localhost", "127.0.0.1"), days_from=-1, days_to=30, client=False, self_signed=False):
    """Leaf certificate signed by ca (or self-signed) valid from now+days_from to now+days_to."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    sans = []
    for n in names:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            sans.append(x509.DNSName(n))
    builder = (
        x509.CertificateBuilder().subject_name(subject)
        .issuer_name(subject if self_signed else ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() + datetime.timedelta(days=days_from))
        .not_valid_after(_now() + datetime.timedelta(days=days_to))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH if client
                                              else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    cert = builder.sign(key if self_signed else ca.key, hashes.SHA256())
    return Cert(cert, key)


# --- the server


class Request:
    def __init__(self, method, path, headers, body):
        self.method = method
        self.path = path
        self.headers = headers  # lower-case names
        self.body = body


class Conn:
    """One accepted connection; TLS (memory BIOs) or plain. Sends go out immediately."""

    def __init__(self, raw, ctx):
        self.raw = raw
        self.obj = None
        self.closed = False
        self.served = 0  # requests read on this connection so far
        if ctx is not None:
            self.inc = ssl.MemoryBIO()
            self.out = ssl.MemoryBIO()
            self.obj = ctx.wrap_bio(self.inc, self.out, server_side=True)

    def _flush(self):
        data = self.out.read()
        if data:
            self.raw.sendall(data)

    def _feed(self):
        data = self.raw.recv(16384)
        if not data:
            raise ConnectionError("client closed")
        self.inc.write(data)

    def handshake(self):
        if self.obj is None:
            return
        while True:
            try:
                self.obj.do_handshake()
                self._flush()
                return
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()
            except ssl.SSLError:
                self._flush()  # deliver the alert
                raise

    def recv(self):
        if self.obj is None:
            data = self.raw.recv(16384)
            if not data:
                raise ConnectionError("client closed")
            return data
        while True:
            try:
                data = self.obj.read(16384)
                self._flush()
                if not data:
                    raise ConnectionError("client closed")
                return data
            except ssl.SSLWantReadError:
                self._flush()
                self._feed()

    def read_request(self):
        data = b""
        while b"\r\n\r\n" not in data:
            if len(data) > 65536:
                raise ConnectionError("request head too long")
            data += self.recv()
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, path, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        want = int(headers.get("content-length", "0"))
        while len(body) < want:
            body += self.recv()
        return Request(method, path, headers, body)

    def send(self, data):
        if self.obj is None:
            self.raw.sendall(data)
            return
        self.obj.write(data)
        self._flush()

    def drip(self, data, piece=1, delay=0.05):
        """Plaintext in small TLS records, `delay` s apart."""
        for i in range(0, len(data), piece):
            self.send(data[i:i + piece])
            time.sleep(delay)

    def drip_raw(self, data, delay=0.05):
        """One TLS record for `data`, its encrypted bytes sent one at a time `delay` s apart."""
        if self.obj is None:
            return self.drip(data, 1, delay)
        self.obj.write(data)
        wire = self.out.read()
        for i in range(len(wire)):
            self.raw.sendall(wire[i:i + 1])
            time.sleep(delay)

    def wait(self, seconds):
        """Stay silent; returns early when the client closes."""
        self.closed = True  # nothing follows on this connection
        self.raw.settimeout(seconds)
        try:
            while self.raw.recv(4096):
                pass
        except (socket.timeout, OSError):
            pass

    def close(self):
        """Abrupt close: no TLS close_notify."""
        self.closed = True
        self.raw.close()

    def close_notify(self):
        self.closed = True
        if self.obj is not None:
            try:
                self.obj.unwrap()
            except ssl.SSLError:
                pass
            try:
                self._flush()
            except OSError:
                pass
        self.raw.close()

    def reset(self):
        """TCP RST."""
        self.closed = True
        self.raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.raw.close()


class FaultyServer:
    """Scripted TLS (or plain) server on 127.0.0.1. `url` ends with '/'."""

    def __init__(self, cert_path=None, key_path=None, client_ca_der=None, plain=False):
        self.ctx = None
        if not plain:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(cert_path, key_path)
            if client_ca_der is not None:
                self.ctx.verify_mode = ssl.CERT_REQUIRED
                self.ctx.load_verify_locations(cadata=client_ca_der)
        self.scripts = {}
        self.errors = []  # handshake/script failures seen (for debugging)
        self.handshakes = 0  # connections that completed the TLS handshake (or were accepted, plain)
        self.requests = 0
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "%s://127.0.0.1:%d/" % ("http" if plain else "https", self.port)
        self._stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def add(self, path, script):
        self.scripts[path] = script

    def _accept(self):
        while not self._stop:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(15)
        conn = Conn(raw, self.ctx)
        try:
            conn.handshake()
            self.handshakes += 1
            while not conn.closed:
                try:
                    req = conn.read_request()
                except ConnectionError:
                    if conn.served:
                        return  # the client closed a kept connection
                    raise
                conn.served += 1
                self.requests += 1
                path = req.path.split("?")[0]
                script = self.scripts.get(path)
                if script is None:
                    conn.send(response(404, b"no script\n"))
                    conn.close()
                    return
                script(conn, req)
        except (OSError, ssl.SSLError, ConnectionError, ValueError) as e:
            self.errors.append("%s: %s" % (type(e).__name__, e))
        finally:
            try:
                raw.close()
            except OSError:
                pass

    def stop(self):
        self._stop = True
        self.sock.close()


def response(status=200, body=b"", headers=(), reason=None, length=True):
    """Bytes of a simple response with Content-Length (unless length=False or given in headers)."""
    lines = ["HTTP/1.1 %d %s" % (status, reason or {200: "OK", 206: "Partial Content"}.get(status, "X"))]
    names = {h.split(":")[0].strip().lower() for h in headers}
    lines += list(headers)
    if length and "content-length" not in names and "transfer-encoding" not in names:
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def chunked(body, sizes, ext=b""):
    """Chunked encoding of body with chunk sizes cycling through `sizes`, then a trailer."""
    out = []
    i = 0
    k = 0
    while i < len(body):
        n = sizes[k % len(sizes)]
        k += 1
        part = body[i:i + n]
        out.append(b"%x%s\r\n%s\r\n" % (len(part), ext, part))
        i += n
    out.append(b"0\r\nX-Trailer: yes\r\n\r\n")
    return b"".join(out)

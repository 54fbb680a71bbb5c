"""HTTPS static server for a release directory (`ota-tool serve`, tests, the demo).

- GET/HEAD of files under the release directory: single Range (`bytes=a-b`, `a-`, `-n`) with 206 +
  Content-Range or 416, strong ETag (SHA-256 of the content, cached per file by mtime and size),
  If-Range, If-None-Match, Content-Length on every response, JSON or octet-stream content types.
  Paths with `..`, hidden components (`.name`), or leading outside the directory are refused.
- TLS with a local CA made on first use in the TLS directory (default RELEASE_DIR/../.ota-tls):
  ca.pem/ca.der (give ca.der to the devices), ca.key, server.pem, server.key (keys 0600). The
  server certificate names localhost, 127.0.0.1, ::1, this host and any extra names asked for; it is
  remade (same CA) when those names change or it nears its end date.
- One access-log line per request on stderr.
- Other endpoints plug in with ReleaseServer.add_route(). By default the device status reports are
  on (ota_tool.reports): POST /report stores them in SQLite (default RELEASE_DIR/../ota-reports.sqlite,
  outside the served folder), GET /status and /status.json show the fleet summary.

start_server(root, ...) runs it on a background thread and returns a RunningServer with .url,
.ca_der, .stop().
"""
import datetime
import email.utils
import hashlib
import http.server
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time
import urllib.parse

from .errors import ToolError
from .files import write_atomic

CA_VALID_DAYS = 3650
SERVER_VALID_DAYS = 397
RENEW_BEFORE_DAYS = 30
MAX_REQUEST_BODY = 64 * 1024  # for POST routes
HASH_BLOCK = 1 << 16


# --- TLS material


class TlsFiles:
    """Paths of the CA and server certificate in a TLS directory, and facts about them."""

    def __init__(self, tls_dir):
        self.dir = tls_dir
        self.ca_pem = os.path.join(tls_dir, "ca.pem")
        self.ca_der_path = os.path.join(tls_dir, "ca.der")
        self.ca_key = os.path.join(tls_dir, "ca.key")
        self.server_pem = os.path.join(tls_dir, "server.pem")
        self.server_key = os.path.join(tls_dir, "server.key")
        self.created = []  # which files this run made

    @property
    def ca_der(self):
        with open(self.ca_der_path, "rb") as f:
            return f.read()

    @property
    def fingerprint(self):
        return fingerprint(self.ca_der)


def fingerprint(der):
    """SHA-256 of a DER certificate as colon-separated hex (what `openssl x509 -fingerprint -sha256` shows)."""
    return ":".join("%02X" % b for b in hashlib.sha256(der).digest())


def _write_private(path, data):
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def default_sans(extra=()):
    names = ["localhost", "127.0.0.1", "::1"]
    host = socket.gethostname()
    if host and host not in names:
        names.append(host)
    for n in extra:
        if n not in names:
            names.append(n)
    return names


def _general_names(names):
    from cryptography import x509

    out = []
    for n in names:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            out.append(x509.DNSName(n))
    return out


def _cert_names(cert):
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set()
    return {str(v) for v in san.get_values_for_type(x509.DNSName)} | {
        str(v) for v in san.get_values_for_type(x509.IPAddress)
    }


def ensure_tls(tls_dir, sans=()):
    """Make the CA and the server certificate in tls_dir unless they are there and still fit.

    Returns TlsFiles. The CA is made once and kept; the server certificate is remade when the names
    asked for are not all in it or it ends within RENEW_BEFORE_DAYS.
    """
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        raise ToolError("the cryptography package is needed to make TLS certificates",
                        "pip install 'cryptography>=42'")
    files = TlsFiles(tls_dir)
    try:
        os.makedirs(tls_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        from .files import os_error

        err = os_error(e, tls_dir, "make the TLS folder")
        raise ToolError(err.message, "--tls-dir takes a folder for the CA and the server certificate")
    now = datetime.datetime.now(datetime.timezone.utc)
    pem = serialization.Encoding.PEM

    if os.path.exists(files.ca_pem) and os.path.exists(files.ca_key):
        with open(files.ca_pem, "rb") as f:
            ca_cert = x509.load_pem_x509_certificate(f.read())
        with open(files.ca_key, "rb") as f:
            ca_key = serialization.load_pem_private_key(f.read(), None)
        if not os.path.exists(files.ca_der_path):
            write_atomic(files.ca_der_path, ca_cert.public_bytes(serialization.Encoding.DER))
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ota-tool"),
            x509.NameAttribute(NameOID.COMMON_NAME, "ota-tool local CA (%s)" % socket.gethostname()),
        ])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CA_VALID_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(files.ca_key, ca_key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        write_atomic(files.ca_pem, ca_cert.public_bytes(pem))
        write_atomic(files.ca_der_path, ca_cert.public_bytes(serialization.Encoding.DER))
        files.created += ["ca.pem", "ca.der", "ca.key"]
        for stale in (files.server_pem, files.server_key):  # signed by a CA that is gone
            if os.path.exists(stale):
                os.remove(stale)

    names = default_sans(sans)
    if os.path.exists(files.server_pem) and os.path.exists(files.server_key):
        with open(files.server_pem, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        fits = (
            set(names) <= _cert_names(cert)
            and cert.not_valid_after_utc - now > datetime.timedelta(days=RENEW_BEFORE_DAYS)
            and cert.issuer == ca_cert.subject
        )
        if fits:
            return files
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(min(now + datetime.timedelta(days=SERVER_VALID_DAYS), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(_general_names(names)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(files.server_key, key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                       serialization.NoEncryption()))
    write_atomic(files.server_pem, cert.public_bytes(pem))
    files.created += ["server.pem", "server.key"]
    return files


def server_context(files):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(files.server_pem, files.server_key)
    return ctx


# --- HTTP


class ETagCache:
    """Strong ETags: the SHA-256 of the content (truncated), recomputed when mtime or size change."""

    def __init__(self):
        self._lock = threading.Lock()
        self._cache = {}

    def get(self, path, st):
        key = (st.st_mtime_ns, st.st_size)
        with self._lock:
            hit = self._cache.get(path)
        if hit and hit[0] == key:
            return hit[1]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while True:
                block = f.read(HASH_BLOCK)
                if not block:
                    break
                h.update(block)
        etag = '"%s"' % h.hexdigest()[:32]
        with self._lock:
            self._cache[path] = (key, etag)
        return etag


def parse_range(value, size):
    """One `bytes=` range -> (start, end) inclusive; "unsatisfiable"; or None to ignore the header
    (malformed, or several ranges: RFC 9110 lets a server answer 200 then)."""
    value = value.strip()
    if not value.startswith("bytes="):
        return None
    spec = value[6:].strip()
    if "," in spec or "-" not in spec:
        return None
    first, last = (p.strip() for p in spec.split("-", 1))
    if first and not first.isdigit() or last and not last.isdigit() or not (first or last):
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else None
    if end is not None and end < start:
        return None
    if start >= size:
        return "unsatisfiable"
    return start, size - 1 if end is None else min(end, size - 1)


def _etag_matches(header, etag, weak):
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        if weak and tag.startswith("W/"):
            tag = tag[2:]
        if tag == etag:
            return True
    return False


def content_type(path):
    return "application/json" if path.endswith(".json") else "application/octet-stream"


class Request:
    """What a route handler sees: method, path, query, headers, body (bytes), client."""

    def __init__(self, method, path, query, headers, body, client):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.client = client

    def json(self):
        return json.loads(self.body)


class ReleaseHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "ota-tool"
    sys_version = ""
    timeout = 30

    # one log line per request, written by _log()
    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, fmt, *args):
        self.server.log("%s - - [%s] %s" % (self.client_address[0], self.log_date_time_string(), fmt % args))

    def _log(self, status, sent, rng=None):
        line = '%s - - [%s] "%s" %d %s' % (
            self.client_address[0], self._clf_date(), getattr(self, "requestline", "-"), status, sent)
        if rng:
            line += ' range="%s"' % rng
        self.server.log(line)

    @staticmethod
    def _clf_date():
        return time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime())

    def _simple(self, status, text, headers=()):
        payload = (text + "\n").encode() if status != 304 else b""
        body = payload if self.command != "HEAD" else b""
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status != 304:
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if body:
            self.wfile.write(body)
        self._log(status, len(body))

    def send_error(self, code, message=None, explain=None):
        # http.server's own errors (bad request line, oversized headers...) in our format.
        self.close_connection = True
        try:
            self._simple(code, message or http.server.BaseHTTPRequestHandler.responses.get(code, ("error",))[0],
                         [("Connection", "close")])
        except OSError:
            pass

    def _read_body(self):
        # The request body (bounded), or None after answering 411/413.
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.close_connection = True
            self._simple(411, "Content-Length required")
            return None
        if int(length) > MAX_REQUEST_BODY:
            self.close_connection = True
            self._simple(413, "request body over %d bytes" % MAX_REQUEST_BODY)
            return None
        return self.rfile.read(int(length))

    def _route(self):
        url = urllib.parse.urlsplit(self.path)
        func = self.server.routes.get((self.command, url.path))
        body = b""
        if self.command in ("POST", "PUT"):
            body = self._read_body()  # read even when unrouted: unread bytes would reset the answer
            if body is None:
                return True
        if func is None:
            if self.command in ("POST", "PUT"):
                known = {p for _, p in self.server.routes}
                self._simple(405 if url.path in known else 404, "no such endpoint")
                return True
            return False
        req = Request(self.command, url.path, url.query, self.headers, body, self.client_address)
        try:
            status, ctype, out = func(req)
        except Exception as e:  # a route's bug must not kill the server
            self._simple(500, "internal error: %s" % e)
            return True
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        if status != 204:  # RFC 9110: no Content-Length on a 204
            self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD" and status != 204:
            self.wfile.write(out)
        self._log(status, len(out))
        return True

    def do_POST(self):
        self._route()

    def do_PUT(self):
        self.do_POST()

    def do_GET(self):
        if not self._route():
            self._file()

    def do_HEAD(self):
        if not self._route():
            self._file()

    def _local_path(self):
        # URL path -> file under root, or None with the status to answer.
        raw = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw)
        if "\x00" in path or "\\" in path:
            return None, 400
        parts = [p for p in path.split("/") if p]
        if any(p == ".." for p in parts):
            return None, 403
        if not parts or any(p.startswith(".") for p in parts):
            return None, 404
        root = self.server.root
        full = os.path.realpath(os.path.join(root, *parts))
        if os.path.commonpath([root, full]) != root:
            return None, 403  # a symlink leading out
        if not os.path.isfile(full):
            return None, 404
        return full, 200

    def _file(self):
        # [mirror hook] ota_tool.mirror (`serve --mirror`) makes the file present (fetched from
        # upstream) before it is served from disk like any other; None: no hook.
        hook = self.server.file_hook
        if hook is not None:
            refusal = hook(urllib.parse.urlsplit(self.path).path)
            if refusal is not None:
                self._simple(*refusal)
                return
        # [/mirror hook]
        full, status = self._local_path()
        if full is None:
            self._simple(status, "forbidden" if status == 403 else "not found")
            return
        try:
            f = open(full, "rb")
        except OSError:
            self._simple(404, "not found")
            return
        with f:
            st = os.fstat(f.fileno())
            size = st.st_size
            etag = self.server.etags.get(full, st)
            common = [("ETag", etag), ("Accept-Ranges", "bytes"),
                      ("Last-Modified", email.utils.formatdate(st.st_mtime, usegmt=True))]
            inm = self.headers.get("If-None-Match")
            if inm is not None and _etag_matches(inm, etag, weak=True):
                self._simple(304, "", common)
                return
            rng_header = self.headers.get("Range")
            rng = None
            if rng_header is not None:
                if_range = self.headers.get("If-Range")
                if if_range is None or if_range.strip() == etag:  # strong comparison only
                    rng = parse_range(rng_header, size)
            if rng == "unsatisfiable":
                self._simple(416, "range not satisfiable", common + [("Content-Range", "bytes */%d" % size)])
                return
            if rng is None:
                start, end, status = 0, size - 1, 200
            else:
                start, end = rng
                status = 206
            length = end - start + 1 if size else 0
            self.send_response(status)
            self.send_header("Content-Type", content_type(full))
            self.send_header("Content-Length", str(length))
            if status == 206:
                self.send_header("Content-Range", "bytes %d-%d/%d" % (start, end, size))
            for k, v in common:
                self.send_header(k, v)
            self.end_headers()
            sent = 0
            if self.command != "HEAD":
                f.seek(start)
                left = length
                try:
                    while left:
                        block = f.read(min(HASH_BLOCK, left))
                        if not block:
                            break  # the file shrank under us: the client sees a short body
                        self.wfile.write(block)
                        sent += len(block)
                        left -= len(block)
                except OSError:  # the client went away (it resumes with a Range later)
                    self.close_connection = True
                    self._log(status, sent, (rng_header or "") + " aborted")
                    return
            self._log(status, sent, rng_header)


class ReleaseServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # [fleet load] listen backlog: socketserver's default of 5 drops the SYNs of a fleet that
    # connects at once (1 s and 3 s retransmits in the tail latency: bench/bench_load.py).
    request_queue_size = 1024

    def __init__(self, root, address, ssl_context=None, quiet=False, log_stream=None):
        self.root = os.path.realpath(root)
        self.ssl_context = ssl_context
        self.quiet = quiet
        self.log_stream = log_stream
        self.etags = ETagCache()
        self.routes = {}  # (method, path) -> func(Request) -> (status, content_type, body bytes)
        self.file_hook = None  # [mirror hook] func(url path) -> None or (status, text[, headers])
        self._log_lock = threading.Lock()
        self.tls_sessions = 0  # TLS handshakes completed: one per connection (benches count them)
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, ReleaseHandler)

    def add_route(self, method, path, func):
        """Serve `method path` with func(Request) -> (status, content_type, body bytes), e.g. the
        device status report (POST /report). Routes are looked up before files."""
        self.routes[(method.upper(), path)] = func

    def log(self, line):
        if self.quiet:
            return
        with self._log_lock:
            print(line, file=self.log_stream or sys.stderr, flush=True)

    def finish_request(self, request, client_address):
        # TLS handshake here, on the request's own thread: a slow client holds only its thread.
        request.settimeout(ReleaseHandler.timeout)
        # No Nagle: a response's head and body go out as separate writes, and the small segment
        # after the head would wait for the client's delayed ACK (about 40 ms a response).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.ssl_context is None:
            self.RequestHandlerClass(request, client_address, self)
            return
        try:
            conn = self.ssl_context.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            self.log("%s - - [%s] TLS handshake failed: %s" % (client_address[0], ReleaseHandler._clf_date(), e))
            return
        with self._log_lock:
            self.tls_sessions += 1
        try:
            self.RequestHandlerClass(conn, client_address, self)
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def handle_error(self, request, client_address):
        # A client that goes away mid-response is normal for OTA (resume); no tracebacks.
        exc = sys.exc_info()[1]
        self.log("%s - - [%s] connection error: %s" % (client_address[0], ReleaseHandler._clf_date(), exc))


class RunningServer:
    """A ReleaseServer on a background thread. .url ends with '/'; .ca_der is None without TLS."""

    def __init__(self, httpd, url, tls_files):
        self.httpd = httpd
        self.url = url
        self.tls = tls_files
        self.ca_der = tls_files.ca_der if tls_files else None
        self.reports = getattr(httpd, "reports", None)  # the ReportStore, or None
        self.port = httpd.server_address[1]
        self.thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                       name="ota-serve", daemon=True)

    def add_route(self, method, path, func):
        self.httpd.add_route(method, path, func)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)
        if self.reports is not None and getattr(self.httpd, "reports_owned", False):
            self.reports.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def default_tls_dir(root):
    return os.path.join(os.path.dirname(os.path.abspath(root).rstrip(os.sep)), ".ota-tls")


def url_host(bind):
    if bind in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind == "::":
        return "[::1]"
    return "[%s]" % bind if ":" in bind else bind


def make_server(root, port=0, tls_dir=None, bind="127.0.0.1", sans=(), quiet=True, tls=True, log_stream=None,
                reports=True):
    """Build (not start) the server: -> (ReleaseServer, url, TlsFiles or None).
    reports: True (the default file, see ota_tool.reports.default_path; skipped with a log line if it
    cannot be made), a path, a ReportStore, or False for no report/status endpoints. The store is
    httpd.reports."""
    if not os.path.isdir(root):
        raise ToolError("%s is not a directory" % root, "give the folder holding the release files")
    files = None
    ctx = None
    if tls:
        files = ensure_tls(tls_dir or default_tls_dir(root), sans)
        ctx = server_context(files)
    try:
        httpd = ReleaseServer(root, (bind, port), ctx, quiet=quiet, log_stream=log_stream)
    except OSError as e:
        raise ToolError("cannot listen on %s port %d: %s" % (bind, port, e.strerror or e),
                        "choose another --port or --bind")
    from . import reports as reports_mod

    try:
        httpd.reports = reports_mod.attach(httpd, reports, root)
    except ToolError:
        httpd.server_close()
        raise
    for method in ("GET", "HEAD"):
        httpd.add_route(method, "/", lambda req: (200, "text/html; charset=utf-8",
                                                  index_page(httpd.root, httpd.reports is not None)))
    httpd.reports_owned = not isinstance(reports, reports_mod.ReportStore)
    url = "%s://%s:%d/" % ("https" if tls else "http", url_host(bind), httpd.server_address[1])
    return httpd, url, files


def index_page(root, with_reports):
    """GET /: what this server publishes (the manifests, their stage) and where devices point."""
    import html

    from .reports import attach_manifests

    esc = html.escape
    found = attach_manifests({"releases": []}, root)["manifests"]
    out = ['<!doctype html><html><head><meta charset="utf-8"><title>ota-tool serve</title>',
           "<style>body{font-family:sans-serif;margin:1em}td,th{padding:.2em .6em;text-align:left}</style></head><body>",
           "<h1>Signed OTA releases</h1>"]
    if found:
        out.append("<table><tr><th>manifest</th><th>release</th><th>channel</th><th>stage</th></tr>")
        for m in found:
            out.append('<tr><td><a href="%s">%s</a></td><td>%s</td><td>%s</td><td>%s</td></tr>' % (
                esc(m["file"]), esc(m["file"]), esc(str(m["version"])), esc(str(m["channel"])),
                "halted" if m["halted"] else "%s%%" % m["percent"]))
        out.append("</table>")
    else:
        out.append("<p>No release published yet: <code>ota-tool release micropython.bin --key KEY.pem "
                   "--version X.Y.Z --out %s</code></p>" % esc(root))
    out.append("<p>Devices: settings <code>source</code> = this URL + <code>&lt;channel&gt;.json</code>%s; "
               "<code>ota-tool deploy --server</code> this URL <code>--ca</code> the CA file the server printed.</p>"
               % (", <code>report_url</code> = this URL + <code>report</code>" if with_reports else ""))
    if with_reports:
        out.append('<p>Fleet: <a href="status">status</a> (<a href="status.json">JSON</a>)</p>')
    out.append("</body></html>\n")
    return "".join(out).encode()


def start_server(root, port=0, tls_dir=None, bind="127.0.0.1", sans=(), quiet=True, tls=True, log_stream=None,
                 reports=True):
    """Serve `root` on a background thread; returns a RunningServer (.url, .ca_der, .reports, .stop())."""
    httpd, url, files = make_server(root, port, tls_dir, bind, sans, quiet, tls, log_stream, reports)
    running = RunningServer(httpd, url, files)
    running.thread.start()
    return running

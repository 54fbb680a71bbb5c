# HTTPS fetcher (the interface is in fetch.py): HTTP/1.1 over socket + ssl, the same code on
# MicroPython and CPython (interpreter differences are in compat, "sockets and TLS").
#
# Trust: `ca` is the DER certificate of the CA that signed the server certificate. To pin one
# server instead, give its self-signed certificate as `ca`: with PROTOCOL_TLS_CLIENT and
# CERT_REQUIRED the context then trusts that certificate and nothing else (mbedTLS and OpenSSL both
# accept a self-signed end-entity certificate found in the trust list). The host name of the URL is
# always sent (SNI) and checked against the certificate. Certificate dates are checked against the
# clock: set it (NTP) before the first download.
#
# One connection at a time, kept open between requests to the same host (HTTP/1.1 keep-alive): a
# TLS handshake is the most expensive step of a check on an ESP32, and manifest, key list, artifact
# and reports usually come from one host. A connection is kept only after a response that was read
# to its framed end (Content-Length or chunked) with no byte to spare, from a server that did not
# say "Connection: close"; never after an error or an unfinished body. Before a kept connection is
# used it must be quiet (a server closing it sends a FIN or an alert first) and not idle longer
# than idle_timeout; when the server closed it anyway before answering a byte, the request goes
# once more over a new connection (a report too: a server that took it and closed without an
# answer may get it twice). fetcher.close() drops it (a socket and the TLS session buffers).
#
# Memory stays flat: one small line buffer (passed from one response to the next) for the response
# head and chunk sizes; body bytes go straight into the caller's buffer. Every length read from the
# network is bounded. All failures are OTAError.
#
# Timeouts, in ms: connect_timeout for each socket operation of connect + TLS handshake + request;
# read_timeout when the server sends nothing at all; stall_timeout when bytes arrive but no progress
# is made: the response head must be complete within it, and the body must deliver min_progress
# bytes (or its end) for every stall_timeout spent waiting in readinto() (a minimum rate, 546 B/s
# by default; the caller's own time between reads, a slow patch or flash, does not count): a
# server dripping a header, a body or a TLS record byte by byte ends as "stalled", not after days.
from .compat import const, ticks_add, ticks_diff, ticks_ms
from .compat.net import is_timeout, net_close, net_open, net_quiet, net_readinto, net_send, tls_context, tls_rejected, tls_start
from .errors import OTAError

_HEAD = const(0)
_BODY = const(1)
_DONE = const(2)
_CLOSED = const(3)

_MAX_INTERIM = const(4)  # 1xx responses skipped before the real one
_MAX_LENGTH_DIGITS = const(12)
_MAX_CHUNK_DIGITS = const(8)
_MAX_ETAG = const(200)
_DRAIN = const(1024)  # an unread body up to this long (an error page, a redirect) is read out to keep the connection


def _bad(where, what):
    return OTAError("bad_response", "%s: %s" % (where, what))


def parse_url(url):
    """-> (scheme, host, port, target, authority) of http(s)://host[:port][/path][?query]."""
    for c in url.encode():  # bytes: iterating the str would intern a one-character str per character
        if c <= 32 or c > 126:
            raise OTAError("bad_url", "URL contains a space, control or non-ASCII character: %r" % url)
    i = url.find("://")
    scheme = url[:i].lower() if i > 0 else ""
    if scheme not in ("https", "http"):
        raise OTAError("bad_url", "only https:// (or http:// when allowed) URLs: %r" % url)
    rest = url[i + 3:]
    j = len(rest)
    for sep in ("/", "?", "#"):
        k = rest.find(sep)
        if 0 <= k < j:
            j = k
    authority = rest[:j]
    target = rest[j:]
    k = target.find("#")
    if k >= 0:
        target = target[:k]
    if not target.startswith("/"):
        target = "/" + target
    if "@" in authority:
        raise OTAError("bad_url", "credentials in URLs are not supported: %r" % url)
    port_text = ""
    if authority.startswith("["):
        k = authority.find("]")
        host = authority[1:k] if k > 0 else ""
        if k < 0 or (authority[k + 1:] and not authority[k + 1:].startswith(":")):
            raise OTAError("bad_url", "bad IPv6 address in %r" % url)
        port_text = authority[k + 2:]
    else:
        k = authority.find(":")
        host = authority if k < 0 else authority[:k]
        if k >= 0:
            port_text = authority[k + 1:]
    port = 443 if scheme == "https" else 80
    if port_text:
        if not port_text.isdigit() or len(port_text) > 5 or not 0 < int(port_text) < 65536:
            raise OTAError("bad_url", "bad port in %r" % url)
        port = int(port_text)
    if not host:
        raise OTAError("bad_url", "no host in %r" % url)
    return scheme, host, port, target, authority


def resolve_url(base, location):
    """The absolute URL a Location header (absolute, //host/..., /path or relative) points to."""
    if "://" in location:
        return location
    scheme, _, _, target, authority = parse_url(base)
    if location.startswith("//"):
        return scheme + ":" + location
    if location.startswith("/"):
        return scheme + "://" + authority + location
    k = target.find("?")
    path = target if k < 0 else target[:k]
    if location.startswith("?"):  # RFC 3986 5.2.2: the same path, another query
        return scheme + "://" + authority + path + location
    return scheme + "://" + authority + path[: path.rfind("/") + 1] + location


def _uint(buf, a, b, max_digits):
    # Strict decimal: digits only, bounded; -1 when it is not one.
    if b <= a or b - a > max_digits:
        return -1
    v = 0
    while a < b:
        c = buf[a]
        if c < 48 or c > 57:
            return -1
        v = v * 10 + c - 48
        a += 1
    return v


def _text(v):
    # Printable ASCII bytes as str, else None (decode() of arbitrary bytes may raise on MicroPython).
    for c in v:
        if c < 32 or c > 126:
            return None
    return v.decode()


class HttpBody:
    """One response. After open(): status, offset, total, etag; readinto()/close() for the body."""

    def __init__(self, fetcher, conn, where):
        self._f = fetcher
        self._conn = conn
        self._where = where  # "host:port" (https) or "http://host:port": also which server it is
        rb = fetcher._spare  # a line and its CRLF: the buffer of the last response, else a new one
        fetcher._spare = None
        self._rb = rb if rb is not None and len(rb) == fetcher.max_line + 2 else bytearray(fetcher.max_line + 2)
        self._rpos = 0  # unread bytes: self._rb[_rpos:_rend]
        self._rend = 0
        self._la = 0  # the last line read: self._rb[_la:_lb]
        self._lb = 0
        self._state = _HEAD
        self._heard = False  # a byte of the response arrived
        self._keep = False  # the connection may carry the next request once this body is read
        self.status = 0
        self.offset = 0
        self.total = None
        self.etag = None
        self.length = None  # Content-Length
        self.chunked = False
        self.location = None
        self.retry_after = None
        self.date = None
        self._range = None
        self._left = 0  # bytes left in the body (Content-Length) or in the current chunk
        self._allowed = None  # bytes the caller still accepts (max_length), None: no limit
        self._crlf = False  # a CRLF is due after the current chunk's data
        self._waited = 0  # ms spent waiting for body bytes in the current progress window
        self._got = 0  # body bytes delivered in it

    def _start(self, url, allowed):
        # The head is accepted: the body may deliver at most `allowed` bytes (None: no limit), and
        # a Content-Length above that is refused before a byte of it is read.
        if allowed is not None and self.length is not None and self.length > allowed:
            raise OTAError("too_long", "%s sends %d bytes, more than the %d allowed" % (url, self.length, allowed))
        self._allowed = allowed
        if not self.chunked:
            self._left = self.length
            if not self._left:
                self._state = _DONE

    def _recv(self, buf, nbytes, since):
        # n > 0 bytes into buf[0:n], or 0 at the end of the stream; OTAError on a timeout.
        f = self._f
        quiet = ticks_ms()
        while True:
            now = ticks_ms()
            left = f.stall_timeout - ticks_diff(now, since)
            if left <= 0:
                raise OTAError("stalled", "%s too slow: the response head, or %d bytes of its body, not in %d ms"
                               % (self._where, f.min_progress, f.stall_timeout))
            wait = f.read_timeout - ticks_diff(now, quiet)
            if wait <= 0:
                raise OTAError("timeout", "%s sent nothing for %d ms" % (self._where, f.read_timeout))
            if wait > left:
                wait = left
            if f.deadline is not None:
                wait = f._budget(wait)
            try:
                n = net_readinto(self._conn, buf, nbytes, wait)
            except MemoryError:
                raise
            except Exception as e:
                raise _net_error(e, self._where)
            if n is None:
                continue
            if n:
                self._heard = True
            if n > -1:
                return n
            quiet = ticks_ms()  # bytes arrived, not yet a whole TLS record

    def _line(self, since):
        # The next line, without its CRLF (a bare LF is accepted), as self._rb[_la:_lb]; returns
        # its length with the line end.
        rb = self._rb
        while True:
            i = rb.find(b"\n", self._rpos, self._rend)
            if i >= 0:
                break
            if self._rpos:  # move what is left to the front, then read more after it
                k = self._rend - self._rpos
                rb[0:k] = memoryview(rb)[self._rpos:self._rend]
                self._rpos = 0
                self._rend = k
            if self._rend == len(rb):
                raise _bad(self._where, "a header or chunk-size line is longer than %d bytes" % (len(rb) - 2))
            n = self._recv(memoryview(rb)[self._rend:], len(rb) - self._rend, since)
            if not n:
                raise OTAError("truncated", "%s closed the connection in the middle of a %s"
                               % (self._where, "response head" if self._state == _HEAD else "chunk header"))
            self._rend += n
        self._la = a = self._rpos
        self._rpos = i + 1
        if i > a and rb[i - 1] == 13:
            i -= 1
        self._lb = i
        return self._rpos - a

    def _read_head(self, since):
        budget = self._f.max_header_bytes
        for _ in range(_MAX_INTERIM + 1):
            budget -= self._line(since)
            line = bytes(memoryview(self._rb)[self._la:self._lb])
            n = len(line)
            ok = n >= 12 and line.startswith(b"HTTP/1.") and line[7] in (48, 49) and line[8] == 32
            status = _uint(line, 9, 12, 3) if ok else -1
            if status < 100 or (n > 12 and line[12] != 32):
                raise _bad(self._where, "not an HTTP/1.x status line: %r" % line[:40])
            self._keep = line[7] == 49  # HTTP/1.1 connections persist unless the server says otherwise
            if status >= 200:
                self.status = status
                self._headers(since, budget, True)
                break
            budget = self._headers(since, budget, False)  # 1xx: informational, skipped
        else:
            raise _bad(self._where, "too many 1xx responses")
        if status == 204 or status == 304:
            self.length = 0  # RFC 9112 6.3: never a body, whatever Content-Length says
            self.chunked = False
        elif self.chunked:
            self.length = None  # RFC 9112: Transfer-Encoding overrides Content-Length
        elif self.length is None and status == 205:
            self.length = 0
        elif self.length is None:
            self._keep = False  # a body that ends when the connection does
        self._state = _BODY
        self._left = self.length or 0
        if self.length == 0:
            self._state = _DONE

    def _headers(self, since, budget, store):
        # Header lines up to the empty line; `store` keeps the ones we use. Returns what is left of
        # the byte budget.
        f = self._f
        where = self._where
        count = 0
        while True:
            budget -= self._line(since)
            if budget < 0:
                raise _bad(where, "response head longer than %d bytes" % f.max_header_bytes)
            a = self._la
            b = self._lb
            if a == b:
                return budget
            count += 1
            if count > f.max_headers:
                raise _bad(where, "more than %d header lines" % f.max_headers)
            rb = self._rb
            colon = rb.find(b":", a, b)
            if colon <= a or rb[a] in (32, 9) or rb[colon - 1] in (32, 9):
                raise _bad(where, "malformed header line %r" % bytes(rb[a:min(b, a + 40)]))
            if not store:
                continue
            name = bytes(rb[a:colon]).lower()
            value = bytes(rb[colon + 1:b]).strip()
            if name == b"content-length":
                n = _uint(value, 0, len(value), _MAX_LENGTH_DIGITS)
                if n < 0 or (self.length is not None and n != self.length):
                    raise _bad(where, "bad Content-Length %r" % value)
                self.length = n
            elif name == b"transfer-encoding":
                if value.lower() != b"chunked":
                    raise _bad(where, "unsupported Transfer-Encoding %r" % value)
                self.chunked = True
            elif name == b"content-encoding":
                if value.lower() != b"identity":
                    raise _bad(where, "unrequested Content-Encoding %r" % value)
            elif name == b"content-range":
                self._range = value
            elif name == b"etag":
                if len(value) <= _MAX_ETAG:
                    self.etag = _text(value)
            elif name == b"location":
                self.location = _text(value)
                if self.location is None:
                    raise _bad(where, "Location with non-ASCII bytes")
            elif name == b"retry-after" or name == b"date":  # kept raw (bounded): ota.schedule.retry_after reads them
                if len(value) <= 64:
                    if name == b"date":
                        self.date = value
                    else:
                        self.retry_after = value
            elif name == b"connection" and b"close" in value.lower():
                self._keep = False

    def readinto(self, buf):
        if self._state >= _DONE:
            if self._state == _DONE:
                return 0
            raise OTAError("closed", "readinto() on a closed response from %s" % self._where)
        try:
            size = len(buf)
            if not size:
                raise OTAError("bad_call", "readinto() needs a non-empty buffer")
            if self._got >= self._f.min_progress:  # this window's bytes came: the next window starts
                self._waited = self._got = 0
            entered = ticks_ms()
            since = ticks_add(entered, -self._waited)  # the window's waiting so far counts against it
            if self.chunked and not self._left:
                self._next_chunk(since)
                if self._state == _DONE:
                    return 0
            want = self._left if self._left < size else size
            if self._allowed is not None:
                if not self._allowed:
                    raise OTAError("too_long", "%s sends more than the maximum length" % self._where)
                if want > self._allowed:
                    want = self._allowed
            n = self._rend - self._rpos
            if n:  # bytes that came with the head or a chunk header
                if n > want:
                    n = want
                buf[0:n] = memoryview(self._rb)[self._rpos:self._rpos + n]
                self._rpos += n
            else:
                n = self._recv(buf, want, since)
                if not n:
                    raise OTAError("truncated", "%s closed the connection %d bytes before the end of the %s"
                                   % (self._where, self._left, "chunk" if self.chunked else "body"))
            self._left -= n
            self._got += n
            self._waited += ticks_diff(ticks_ms(), entered)
            if self._allowed is not None:
                self._allowed -= n
            if not self._left and not self.chunked:
                self._state = _DONE
            return n
        except BaseException as e:
            self.close(False)  # never used again after an error
            if isinstance(e, Exception) and not isinstance(e, MemoryError):
                raise _net_error(e, self._where)
            raise

    def _next_chunk(self, since):
        if self._crlf:
            self._line(since)
            if self._la != self._lb:
                raise _bad(self._where, "chunk data longer than its size")
            self._crlf = False
        self._line(since)
        # chunk-size: hex digits only, then nothing or (optional blanks) ";extensions"
        rb = self._rb
        i = self._la
        b = self._lb
        size = 0
        while i < b:
            c = rb[i]
            if 48 <= c <= 57:
                c -= 48
            elif 97 <= c <= 102:
                c -= 87
            elif 65 <= c <= 70:
                c -= 55
            else:
                break
            size = size * 16 + c
            i += 1
        digits = i - self._la
        while i < b and rb[i] in (32, 9):
            i += 1
        if not digits or digits > _MAX_CHUNK_DIGITS or (i < b and rb[i] != 59):
            raise _bad(self._where, "bad chunk size line %r" % bytes(rb[self._la:min(b, self._la + 40)]))
        if not size:
            self._headers(since, self._f.max_header_bytes, False)  # trailers: bounded, ignored
            self._state = _DONE
            return
        if self._allowed is not None and size > self._allowed:
            raise OTAError("too_long", "%s sends more than the maximum length" % self._where)
        self._left = size
        self._crlf = True

    def close(self, reuse=True):
        """Done with this response. Its connection carries the next request when the body was read
        to its framed end (a short unread one, at most _DRAIN bytes of Content-Length, is read out
        first: an error page, a redirect) and nothing more came; else it is closed."""
        if self._state == _CLOSED:
            return
        keep = reuse and self._keep
        if keep and self._state == _BODY and not self.chunked and self._left <= _DRAIN:
            try:
                since = ticks_ms()
                while self._left:
                    n = self._rend - self._rpos
                    if not n:
                        self._rpos = 0
                        self._rend = n = self._recv(self._rb, len(self._rb), since)
                        if not n:
                            break
                    if n > self._left:
                        break  # more than the body: a server out of step
                    self._rpos += n
                    self._left -= n
                else:
                    self._state = _DONE
            except Exception:
                keep = False
        keep = keep and self._state == _DONE and self._rpos == self._rend
        self._state = _CLOSED
        f = self._f
        if keep and f.keep_alive:
            f.close()  # one connection kept at most
            f._kept = (self._conn, self._where, ticks_ms())
        else:
            net_close(self._conn)
        f._spare = self._rb
        self._rb = self._conn = None


def _net_error(e, where):
    if isinstance(e, OTAError):
        return e
    if tls_rejected(e):  # MicroPython: the handshake runs in the first send (compat.net)
        return OTAError("tls_verify", "certificate of %s rejected: %s" % (where, str(e).strip()))
    if is_timeout(e):
        return OTAError("timeout", "%s did not answer in time" % where)
    return OTAError("network", "%s: %s %s" % (where, type(e).__name__, e))


def _http_error(url, body):
    e = OTAError("http_%d" % body.status, "%s answered HTTP %d" % (url, body.status))
    if body.status in (429, 503) and body.retry_after:
        from .audit import trusted_time
        from .schedule import retry_after

        e.retry_after = retry_after(body.retry_after, body.date, trusted_time())  # seconds, or None
    return e


class HttpFetcher:
    """Fetcher over HTTPS (see fetch.py). `ca`: DER CA certificate, or the server's own self-signed
    certificate to pin it. `cert`/`key`: DER client certificate and PKCS#8 key for mutual TLS.
    Plain http:// is refused unless allow_http=True, and then warned about on every use.
    keep_alive: keep one connection open between requests to the same host (see above), at most
    idle_timeout ms; close() closes it (do when done for a while: it holds a socket and TLS buffers)."""

    def __init__(self, ca=None, cert=None, key=None, allow_http=False,
                 connect_timeout=15000, read_timeout=10000, stall_timeout=30000,
                 max_redirects=3, max_line=1024, max_headers=32, max_header_bytes=8192,
                 keep_alive=True, idle_timeout=20000, min_progress=16384):
        self.ca = ca
        self.cert = cert
        self.key = key
        self.allow_http = allow_http
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.stall_timeout = stall_timeout
        self.max_redirects = max_redirects
        self.max_line = max_line
        self.max_headers = max_headers
        self.max_header_bytes = max_header_bytes
        self.keep_alive = keep_alive
        self.idle_timeout = idle_timeout
        self.min_progress = min_progress
        self.deadline = None  # ticks_ms by which every request must be done (a caller's time box), or None
        self._ctx = None
        self._known_url = None  # total and ETag last seen for one URL: a resume must match them
        self._known_total = None
        self._kept = None  # (connection, where, ticks when kept): the connection kept open
        self._spare = None  # the line buffer of the last closed response, for the next one

    def _budget(self, ms):
        # ms, cut to what is left before the deadline; past it, a timeout
        if self.deadline is None:
            return ms
        left = ticks_diff(self.deadline, ticks_ms())
        if left <= 0:
            raise OTAError("timeout", "out of time: the caller's time for these requests is up")
        return ms if ms < left else left

    def close(self):
        """Close the connection kept open, if any, and let the line buffer go: the fetcher holds
        nothing but its TLS context until the next request (open() makes what it needs)."""
        kept = self._kept
        self._kept = self._spare = None
        if kept is not None:
            net_close(kept[0])

    def _exchange(self, method, url, headers, data):
        # Send one request (over the kept connection when it goes to the same server), read the
        # response head. Returns the HttpBody.
        scheme, host, port, target, authority = parse_url(url)
        where = "%s:%d" % (host, port)
        ctx = None
        if scheme == "http":
            if not self.allow_http:
                raise OTAError("insecure", "plain http:// refused (no integrity, no authenticity): %s" % url)
            print("ota: WARNING: plain http:// for %s: the transport is not authenticated" % url)
            where = "http://" + where
        elif self._ctx is None:
            if self.ca is None:
                raise OTAError("no_ca", "https needs a CA certificate (or the server's certificate, to "
                                        "pin it) in DER: HttpFetcher(ca=...)")
            try:
                self._ctx = tls_context(self.ca, self.cert, self.key)
            except MemoryError:
                raise
            except Exception as e:
                raise OTAError("bad_ca", "cannot load the CA or client certificate: %s" % e)
        if scheme == "https":
            ctx = self._ctx
        req = ("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: ota\r\nAccept-Encoding: identity\r\n%s%s\r\n"
               % (method, target, authority, "" if self.keep_alive else "Connection: close\r\n", headers)).encode()
        conn = None
        kept = self._kept
        self._kept = None
        if kept is not None:
            if kept[1] == where and ticks_diff(ticks_ms(), kept[2]) < self.idle_timeout and net_quiet(kept[0]):
                conn = kept[0]
            else:
                net_close(kept[0])  # another server, idle too long, or the server spoke (closed it)
        while True:
            reused = conn is not None
            if not reused:
                conn = self._connect(host, port, where, ctx)
            body = HttpBody(self, conn, where)
            try:
                net_send(conn, req, self._budget(self.connect_timeout))
                if data:
                    net_send(conn, data, self._budget(self.connect_timeout))
                body._read_head(ticks_ms())
                return body
            except BaseException as e:
                body.close(False)
                if not isinstance(e, Exception) or isinstance(e, MemoryError):
                    raise
                e = _net_error(e, where)
                if not reused or body._heard or e.reason not in ("truncated", "network"):
                    raise e
                conn = None  # the server closed the kept connection before answering: once more, anew

    def _connect(self, host, port, where, ctx):
        timeout = self._budget(self.connect_timeout)
        try:
            conn = net_open(host, port, timeout)
        except MemoryError:
            raise
        except Exception as e:
            if is_timeout(e):
                raise OTAError("timeout", "cannot connect to %s in %d ms" % (where, self.connect_timeout))
            raise OTAError("connect", "cannot connect to %s: %s" % (where, e))
        if ctx is not None:
            try:
                tls_start(conn, ctx, host)
            except BaseException as e:
                net_close(conn)
                if not isinstance(e, Exception) or isinstance(e, MemoryError):
                    raise
                if tls_rejected(e):
                    raise OTAError("tls_verify", "certificate of %s rejected: %s" % (where, str(e).strip()))
                if is_timeout(e):
                    raise OTAError("timeout", "TLS handshake with %s timed out" % where)
                raise OTAError("tls", "TLS handshake with %s failed: %s %s" % (where, type(e).__name__, e))
        return conn

    def open(self, url, offset=0, max_length=None, etag=None):
        if offset < 0 or (max_length is not None and offset > max_length):
            raise OTAError("bad_call", "offset %d outside 0..max_length" % offset)
        headers = ""
        if offset:
            headers = "Range: bytes=%d-\r\n" % offset
            if etag is not None:
                if _text(etag.encode()) is None:
                    raise OTAError("bad_call", "ETag with a control character")
                if len(etag) <= _MAX_ETAG and etag.startswith('"'):  # If-Range takes strong ETags only
                    headers += "If-Range: %s\r\n" % etag
        target = url
        for _ in range(self.max_redirects + 1):
            body = self._exchange("GET", target, headers, None)
            if body.status in (301, 302, 303, 307, 308):
                location = body.location
                body.close()
                if not location:
                    raise OTAError("bad_response", "%s: redirect without a Location" % target)
                nxt = resolve_url(target, location)
                if target.startswith("https:") and not nxt.startswith("https:") and not self.allow_http:
                    raise OTAError("insecure", "redirect from https to %s refused" % nxt)
                target = nxt
                continue
            try:
                self._accept(body, url, offset, max_length, etag)
            except BaseException as e:
                # An HTTP error status leaves the connection fit for the next request (its short
                # body is read out); a response that broke the protocol does not.
                body.close(isinstance(e, OTAError) and (e.reason.startswith("http_") or e.reason == "range_not_satisfiable"))
                raise
            return body
        raise OTAError("too_many_redirects", "%s: more than %d redirects" % (url, self.max_redirects))

    def _accept(self, body, url, offset, max_length, etag):
        status = body.status
        if status == 416:
            raise OTAError("range_not_satisfiable", "%s has nothing from byte %d" % (url, offset))
        if status < 200 or status > 299:
            raise _http_error(url, body)
        known = self._known_total if url == self._known_url else None
        if status == 206:
            # Content-Range: b"bytes START-END/TOTAL" (TOTAL may be "*")
            v = body._range
            start = end = total = -1
            if v is not None and v.startswith(b"bytes "):
                dash = v.find(b"-", 6)
                slash = v.find(b"/", 6)
                if 0 <= dash < slash:
                    start = _uint(v, 6, dash, _MAX_LENGTH_DIGITS)
                    end = _uint(v, dash + 1, slash, _MAX_LENGTH_DIGITS)
                    total = None if v[slash + 1:] == b"*" else _uint(v, slash + 1, len(v), _MAX_LENGTH_DIGITS)
            if start < 0 or end < start or (total is not None and total < 0):
                raise OTAError("bad_response", "%s: 206 without a valid Content-Range" % url)
            if start != offset or (total is not None and end != total - 1):
                raise OTAError("range_mismatch", "%s sent bytes %d-%d/%s for a request from byte %d"
                               % (url, start, end, total, offset))
            if body.length is None and not body.chunked:
                body.length = end + 1 - start
            elif body.length is not None and body.length != end + 1 - start:
                raise OTAError("range_mismatch", "%s: Content-Length %d for bytes %d-%d" % (url, body.length, start, end))
            if known is not None and total is not None and total != known:
                raise OTAError("range_mismatch", "%s is now %d bytes, was %d: start again" % (url, total, known))
            if etag is not None and body.etag is not None and body.etag != etag:
                raise OTAError("range_mismatch", "%s changed (ETag %s, was %s): start again" % (url, body.etag, etag))
            body.offset = offset
            body.total = total
        else:
            if body.length is None and not body.chunked:
                raise OTAError("bad_response", "%s: neither Content-Length nor chunked: the length "
                                               "cannot be checked" % url)
            body.offset = 0
            body.total = body.length
        if max_length is not None and body.total is not None and body.total > max_length:
            raise OTAError("too_long", "%s is %d bytes, more than the %d allowed" % (url, body.total, max_length))
        body._start(url, None if max_length is None else max_length - body.offset)
        self._known_url = url
        self._known_total = body.total

    def post_json(self, url, data, max_response=1024):
        """POST `data` (JSON bytes); returns the response body (at most max_response bytes).
        Redirects are not followed (a status report goes where it is configured)."""
        headers = "Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
        body = self._exchange("POST", url, headers, data)
        try:
            if body.status < 200 or body.status > 299:
                raise _http_error(url, body)
            if body.length is None and not body.chunked:
                raise OTAError("bad_response", "%s: neither Content-Length nor chunked" % url)
            body._start(url, max_response)
            buf = bytearray(max_response + 1)
            mv = memoryview(buf)
            got = 0
            while True:
                n = body.readinto(mv[got:])
                if not n:
                    return bytes(mv[:got])
                got += n
        finally:
            body.close()

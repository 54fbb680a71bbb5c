"""A TLS-terminating TCP proxy for tests: devices talk HTTPS (CA checked) to it, it forwards the
bytes unchanged to a plain-TCP upstream (moto's S3 server, which speaks only HTTP). It knows
nothing of HTTP, so Range, ETag and every other header pass through exactly as the upstream sends
them, like stunnel or a TLS load balancer in TCP mode."""
import select
import socket
import ssl
import threading


class TlsProxy:
    def __init__(self, upstream, tls_files, bind="127.0.0.1"):
        self.upstream = upstream  # (host, port)
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(tls_files.server_pem, tls_files.server_key)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((bind, 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.url = "https://%s:%d/" % (bind, self.port)
        self.connections = 0
        self._closed = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        self.sock.settimeout(0.2)
        while not self._closed:
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        conn.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(conn, server_side=True)
        except (ssl.SSLError, OSError):
            conn.close()
            return
        try:
            up = socket.create_connection(self.upstream, timeout=10)
        except OSError:
            tls.close()
            return
        try:
            self._pump(tls, up)
        except (OSError, ssl.SSLError):
            pass
        finally:
            for s in (tls, up):
                try:
                    s.close()
                except OSError:
                    pass

    @staticmethod
    def _pump(tls, up):
        while True:
            if tls.pending():
                ready = [tls]
            else:
                ready, _, _ = select.select([tls, up], [], [], 30)
                if not ready:
                    return  # idle for 30 s
            if tls in ready:
                try:
                    data = tls.recv(65536)
                except ssl.SSLWantReadError:
                    data = None
                if data == b"":
                    up.shutdown(socket.SHUT_WR)  # the client is done sending; answers may follow
                    while True:
                        data = up.recv(65536)
                        if not data:
                            return
                        tls.sendall(data)
                if data:
                    up.sendall(data)
            if up in ready:
                data = up.recv(65536)
                if not data:
                    return
                tls.sendall(data)

    def close(self):
        self._closed = True
        self._thread.join(2)
        self.sock.close()

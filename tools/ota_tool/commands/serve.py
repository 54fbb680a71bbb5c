"""`ota-tool serve`: serve a release directory over HTTPS to devices (and to the demo)."""
import sys

from .. import server
from ..errors import ToolError

HELP = "serve a release directory over HTTPS (Range, ETag), with a local CA made on first use"
DESCRIPTION = """Serve RELEASE_DIR over HTTPS for devices: GET/HEAD with Range and strong ETags,
one access-log line per request on stderr. On first use a local CA and a server certificate are made
in the TLS directory (default RELEASE_DIR/../.ota-tls); give the CA (ca.der) to the devices. The server
certificate names localhost, 127.0.0.1, ::1 and this host: add the names or addresses the devices use
with --san.

Devices may POST status reports to /report (JSON); they are kept in SQLite (default
RELEASE_DIR/../ota-reports.sqlite, outside the served folder; --reports PATH to choose, --no-reports
to turn off). GET /status is a small fleet page, /status.json the same as JSON; `ota-tool fleet`
prints it from the database and `ota-tool rollout` reads it before widening a stage.

With --mirror UPSTREAM_URL, RELEASE_DIR is the cache of a gateway for a local fleet (see
ota_tool.mirror and docs/distribution.md): files are fetched from upstream over TLS, artifacts kept
content-addressed, manifests re-validated every --refresh seconds and served from the cache when
upstream is unreachable; reports are queued on disk and forwarded upstream. Devices still verify
every signature: the gateway needs no key and cannot change what they accept."""


def add_arguments(p):
    from .common import tcp_port

    p.add_argument("release_dir", metavar="RELEASE_DIR", help="folder with the release files")
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=tcp_port, default=8443, metavar="N", help="TCP port (default 8443; 0 = any free port)")
    p.add_argument("--tls-dir", metavar="DIR", help="where the CA and server certificate live (default RELEASE_DIR/../.ota-tls)")
    p.add_argument("--san", action="append", default=[], metavar="NAME",
                   help="extra DNS name or IP address for the server certificate (repeatable)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain HTTP, no authentication of the server: devices refuse it unless built with allow_http")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument("--reports", metavar="PATH",
                   help="SQLite file for device status reports (default RELEASE_DIR/../ota-reports.sqlite)")
    p.add_argument("--no-reports", action="store_true", help="no POST /report, /status or /status.json")
    # [mirror] `serve --mirror`: a caching gateway (ota_tool.mirror)
    g = p.add_argument_group("gateway (--mirror)")
    g.add_argument("--mirror", metavar="UPSTREAM_URL",
                   help="be a caching gateway of this upstream release URL (https://host/path/); RELEASE_DIR is the cache")
    g.add_argument("--upstream-ca", metavar="FILE",
                   help="CA (PEM or DER) that signed the upstream's certificate (default: the system CAs)")
    g.add_argument("--refresh", type=int, default=60, metavar="SECONDS",
                   help="re-validate manifests with upstream at most this often (default 60)")
    g.add_argument("--report-url", metavar="URL", help="where device reports are forwarded (default UPSTREAM_URL/report; https, trusted with the upstream's CA)")
    g.add_argument("--outbox", metavar="PATH",
                   help="SQLite queue of reports not yet forwarded (default RELEASE_DIR/../ota-mirror-outbox.sqlite)")


def run(args):
    if args.mirror:  # [mirror]
        return _run_mirror(args)
    httpd, url, files = server.make_server(
        args.release_dir, port=args.port, tls_dir=args.tls_dir, bind=args.bind, sans=args.san,
        quiet=args.quiet, tls=not args.no_tls,
        reports=False if args.no_reports else (args.reports or True))
    print("serving %s at %s (Ctrl-C to stop)" % (httpd.root, url))
    if httpd.reports is not None:
        print("device reports: POST %sreport -> %s; fleet: %sstatus (JSON: %sstatus.json)" % (
            url, httpd.reports.path, url, url))
    elif not args.no_reports:
        from ..reports import default_path

        print("device reports are off: %s cannot be written (give --reports PATH)" % default_path(args.release_dir),
              file=sys.stderr)
    if files is None:
        print("WARNING: plain HTTP: anyone on the network can read and change what devices download; "
              "devices refuse http:// unless their settings say \"secure\": false", file=sys.stderr)
        print("set up a board for this server (a test network only):")
        print("    ota-tool deploy --server %s --keys KEY.pem.pub --wifi SSID" % url)
    else:
        if files.created:
            print("made in %s: %s" % (files.dir, ", ".join(files.created)))
        print("CA certificate: %s (SHA-256 fingerprint %s)" % (files.ca_der_path, files.fingerprint))
        names = server.default_sans(args.san)
        print("server certificate names: %s (add the name or address the boards use with --san)" % ", ".join(names))
        print("set up a board for this server:")
        print("    ota-tool deploy --server %s --ca %s --keys KEY.pem.pub --wifi SSID" % (
            url if args.bind not in ("", "0.0.0.0", "::") else url.replace(server.url_host(args.bind), "HOST"),
            files.ca_der_path))
        if args.bind in ("", "0.0.0.0", "::"):
            print("  HOST: a name or address of this machine the board reaches and the certificate names "
                  "(127.0.0.1 for a simulated board)")
        print("  the board's settings then name %s<channel>.json as the source and %sreport for reports; it "
              "checks certificate dates, so its clock must be set (NTP)" % (url, url))
    sys.stdout.flush()
    return _serve(httpd, httpd.reports.close if httpd.reports is not None else None)


def _run_mirror(args):
    # [mirror] `serve --mirror UPSTREAM_URL CACHE_DIR`
    import os

    from .. import mirror

    if args.no_tls:
        raise ToolError("a gateway serves devices over TLS only", "drop --no-tls")
    if args.reports or args.no_reports:
        raise ToolError("--reports/--no-reports do not apply to a gateway", "reports are forwarded upstream (--report-url)")
    if args.refresh < 0:
        raise ToolError("--refresh must be >= 0", "seconds between checks with upstream, e.g. --refresh 60", exit_code=2)
    os.makedirs(args.release_dir, exist_ok=True)
    ca = mirror.load_ca(args.upstream_ca) if args.upstream_ca else None
    httpd, url, files = server.make_server(args.release_dir, port=args.port, tls_dir=args.tls_dir, bind=args.bind,
                                           sans=args.san, quiet=args.quiet, reports=False)
    m = mirror.attach(httpd, args.mirror, ca, refresh=args.refresh, outbox=args.outbox, report_url=args.report_url)
    print("gateway for %s: serving %s at %s (Ctrl-C to stop)" % (m.up.base_url, httpd.root, url))
    print("device reports: POST %sreport -> queued in %s -> %s" % (url, m.outbox.path, m.report_url))
    if files.created:
        print("made in %s: %s" % (files.dir, ", ".join(files.created)))
    print("CA certificate for the local devices: %s (SHA-256 %s)" % (files.ca_der_path, files.fingerprint))
    def close():
        m.forwarder.stop()
        m.outbox.close()

    return _serve(httpd, close)


def _serve(httpd, close=None):
    # Until Ctrl-C; then the socket, and what the server kept open (reports, the gateway's queue).
    sys.stdout.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        httpd.server_close()
        if close is not None:
            close()
    return 0

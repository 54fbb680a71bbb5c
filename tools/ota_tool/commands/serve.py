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
prints it from the database and `ota-tool rollout` reads it before widening a stage."""


def add_arguments(p):
    p.add_argument("release_dir", metavar="RELEASE_DIR", help="folder with the release files")
    p.add_argument("--bind", default="0.0.0.0", metavar="ADDR", help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=int, default=8443, metavar="N", help="TCP port (default 8443; 0 = any free port)")
    p.add_argument("--tls-dir", metavar="DIR", help="where the CA and server certificate live (default RELEASE_DIR/../.ota-tls)")
    p.add_argument("--san", action="append", default=[], metavar="NAME",
                   help="extra DNS name or IP address for the server certificate (repeatable)")
    p.add_argument("--no-tls", action="store_true",
                   help="plain HTTP, no authentication of the server: devices refuse it unless built with allow_http")
    p.add_argument("--quiet", action="store_true", help="no access log")
    p.add_argument("--reports", metavar="PATH",
                   help="SQLite file for device status reports (default RELEASE_DIR/../ota-reports.sqlite)")
    p.add_argument("--no-reports", action="store_true", help="no POST /report, /status or /status.json")


def run(args):
    if args.port < 0 or args.port > 65535:
        raise ToolError("--port must be 0..65535")
    httpd, url, files = server.make_server(
        args.release_dir, port=args.port, tls_dir=args.tls_dir, bind=args.bind, sans=args.san,
        quiet=args.quiet, tls=not args.no_tls,
        reports=False if args.no_reports else (args.reports or True))
    print("serving %s at %s (Ctrl-C to stop)" % (httpd.root, url))
    if httpd.reports is not None:
        print("device reports: POST %sreport -> %s; fleet status: %sstatus" % (url, httpd.reports.path, url))
    elif not args.no_reports:
        from ..reports import default_path

        print("device reports are off: %s cannot be written (give --reports PATH)" % default_path(args.release_dir),
              file=sys.stderr)
    if files is None:
        print("WARNING: plain HTTP: anyone on the network can read and change what devices download; "
              "devices refuse http:// unless HttpFetcher(allow_http=True)", file=sys.stderr)
    else:
        if files.created:
            print("made in %s: %s" % (files.dir, ", ".join(files.created)))
        print("CA certificate: %s (PEM: %s)" % (files.ca_der_path, files.ca_pem))
        print("CA SHA-256 fingerprint: %s" % files.fingerprint)
        print("server certificate names: %s (add more with --san)" % ", ".join(server.default_sans(args.san)))
        print("device: copy the CA to the device and trust only it, e.g.")
        print("    mpremote cp %s :ca.der" % files.ca_der_path)
        print('    HttpFetcher(ca=open("ca.der", "rb").read())')
        print("  and set the device clock (NTP) first: certificate dates are checked.")
    sys.stdout.flush()
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
    finally:
        httpd.server_close()
        if httpd.reports is not None:
            httpd.reports.close()
    return 0

"""`ota-tool notify`: tell devices over MQTT to check for an update now (ota.push on the device)."""
import json
import os
import sys
import threading
import time

HELP = "publish an MQTT notification that makes devices check for updates now (push, beside polling)"
DESCRIPTION = """Publish a notification on TOPIC_PREFIX/channel/NAME (--channel) or
TOPIC_PREFIX/device/ID (--device) at the broker BROKER_URL (mqtts://host[:port], TLS, the broker's
certificate checked against --ca or the system CAs). Devices running ota.push check their update
server at once, through the normal signed path: the notification carries no release and is never
trusted. Its only content is a hint, {"spread": SECONDS}, the window over which devices spread
their checks (default 30 s for a channel, 0 for single devices). Published at QoS 1, not retained;
the command waits for the broker's acknowledgement."""


def add_arguments(p):
    p.add_argument("broker", metavar="BROKER_URL", help="mqtts://host[:port] (port 8883 by default)")
    p.add_argument("--channel", action="append", default=[], metavar="NAME", help="notify every device of a channel (repeatable)")
    p.add_argument("--device", action="append", default=[], metavar="ID", help="notify one device (repeatable)")
    p.add_argument("--ca", metavar="FILE", help="CA certificate of the broker, PEM or DER (default: the system CAs)")
    p.add_argument("--cert", metavar="FILE", help="client certificate (PEM) for mutual TLS")
    p.add_argument("--key", metavar="FILE", help="client key (PEM) for mutual TLS")
    p.add_argument("--username", metavar="NAME", help="broker user name")
    p.add_argument("--password-env", metavar="VAR", help="broker password, from this environment variable")
    p.add_argument("--prefix", default="ota/", help="topic prefix (default ota/)")
    p.add_argument("--spread", type=int, metavar="SECONDS",
                   help="devices start their check at a random moment within this window (default 30 for a channel, 0 for devices)")
    p.add_argument("--timeout", type=float, default=15.0, metavar="SECONDS", help="give up after this long (default 15)")
    p.add_argument("--insecure-plain-mqtt", action="store_true",
                   help="allow mqtt:// without TLS (test brokers only: anyone on the path sees and can fake notifications)")
    p.add_argument("--json", action="store_true", help="machine-readable output")


def _name_ok(s):
    return bool(s) and len(s) <= 64 and all(0x21 <= ord(c) <= 0x7E and c not in "+#/" for c in s)


def _ssl_context(ca_path, cert, key):
    import ssl

    from ..errors import ToolError

    from ..files import read_bytes

    ctx = ssl.create_default_context()
    if ca_path:
        data = read_bytes(ca_path)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # this CA only
        try:
            ctx.load_verify_locations(cadata=data.decode("ascii", "replace") if b"-----BEGIN" in data else data)
        except (ssl.SSLError, ValueError) as e:
            from ..filekinds import kind

            raise ToolError("%s is %s, not a CA certificate (%s)" % (ca_path, kind(data[:65536], len(data)), e),
                            "give the broker's CA certificate, PEM or DER")
    if cert:
        try:
            ctx.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise ToolError("cannot use the client certificate %s / key %s: %s" % (cert, key, e),
                            "give a PEM certificate with --cert and its PEM key with --key")
    return ctx


def publish(broker, targets, ca=None, cert=None, key=None, username=None, password=None, timeout=15.0,
            allow_plain=False):
    """Publish each (topic, payload bytes) at QoS 1 and wait for the acknowledgements."""
    from ota import push
    from ota.errors import OTAError

    from ..errors import ToolError

    try:
        import paho.mqtt.client as mqtt
    except ImportError:
        raise ToolError("ota-tool notify needs paho-mqtt", "pip install 'paho-mqtt>=2,<3'")
    try:
        host, port, tls = push.parse_url(broker)
    except OTAError as e:
        raise ToolError(e.message, "e.g. mqtts://broker.example.com (port 8883 by default)")
    if not tls and not allow_plain:
        raise ToolError("%s is plain MQTT" % broker, "use mqtts:// (or --insecure-plain-mqtt on a test broker)")
    client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                         client_id="ota-tool-notify-%d" % os.getpid(), protocol=mqtt.MQTTv311)
    if tls:
        client.tls_set_context(_ssl_context(ca, cert, key))
    if username:
        client.username_pw_set(username, password)
    connected = threading.Event()
    result = {}

    def on_connect(c, userdata, flags, reason_code, properties):
        result["rc"] = reason_code
        connected.set()

    client.on_connect = on_connect
    try:
        client.connect(host, port, keepalive=max(10, int(timeout) * 2))
    except (OSError, ValueError) as e:
        raise ToolError("cannot connect to %s: %s" % (broker, e), "check the URL, the port and --ca")
    client.loop_start()
    try:
        if not connected.wait(timeout):
            raise ToolError("%s did not complete the MQTT connection in %g s" % (broker, timeout), "is it an MQTT broker on that port, with TLS (mqtts)? check --ca too")
        rc = result["rc"]
        if rc.is_failure:
            raise ToolError("%s refused the connection: %s" % (broker, rc), "check --username/--password-env or the client certificate")
        deadline = time.monotonic() + timeout
        infos = [client.publish(topic, payload, qos=1, retain=False) for topic, payload in targets]
        for (topic, _), info in zip(targets, infos):
            info.wait_for_publish(max(0.1, deadline - time.monotonic()))
            if not info.is_published():
                raise ToolError("the broker did not acknowledge %s in %g s" % (topic, timeout),
                                "is this client allowed to publish there (broker ACL)?")
    finally:
        client.disconnect()
        client.loop_stop()
    return [t for t, _ in targets]


def run(args):
    from ..errors import ToolError

    if not args.channel and not args.device:
        raise ToolError("whom to notify?", "give --channel NAME and/or --device ID")
    for n in args.channel + args.device:
        if not _name_ok(n):
            raise ToolError("%r is not a valid channel or device id" % n, "1..64 printable characters without + # /")
    if args.spread is not None and not 0 <= args.spread <= 3600:
        raise ToolError("--spread must be 0..3600 seconds", "e.g. --spread 60", exit_code=2)
    password = os.environ.get(args.password_env) if args.password_env else None
    if args.password_env and password is None:
        raise ToolError("the environment variable %s is not set" % args.password_env, "export %s=... with the broker password" % args.password_env)
    now = int(time.time())
    targets = []
    for ch in args.channel:
        spread = 30 if args.spread is None else args.spread
        targets.append((args.prefix + "channel/" + ch, json.dumps({"check": True, "spread": spread, "time": now}).encode()))
    for dev in args.device:
        spread = 0 if args.spread is None else args.spread
        targets.append((args.prefix + "device/" + dev, json.dumps({"check": True, "spread": spread, "time": now}).encode()))
    done = publish(args.broker, targets, args.ca, args.cert, args.key, args.username, password, args.timeout,
                   args.insecure_plain_mqtt)
    if args.json:
        print(json.dumps({"ok": True, "topics": done}))
    else:
        for t in done:
            print("notified %s" % t)
        sys.stdout.flush()
    return 0

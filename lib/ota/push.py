# Push notifications (optional, beside polling): the device keeps an MQTT 3.1.1 subscription over
# TLS to its channel topic and its own topic; a message there makes it check NOW, through the
# normal signed path. The message itself is never trusted: it carries no release, no URL, no
# command. Its payload is at most a hint ({"spread": seconds}: start the check at a random moment
# within that window, so a whole channel does not hit the server in the same second), clamped.
#
#   import ota.agent, ota.push
#   a = ota.agent.Agent(self_test=..., connect=...)
#   a.boot()
#   l = ota.push.listener(a, "mqtts://broker.example.com:8883", ca_file="mqtt_ca.der")
#   ota.push.run(a, l)    # a.run() with notifications: checks on the schedule AND when told
#
# Topics: <prefix>channel/<channel> and <prefix>device/<device_id> (prefix "ota/"); `ota-tool
# notify` publishes there. Lock the broker down: devices may only subscribe to ota/#, only the
# operator may publish. Even so, a notification can at worst make devices fetch the manifest
# sooner, and never more often than once per `min_gap` seconds.
#
# The MQTT client is this file's own (CONNECT, SUBSCRIBE at QoS 0, PUBLISH in, PINGREQ): it uses
# the same TLS code as HttpFetcher (ota.compat.net: CA required, server name checked) and bounds
# every read, where a general client would allocate whatever length a broker announces.
# Runs unchanged on MicroPython and CPython.
import json

from .compat import collect, const, sleep_ms, ticks_diff, ticks_ms, urandom
from .compat.net import is_timeout, net_close, net_open, net_readinto, net_send, tls_context, tls_rejected, tls_start
from .errors import OTAError

PREFIX = "ota/"
_MAX_PACKET = const(512)  # a notification and its topic; bigger PUBLISHes are skipped, not stored
_MAX_SKIP = const(16384)  # a PUBLISH longer than this ends the connection
_MAX_SPREAD = const(3600)
_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)


def parse_url(url):
    """mqtts://host[:port] (default port 8883) -> (host, port, tls). mqtt:// (no TLS) -> tls False."""
    i = url.find("://")
    scheme = url[:i] if i > 0 else ""
    if scheme not in ("mqtts", "mqtt"):
        raise OTAError("bad_url", "push broker must be mqtts://host[:port]: %r" % url)
    rest = url[i + 3:]
    k = rest.find("/")
    if k >= 0:
        rest = rest[:k]
    host = rest
    port = 8883 if scheme == "mqtts" else 1883
    if rest.startswith("["):
        k = rest.find("]")
        host = rest[1:k] if k > 0 else ""
        rest = rest[k + 1:] if k > 0 else ""
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        k = rest.find(":")
        port_text = rest[k + 1:] if k >= 0 else ""
        if k >= 0:
            host = rest[:k]
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise OTAError("bad_url", "bad port in %r" % url)
        port = int(port_text)
    if not host or "@" in host:
        raise OTAError("bad_url", "no host (or credentials in the URL) in %r" % url)
    return host, port, scheme == "mqtts"


def _name_ok(s):
    # A topic level of ours: no wildcards or separators (a device id "#" would subscribe to all).
    if not s or len(s) > 64:
        return False
    for c in s.encode():  # bytes: iterating the str would intern a one-character str per character
        if c in b"+#/" or c < 0x21 or c > 0x7E:
            return False
    return True


def topics(channel, device_id, prefix=PREFIX):
    """The two topics a device listens on."""
    if not _name_ok(channel) or not _name_ok(device_id):
        raise OTAError("bad_config", "channel and device id must be 1..64 printable characters without + # /")
    return [prefix + "channel/" + channel, prefix + "device/" + device_id]


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return bytes((len(b) >> 8, len(b) & 0xFF)) + b


def _packet(kind, body):
    n = len(body)
    head = bytearray((kind,))
    while True:
        b = n & 0x7F
        n >>= 7
        head.append(b | 0x80 if n else b)
        if not n:
            return bytes(head) + body


class Client:
    """A small MQTT 3.1.1 subscriber. connect(), subscribe(topics), wait(ms) -> (topic, payload)
    or None, close(). Every failure is OTAError."""

    def __init__(self, host, port=8883, ca=None, client_id="ota", user=None, password=None, keepalive=60,
                 tls=True, cert=None, key=None, timeout=15000, max_packet=_MAX_PACKET, subscriptions=None):
        if tls and ca is None:
            raise OTAError("no_ca", "mqtts needs the broker's CA certificate (DER)")
        self.host = host
        self.port = port
        self.ca = ca
        self.cert = cert
        self.key = key
        self.tls = tls
        self.client_id = client_id
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.timeout = timeout
        self.topics = subscriptions or []  # what run() subscribes to after each (re)connect
        self._buf = bytearray(max_packet)
        self._one = bytearray(1)
        self._conn = None
        self._pid = 0
        self._reset()

    def _reset(self):
        self._kind = -1  # first byte of the packet being read, -1 before it
        self._len = 0
        self._shift = 0
        self._len_done = False
        self._got = 0
        self._last_send = ticks_ms()
        self._ping_sent = None

    @property
    def connected(self):
        return self._conn is not None

    # --- connection

    def connect(self):
        self.close()
        where = "%s:%d" % (self.host, self.port)
        try:
            conn = net_open(self.host, self.port, self.timeout)
        except MemoryError:
            raise
        except Exception as e:
            raise OTAError("timeout" if is_timeout(e) else "connect", "push broker %s: %s" % (where, e))
        self._conn = conn
        self._reset()
        try:
            if self.tls:
                try:
                    tls_start(conn, tls_context(self.ca, self.cert, self.key), self.host)
                except MemoryError:
                    raise
                except Exception as e:
                    if tls_rejected(e):
                        raise OTAError("tls_verify", "certificate of push broker %s rejected: %s" % (where, e))
                    raise OTAError("tls", "TLS with push broker %s failed: %s" % (where, e))
            flags = 0x02  # clean session: nothing to keep, a check happens at every start anyway
            body = b"\x00\x04MQTT\x04"
            payload = _str(self.client_id)
            if self.user is not None:
                flags |= 0x80
                payload += _str(self.user)
                if self.password is not None:
                    flags |= 0x40
                    payload += _str(self.password)
            body += bytes((flags, self.keepalive >> 8, self.keepalive & 0xFF)) + payload
            self._send(_packet(_CONNECT, body))
            kind, n = self._expect(_CONNACK)
            if n != 2 or self._buf[1]:
                code = self._buf[1] if n == 2 else -1
                raise OTAError("push_refused", "push broker %s refused the connection (code %d%s)" % (
                    where, code, ": user name/password" if code in (4, 5) else ""))
        except BaseException:
            self.close()
            raise

    def subscribe(self, topic_list):
        """Subscribe at QoS 0 (a lost notification costs nothing: the schedule still polls)."""
        self._pid = self._pid % 0xFFFF + 1
        body = bytes((self._pid >> 8, self._pid & 0xFF))
        for t in topic_list:
            body += _str(t) + b"\x00"
        self._send(_packet(_SUBSCRIBE, body))
        kind, n = self._expect(_SUBACK)
        if n != 2 + len(topic_list) or (self._buf[0] << 8 | self._buf[1]) != self._pid:
            raise OTAError("push_protocol", "push broker sent a malformed SUBACK")
        for i in range(len(topic_list)):
            if self._buf[2 + i] & 0x80:
                raise OTAError("push_refused", "push broker refused the subscription to %s" % topic_list[i])

    def close(self):
        if self._conn is not None:
            try:
                net_send(self._conn, b"\xe0\x00", 1000)  # DISCONNECT, best effort
            except Exception:
                pass
            net_close(self._conn)
            self._conn = None

    # --- traffic

    def _send(self, data):
        try:
            net_send(self._conn, data, self.timeout)
        except MemoryError:
            raise
        except Exception as e:
            self.close()
            if tls_rejected(e):  # MicroPython: the handshake runs in the first send (compat.net)
                raise OTAError("tls_verify", "certificate of the push broker rejected: %s" % e)
            raise OTAError("push_lost", "push broker connection lost while sending: %s" % e)
        self._last_send = ticks_ms()

    def _expect(self, kind):
        # The reply to CONNECT/SUBSCRIBE within the timeout; notifications before it are dropped
        # (they would only ask for a check, and the caller checks right after connecting).
        start = ticks_ms()
        while True:
            left = self.timeout - ticks_diff(ticks_ms(), start)
            if left <= 0:
                self.close()
                raise OTAError("timeout", "push broker did not answer in %d ms" % self.timeout)
            got = self._read(left)
            if got is None:
                continue
            if got[0] & 0xF0 == kind:
                return got
            if got[0] & 0xF0 != _PUBLISH:
                self.close()
                raise OTAError("push_protocol", "push broker sent packet type %d, expected %d" % (got[0] >> 4, kind >> 4))

    def wait(self, timeout_ms):
        """Wait up to timeout_ms for a notification: (topic bytes, payload bytes or None when it was
        too long to keep) or None. Keeps the connection alive (PINGREQ) meanwhile."""
        if self._conn is None:
            raise OTAError("push_lost", "not connected")
        start = ticks_ms()
        while True:
            now = ticks_ms()
            left = timeout_ms - ticks_diff(now, start)
            if left <= 0:
                return None
            if self.keepalive:
                ka = self.keepalive * 1000
                if self._ping_sent is not None and ticks_diff(now, self._ping_sent) > ka:
                    self.close()
                    raise OTAError("push_lost", "push broker stopped answering (no PINGRESP in %d s)" % self.keepalive)
                due = ka // 2 - ticks_diff(now, self._last_send)
                if due <= 0:
                    if self._ping_sent is None:
                        self._ping_sent = now
                    self._send(b"\xc0\x00")
                    due = ka // 2
                if due < left:
                    left = due
            got = self._read(left)
            if got is None:
                continue
            kind, n = got
            t = kind & 0xF0
            if t == _PINGRESP:
                self._ping_sent = None
            elif t == _PUBLISH:
                msg = self._publish(kind, n)
                if msg is not None:
                    return msg
            # anything else (a stray SUBACK...) is ignored

    def _publish(self, kind, n):
        qos = (kind >> 1) & 3
        if n < 0:  # skipped: too long to keep, still a notification
            return (b"", None) if not kind & 1 else None
        buf = self._buf
        if n < 2:
            raise self._protocol("PUBLISH without a topic")
        tl = buf[0] << 8 | buf[1]
        pos = 2 + tl + (2 if qos else 0)
        if pos > n or qos > 1:
            raise self._protocol("malformed PUBLISH (or QoS 2, never asked for)")
        if qos == 1:
            self._send(b"\x40\x02" + bytes(buf[2 + tl:4 + tl]))  # PUBACK
        if kind & 1:
            return None  # retained: an old message the broker replays at subscribe time, not news
        return bytes(buf[2:2 + tl]), bytes(buf[pos:n])

    def _protocol(self, what):
        self.close()
        return OTAError("push_protocol", "push broker: %s" % what)

    def _read(self, timeout_ms):
        """Read towards one whole packet for at most timeout_ms. -> (first byte, body length) with
        the body in self._buf, (first byte, -1) for a skipped long PUBLISH, or None for no packet yet."""
        conn = self._conn
        if conn is None:
            raise OTAError("push_lost", "not connected")
        start = ticks_ms()
        while True:
            left = timeout_ms - ticks_diff(ticks_ms(), start)
            if left <= 0:
                return None
            if not self._len_done:
                n = self._recv(self._one, 1, left)
                if n is None:
                    continue
                b = self._one[0]
                if self._kind < 0:
                    self._kind = b
                    continue
                self._len |= (b & 0x7F) << self._shift
                self._shift += 7
                if b & 0x80:
                    if self._shift >= 28:
                        raise self._protocol("bad remaining length")
                    continue
                self._len_done = True
                too_long = self._len > len(self._buf)
                if too_long and (self._kind & 0xF0 != _PUBLISH or self._len > _MAX_SKIP):
                    raise self._protocol("a %d-byte packet (type %d): more than this device takes" % (
                        self._len, self._kind >> 4))
            need = self._len - self._got
            if need:
                skipping = self._len > len(self._buf)
                if skipping:
                    n = self._recv(self._buf, need if need < len(self._buf) else len(self._buf), left)
                else:
                    n = self._recv(memoryview(self._buf)[self._got:], need, left)
                if n is None:
                    continue
                self._got += n
                if self._got < self._len:
                    continue
            kind = self._kind
            n = -1 if self._len > len(self._buf) else self._len
            self._kind = -1
            self._len = self._shift = self._got = 0
            self._len_done = False
            return kind, n

    def _recv(self, buf, nbytes, timeout_ms):
        try:
            n = net_readinto(self._conn, buf, nbytes, timeout_ms)
        except MemoryError:
            raise
        except Exception as e:
            self.close()
            if isinstance(e, OTAError):
                raise
            raise OTAError("push_lost", "push broker connection lost: %s" % e)
        if n is None or n < 0:
            return None  # nothing yet (or part of a TLS record)
        if n == 0:
            self.close()
            raise OTAError("push_lost", "push broker closed the connection")
        return n


def _printable(b):
    # A broker-given topic for the audit log: printable ASCII only (decode() may raise on MicroPython).
    for c in b:
        if c < 32 or c > 126:
            return "?"
    return b.decode() if b else "?"


def spread_ms(payload, default_s=0, max_s=_MAX_SPREAD):
    """The random delay (ms) before a notified check: {"spread": s} in the payload (clamped to
    max_s), else default_s. Anything else in the payload is ignored."""
    spread = default_s
    if payload and payload[:1] == b"{":
        try:
            v = json.loads(payload).get("spread")
            if isinstance(v, int) and not isinstance(v, bool):
                spread = v
        except (ValueError, AttributeError, TypeError):
            pass
    if spread <= 0:
        return 0
    if spread > max_s:
        spread = max_s
    r = urandom(4)
    return ((r[0] | r[1] << 8 | r[2] << 16 | (r[3] & 0x3F) << 24) % (spread * 1000))


def listener(agent, url, ca=None, ca_file=None, prefix=PREFIX, **kw):
    """A Client for `agent`'s device: its topics and client id from the agent's settings; the CA
    from `ca` (DER bytes), `ca_file`, or the update server's CA file (ota.json "ca")."""
    import binascii

    import machine

    from .compat import fs

    cfg = agent.cfg
    device_id = cfg["device_id"] or binascii.hexlify(machine.unique_id()).decode()
    host, port, tls = parse_url(url)
    if tls and ca is None:
        name = ca_file or cfg["ca"]
        try:
            with fs.open(name, "rb") as f:
                ca = f.read(8192)
        except OSError:
            raise OTAError("bad_config", "cannot read the push broker CA %s" % name)
    return Client(host, port, ca, client_id="ota-" + device_id, tls=tls,
                  subscriptions=topics(cfg["channel"], device_id, prefix), **kw)


def run(agent, client, max_checks=None, min_gap=30, default_spread=0, reconnect=5, reconnect_max=600):
    """agent.run() with push: check, then wait for the next scheduled check OR a notification
    (after at least `min_gap` seconds since the last check, plus the notification's spread), or
    agent.wake(). The subscription is (re)made as needed, with backoff; while it is down the
    schedule alone drives the checks. Returns the last event when max_checks is reached."""
    from .schedule import Timer, next_delay

    if not client.tls:
        print("ota: WARNING: push notifications over plain mqtt://: anyone on the path can trigger checks")
    n = 0
    retry = Timer(0)
    backoff = reconnect
    told = None
    while max_checks is None or n < max_checks:
        n += 1
        agent.wake_pending = False
        if told is not None:
            agent.log("notified", message=told[:64])  # one audit line per check it caused, not per message
            told = None
        # One TLS session at a time: the broker's goes before the check opens the update server's
        # (two mbedTLS sessions do not fit next to a download in an ESP32's heap). Notifications
        # that come meanwhile would only ask for the check that is running.
        client.close()
        collect()
        event = agent.check_now()
        retry = Timer(0)
        if max_checks is not None and n >= max_checks:
            return event
        t = Timer(next_delay(agent.cfg, agent.failures if event == "failed" else 0, agent.retry_after))
        gap = Timer(int(min_gap * 1000))
        while t.remaining() and not agent.wake_pending:
            if not client.connected and not retry.remaining():
                try:
                    client.connect()
                    client.subscribe(client.topics)
                    backoff = reconnect
                except OTAError as e:
                    print("ota: push notifications unavailable: %s" % e)
                    retry = Timer(backoff * 1000)
                    backoff = min(backoff * 2, reconnect_max)
            if not client.connected:
                sleep_ms(min(t.chunk(), retry.remaining() or 1000, 1000))
                continue
            try:
                msg = client.wait(min(t.chunk(), 1000))
            except OTAError as e:
                print("ota: push connection lost: %s" % e)
                retry = Timer(reconnect * 1000)
                continue
            if msg is not None:
                if told is None:
                    told = _printable(msg[0])
                wait = spread_ms(msg[1], default_spread)
                g = gap.remaining()
                t = Timer(min(t.remaining(), wait if wait > g else g))
    return None

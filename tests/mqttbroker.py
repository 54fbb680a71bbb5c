"""A real Mosquitto broker for tests (Debian package `mosquitto`; CI installs it): TLS listener on a
free loopback port, certificates from ota_tool.server.ensure_tls (a test CA), anonymous clients."""
import getpass
import os
import shutil
import socket
import subprocess
import time

from ota_tool import server


def mosquitto_binary():
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.path.exists(p)), None)


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Broker:
    def __init__(self, workdir):
        binary = mosquitto_binary()
        if binary is None:
            raise RuntimeError("mosquitto is not installed: apt-get install -y mosquitto (CI's .ci/run does)")
        os.makedirs(workdir, exist_ok=True)
        self.tls = server.ensure_tls(os.path.join(workdir, "tls"))
        self.ca_der = self.tls.ca_der
        self.ca_pem = self.tls.ca_pem
        self.log_path = os.path.join(workdir, "mosquitto.log")
        for attempt in range(5):
            self.port = _free_port()
            conf = os.path.join(workdir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write("\n".join([
                    "user %s" % getpass.getuser(),  # as root it would switch to `mosquitto`, which cannot read the keys
                    "persistence false",
                    "log_dest stderr",
                    "log_type error",
                    "log_type warning",
                    "log_type notice",
                    "log_type subscribe",
                    "connection_messages true",
                    "listener %d 127.0.0.1" % self.port,
                    "allow_anonymous true",
                    "cafile %s" % self.tls.ca_pem,
                    "certfile %s" % self.tls.server_pem,
                    "keyfile %s" % self.tls.server_key,
                    "",
                ]))
            self._log = open(self.log_path, "ab")
            self.proc = subprocess.Popen([binary, "-c", conf], stdout=self._log, stderr=subprocess.STDOUT)
            if self._wait_up():
                break
            self.stop()
        else:
            raise RuntimeError("mosquitto did not start: %s" % self.log())
        self.url = "mqtts://127.0.0.1:%d" % self.port

    def _wait_up(self, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                return False  # exited (the port was taken meanwhile?)
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        return False

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def subscriptions(self):
        """How many SUBSCRIBE requests the broker logged so far."""
        return self.log().count(" ota/")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

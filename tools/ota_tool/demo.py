"""The main job, end to end on a simulated ESP32, over HTTPS with signed releases:

  a new board running v1.0.0 -> signed release v2.0.0 (a 1.5 MB image, shipped as a delta patch)
  -> the device downloads, verifies and installs it -> reboot -> self-test -> confirmed
  -> release v3.0.0, whose self-test fails -> installed -> reboot -> automatic rollback to v2.0.0
  -> a tampered artifact on the server -> refused, nothing changes.
"""
import json
import os
import shutil
import time

from . import devfs, flashinfo, images, keys, release, reports, server, sim
from .errors import ToolError

# What the board runs at every power-on (the project's main.py does the same): the agent confirms
# or rolls back the running image (self-test: the firmware's own checks, Wi-Fi, and the update
# server answering with a manifest that verifies), then checks for an update once.
DEVICE_MAIN = '''
import gc
gc.collect()  # as main.py: the garbage of compiling this file goes before the library loads
import ota, simhw
from ota import agent, audit, slot


def wifi():
    import network
    w = network.WLAN(network.STA_IF)
    w.active(True)
    w.connect("demo", "secret")
    return w.isconnected()


print("running", slot.label(slot.running()), "(on probation)" if ota.pending_verify() else "")
a = agent.Agent(self_test=simhw.healthy, connect=wifi)
print("boot:", a.boot())
st = ota.status()
print("signed release %s, anti-rollback counter %d" % (st["version"], st["security_counter"]))
event = a.check_now(reboot=False)
last = audit.read("ota.log", 1)[-1]
print("update check:", event, last.get("reason") or last.get("message") or "")
if event == "installed":
    import machine
    machine.reset()
'''


class Demo:
    def __init__(self, workdir, interpreter="cpython", heap="64k", size=1500 * 1024, quiet=False):
        self.workdir = os.path.abspath(workdir)
        self.interpreter = interpreter
        self.heap = heap
        self.size = size
        self.quiet = quiet
        self.step_no = 0

    def say(self, text=""):
        if not self.quiet:
            print(text)

    def step(self, text):
        self.step_no += 1
        self.say("\n[%d] %s" % (self.step_no, text))

    def image(self, version, seed, base=None, **flags):
        data = images.app_image(version, size=self.size, seed=seed, flags=flags or None, base=base,
                                changes=40 if base else 0)
        path = os.path.join(self.workdir, "app-%s.bin" % version)
        with open(path, "wb") as f:
            f.write(data)
        return data

    def publish(self, data, version, security_version=0, bases=()):
        info = release.build(data, version, [self.key], self.repo, security_version=security_version,
                             compress=True, bases=bases)
        for a in info["artifacts"]:
            self.say("    %-6s %-30s %9d bytes" % (a["encoding"], a["url"], a["size"]))
        self.say("    signed manifest %s (%d bytes, key %s)" % (os.path.basename(info["manifest"]),
                                                             info["manifest_bytes"], keys.key_id(self.key)))
        return info

    def device(self, code, expect, check=None):
        """One power cycle running `code`; it must end as `expect` (sim.RESET/RETURNED) and, with
        `check` ("event" or "event reason", or a tuple of them), its update check must end so too."""
        out = self.dev.run_code(code, self.interpreter, self.heap)
        for m in out.boot_log:
            self.say("    bootloader: " + m)
        for line in out.stdout.strip().splitlines():
            self.say("    device: " + line)
        if out.kind != expect:
            raise ToolError("the device run ended with %s, expected %s:\n%s%s" % (out.kind, expect, out.stdout, out.stderr),
                            _DEMO_HINT)
        if check is not None:
            got = [ln[len("update check:"):].strip() for ln in out.stdout.splitlines() if ln.startswith("update check:")]
            checks = (check,) if isinstance(check, str) else check
            if not got or not any((got[-1] + " ").startswith(c + " ") for c in checks):
                raise ToolError("the update check ended %r, expected %r:\n%s%s" % (
                    got[-1] if got else None, check, out.stdout, out.stderr), _DEMO_HINT)
        return out

    def run(self, json_out=False):
        t0 = time.time()
        self.say("ota-tool demo: signed OTA updates of a simulated ESP32 over HTTPS (device code under %s%s)" % (
            self.interpreter, ", heap " + self.heap if self.interpreter == "micropython" else ""))
        self.say("workdir: %s" % self.workdir)
        for sub in ("repo", "tls"):
            shutil.rmtree(os.path.join(self.workdir, sub), ignore_errors=True)
        if os.path.exists(os.path.join(self.workdir, "reports.sqlite")):
            os.remove(os.path.join(self.workdir, "reports.sqlite"))
        self.repo = os.path.join(self.workdir, "repo")

        self.step("Create a release signing key")
        keyfile = os.path.join(self.workdir, "release-key.pem")
        self.key = keys.load_private(keyfile) if os.path.exists(keyfile) else keys.generate(keyfile)
        pub = keys.public_text(self.key)
        self.say("    %s (key id %s); the device trusts its public key %s" % (keyfile, keys.key_id(self.key), pub))

        self.step("Start the HTTPS update server on the release repository")
        srv = server.start_server(_mkdir(self.repo), tls_dir=os.path.join(self.workdir, "tls"),
                                  reports=os.path.join(self.workdir, "reports.sqlite"))
        try:
            url = srv.url.rstrip("/") + "/stable.json"
            self.say("    %s  (TLS with its own CA; device reports go to %sreport)" % (url, srv.url))

            self.step("Flash a new board by cable with v1.0.0 and its settings (ota.json, CA, trusted key); no release is published yet")
            v1 = self.image("1.0.0", seed=1)
            self.dev = sim.create(os.path.join(self.workdir, "device.bin"), v1)
            settings = {"source": url, "keys": {"release": pub}, "report_url": srv.url + "report",
                        "device_id": "demo-board-1"}
            devfs.put(self.dev.path, "ota.json", json.dumps(settings).encode())
            devfs.put(self.dev.path, "ota_ca.der", srv.ca_der)
            self.say("    %s: a 4 MiB flash image; ota.json and ota_ca.der in its littlefs" % self.dev.path)
            self.device(DEVICE_MAIN, sim.RETURNED, "failed http_404")

            self.step("Release v2.0.0: full image, zlib, and a delta patch from v1.0.0")
            v2 = self.image("2.0.0", seed=1, base=v1)
            self.publish(v2, "2.0.0", bases=[v1])
            self.device(DEVICE_MAIN, sim.RESET, ("installed delta", "installed rdelta"))  # rdelta: relocation-aware

            self.step("Reboot into v2.0.0: on probation until its self-test passes")
            self.device(DEVICE_MAIN, sim.RETURNED, "up_to_date")

            self.step("Release v3.0.0 (security version 1), a firmware whose self-test fails")
            v3 = self.image("3.0.0", seed=3, selftest_fails=True)
            self.publish(v3, "3.0.0", security_version=1)
            self.device(DEVICE_MAIN, sim.RESET, "installed")

            self.step("Reboot into v3.0.0: the self-test fails and the device rolls back by itself")
            self.device(DEVICE_MAIN, sim.RESET)

            self.step("Release v4.0.0, then an attacker on the server swaps its artifacts for v3.0.0's")
            v4 = self.image("4.0.0", seed=4)
            info = self.publish(v4, "4.0.0")
            old = release.zlib_artifact(v3, 12)
            for a in info["artifacts"]:
                with open(os.path.join(self.repo, a["url"]), "wb") as f:
                    f.write(old)  # a real, valid artifact, just not the signed one
            self.device(DEVICE_MAIN, sim.RETURNED, "refused")

            self.step("What the fleet reported (ota-tool fleet)")
            for line in reports.format_table(reports.summary_from_path(os.path.join(self.workdir, "reports.sqlite"))).splitlines():
                self.say("    " + line)
        finally:
            srv.stop()

        info = flashinfo.inspect(self.dev.path)
        running = info["boot"]["partition"]
        app = next(a for a in info["apps"] if a["label"] == running)
        version = (app.get("app") or {}).get("version")
        ok = version == "2.0.0"
        self.say("\nResult: %s runs v%s, confirmed; v3.0.0 was rolled back, the swapped v4.0.0 refused (%.1f s)." % (
            running, version, time.time() - t0))
        self.say("Inspect the board: ota-tool inspect %s\n" % self.dev.path)
        if json_out:
            print(json.dumps({"ok": ok, "running": running, "version": version, "boots": self.dev.boots}, indent=2))
        else:
            self.say(flashinfo.format_text(info))
        return 0 if ok else 1


_DEMO_HINT = ("the device's output is above; under MicroPython, out_of_memory means --heap is too small for "
              "this 64-bit port (see README \"Heap\"); otherwise please report it with the workdir")


def _mkdir(path):
    os.makedirs(path, exist_ok=True)
    return path

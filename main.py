# The device's entry point: the update agent confirms (or rolls back) the running firmware and app,
# then the application runs next to the update schedule. The application lives in the app tree
# that signed app bundles install (`ota-tool release-app`), module app.py (optional):
#   app.connect()    bring the network up, truthy when connected (default: Wi-Fi from wifi.json)
#   app.self_test()  truthy when the firmware and app work (sensors answer...)
#   app.main(agent)  your main loop; call agent.check_now() when it suits, or agent.run()
import gc
import sys

# This file was compiled from source a moment ago: its garbage goes before the agent's modules load
# between it (a fragmented heap fails the TLS context's one 3 KB block long before it is full).
gc.collect()

import ota.agent  # noqa: E402

APP_ROOT = "app"  # the tree app bundles install into (their "root")
_app = []


def load_app():
    # Imported only once the agent has finished or undone an interrupted app switch (boot()).
    if not _app:
        if APP_ROOT not in sys.path:
            sys.path.insert(0, APP_ROOT)
        try:
            import app
        except ImportError:
            app = None
        _app.append(app)
    return _app[0]


def wifi_connect(timeout_ms=20000):
    import json
    import time

    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    if not wlan.isconnected():
        try:
            with open("wifi.json") as f:
                creds = json.load(f)
        except OSError:
            return False
        wlan.connect(creds["ssid"], creds["password"])
        t0 = time.ticks_ms()
        while not wlan.isconnected() and time.ticks_diff(time.ticks_ms(), t0) < timeout_ms:
            time.sleep_ms(100)
    return wlan.isconnected()


def connect():
    app = load_app()
    return getattr(app, "connect", wifi_connect)()


def self_test():
    app = load_app()
    return app.self_test() if hasattr(app, "self_test") else True


agent = ota.agent.Agent(self_test=self_test, connect=connect)
agent.boot()
if agent.app_state in ("unsupported", "error"):
    # The app tree does not fit this firmware (or could not be repaired): keep the board
    # reachable and wait for an update instead of running it.
    print("ota: application not started (%s); waiting for an update" % agent.app_state)
    agent.run()
else:
    app = load_app()
    if hasattr(app, "main"):
        app.main(agent)
    else:
        agent.run()

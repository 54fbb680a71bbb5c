# The device's entry point: confirm (or roll back) the running image, then run the application
# and the update agent. Your application lives in app.py (optional):
#   app.connect()    bring the network up, truthy when connected (default: Wi-Fi from wifi.json)
#   app.self_test()  truthy when the firmware works (sensors answer...)
#   app.main(agent)  your main loop; call agent.check_now() when it suits, or agent.run()
import ota.agent


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


try:
    import app
except ImportError:
    app = None

agent = ota.agent.Agent(self_test=getattr(app, "self_test", None), connect=getattr(app, "connect", wifi_connect))
agent.boot()
if app is not None and hasattr(app, "main"):
    app.main(agent)
else:
    agent.run()

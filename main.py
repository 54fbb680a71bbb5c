# The device's entry point: the update agent confirms (or rolls back) the running firmware and app,
# then the application runs next to the update schedule. The application lives in the app tree
# that signed app bundles install (`ota-tool release-app`), module app.py (optional):
#   app.connect()    bring the network up, truthy when connected (default: Wi-Fi from wifi.json,
#                    which `ota-tool deploy --wifi SSID` writes; see ota/wifi.py)
#   app.self_test()  truthy when the firmware and app work (sensors answer...)
#   app.main(agent)  your main loop; call agent.check_now() when it suits, or agent.run()
# Until the running image has confirmed itself, nothing may leave the board stuck: an exception
# resets it (the bootloader rolls a pending image back) and the watchdog armed at boot
# (ota/probation.py) catches a hang.
import gc
import sys

# This file was compiled from source a moment ago: its garbage goes before the agent's modules load
# between it (a fragmented heap fails the TLS context's one 3 KB block long before it is full).
gc.collect()

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


def connect():
    app = load_app()
    if hasattr(app, "connect"):
        return app.connect()
    import ota.wifi

    return ota.wifi.connect()


def network_saved():
    # Before an install: will connect() bring the network up after the reset? An app that joins
    # the network its own way answers for itself.
    if not hasattr(load_app(), "connect"):
        import ota.wifi

        ota.wifi.saved()


def self_test():
    app = load_app()
    return app.self_test() if hasattr(app, "self_test") else True


def run_app(agent):
    if agent.app_state in ("unsupported", "error"):
        # The app tree does not fit this firmware (or could not be repaired): keep the board
        # reachable and wait for an update instead of running it.
        print("ota: application not started (%s); waiting for an update" % agent.app_state)
        agent.run()
        return
    app = load_app()
    if hasattr(app, "main"):
        try:
            app.main(agent)
            return
        except Exception as e:
            # The image is confirmed, so this is the app's failure: keep the board updatable so the
            # fix can arrive, instead of stopping at the REPL as a board does.
            sys.print_exception(e)
            print("ota: the application stopped; the update agent keeps running")
            agent.report("failed", reason="app_crashed", message=repr(e)[:200])
    agent.run()


def guard(e):
    # An exception out of the boot sequence. Before the image confirmed itself, a board would stop
    # at the REPL with the image neither confirmed nor rolled back: reset instead.
    try:
        from ota import probation
    except ImportError:
        if "ota" not in sys.modules:
            return  # no library on this board: nothing to confirm or roll back
        probation = None  # a library that does not load cannot confirm the image
    try:
        pending = probation is None or probation.on_probation()
    except Exception:
        pending = True  # nothing can tell: a reset is the way back to a working image
    if pending:
        sys.print_exception(e)
        print("ota: %r before the image confirmed itself: resetting (the bootloader rolls it back)" % (e,))
        import machine

        machine.reset()


try:
    from ota import probation

    probation.start()  # again after boot.py (which may not be ours): restarts the countdown
    import ota.agent

    agent = ota.agent.Agent(self_test=self_test, connect=connect, network_saved=network_saved)
    verdict = agent.boot()
    print("ota: boot:", verdict)
except Exception as e:
    guard(e)
    raise
if verdict != "unconfirmed":
    probation.end()  # judged: the watchdog's work is done
# else: not judged (no clock for the server check), still on probation: the watchdog stays, and
# its reset brings the next boot's judgement if nothing else does first
run_app(agent)

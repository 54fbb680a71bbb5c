# The device side of the state machine (tests/campaign/stateful.py): what the simulated board runs
# in one power cycle. This file runs unchanged under CPython (in the simulator's process) and under
# the MicroPython unix port (simrun imports it), so one sequence can be replayed on both.
#
# What the cycle did is appended to RECORD as small dicts (and printed as "STATEM <json>" lines
# under MicroPython, where the host reads stdout): the host judges the board from them and from
# its flash, read from outside.
#   {"t": "boot", "result": ...}                      Agent.boot() returned
#   {"t": "check", "event": ..., "reasons": [...]}    one Agent.check_now() returned (reasons: each
#                                                     refusal, in order: the firmware's first)
#   {"t": "refused", "reason": ...}                  a check's refusal (the firmware's comes first)
#   {"t": "installed", "version": ...}                reported just before the reset into it
#   {"t": "keys", "reason": ...}                      a key list was refused (reported, ignored)
#   {"t": "sleep", "ms": ...}                         the agent's chosen sleep before the next check
#   {"t": "nap", "ms": ...}                           a sleep inside boot() or a check
#   {"t": "rollback", "reason": ...}                  ota.rollback() refused (it resets otherwise)
#   {"t": "status", ...}                              ota.status() at the end of the cycle
import json
import sys

RECORD = []
_MP = sys.implementation.name == "micropython"


def emit(kind, **fields):
    fields["t"] = kind
    RECORD.append(fields)
    if _MP:
        print("STATEM " + json.dumps(fields))


class _Slept(Exception):
    pass


class _Timer:
    # Stands for ota.schedule.Timer in Agent.run(): records the delay the agent chose, then ends
    # the loop (the host judges the delay; sleeping it is not needed).
    def __init__(self, delay_ms):
        emit("sleep", ms=delay_ms)
        raise _Slept()


def _nap(ms):
    emit("nap", ms=ms)


def connect():
    import network

    wlan = network.WLAN(network.STA_IF)
    wlan.active(True)
    wlan.connect("lab", "secret")
    return wlan.isconnected()


def _agent(selftest_ok):
    import simhw
    from ota import agent

    class Board(agent.Agent):
        def check_now(self, reboot=True, **overrides):
            self.refusals = []
            event = agent.Agent.check_now(self, reboot, **overrides)
            emit("check", event=event, reasons=self.refusals)
            return event

        def _refused(self, e, target=None):
            emit("refused", reason=e.reason)
            self.refusals.append(e.reason)
            return agent.Agent._refused(self, e, target)

        def report(self, event, **fields):
            if event == "installed":
                emit("installed", version=fields.get("target_version"), app=fields.get("app_version"))
            elif event == "refused" and str(fields.get("message", "")).startswith("key list"):
                emit("keys", reason=fields.get("reason"))
            return agent.Agent.report(self, event, **fields)

    return Board(self_test=lambda: selftest_ok and simhw.healthy(), connect=connect)


def _status():
    import ota

    st = ota.status()
    rel = st.get("release") or {}
    emit("status", version=st.get("version"), release_sha=rel.get("image_sha256"), running=st.get("running"),
         counter=st.get("security_counter"))


def main(selftest_ok=True):
    """main.py: confirm (or roll back) the image, then the agent's loop until its first sleep."""
    a = _agent(selftest_ok)
    emit("boot", result=a.boot())
    _status()  # what the board says runs, before a check changes anything
    try:
        a.run()
    except _Slept:
        pass
    a = None
    _status()


def rollback():
    """The application asks for ota.rollback() once main.py's boot() is done."""
    a = _agent(True)
    emit("boot", result=a.boot())
    a = None
    import ota
    from ota.errors import OTAError

    try:
        ota.rollback("requested by the application")
    except OTAError as e:
        emit("rollback", reason=e.reason)
    _status()


def idle():
    """A power cycle in which nothing runs (a brownout before main.py)."""
    return None


CYCLES = {"main": main, "rollback": rollback, "idle": idle}


def run(cycle, *args):
    """One power cycle's app. The agent's sleeps are recorded instead of slept (module attributes,
    put back afterwards: under CPython the library's modules are the host's)."""
    del RECORD[:]
    if cycle == "idle":
        return
    from ota import agent, schedule

    saved = schedule.Timer, agent.sleep_ms
    schedule.Timer, agent.sleep_ms = _Timer, _nap
    try:
        CYCLES[cycle](*args)
    finally:
        schedule.Timer, agent.sleep_ms = saved

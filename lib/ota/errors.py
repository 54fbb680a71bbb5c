# The one exception type of the library. `reason` is a short stable code for programs, logs and
# status reports; the message says what happened and, where it helps, what to do about it.


class OTAError(Exception):
    retry_after = None  # type: int | None  # seconds, when a server said when to come back (HTTP 429/503)
    written = 0  # bytes of the image already in the slot when an install stopped
    target_version = None  # type: str | None  # the release a policy refusal is about (status reports)

    def __init__(self, reason, message=""):
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self):
        return "%s: %s" % (self.reason, self.message) if self.message else self.reason

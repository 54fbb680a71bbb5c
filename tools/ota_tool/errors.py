class ToolError(Exception):
    """An error the user can act on: `message` says what failed, `hint` what to do."""

    def __init__(self, message, hint=None, exit_code=1):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.exit_code = exit_code

"""User-facing errors.

A ``UserError`` carries one line that says what was wrong and what to do. The CLI prints it as
``error: <message>`` and exits non-zero without a traceback; library callers can catch it like any exception.
"""


class UserError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))

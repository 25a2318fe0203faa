"""The one exception type users see: the CLI prints its message on one line and exits with status 2."""


class FastDistillError(Exception):
    """A user-facing error; the message says what went wrong and what to do."""

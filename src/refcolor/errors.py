"""User-facing errors: one line, no traceback (the CLI prints ``str(err)``)."""


class RefcolorError(Exception):
    """An error caused by the user's input or environment, shown as one line."""

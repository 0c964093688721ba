"""The demo's errors: reported as one message, never a traceback (``exit_code`` for the shell)."""


class DemoError(Exception):
    """An error the demo reports as a message, never a traceback (``exit_code`` for the shell)."""
    exit_code = 1


class MissingData(DemoError):
    """A file the demo needs is not there (e.g. the calibration photos: `mobile-engine zoo fetch`)."""

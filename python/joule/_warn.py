"""Warnings on stderr, the contract's channel for "this was ignored".

The stream is looked up at each call (not bound at import), so a test can
capture it with contextlib.redirect_stderr. Thread-safe as far as
sys.stderr.write is.
"""

import sys


def warn(message: str) -> None:
    """Writes "warning: <message>" as one line on stderr."""
    stream = sys.stderr
    try:
        stream.write(f"warning: {message}\n")
        stream.flush()
    except (OSError, ValueError):
        # A closed or broken stderr must not turn a warning into a crash.
        pass

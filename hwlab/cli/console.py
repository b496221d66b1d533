"""Where the CLI prints."""

from __future__ import annotations

import os
import sys

from rich.console import Console


def stderr_console() -> Console:
    """A console on a duplicate of fd 2, so progress bars stay visible while an exporter
    captures fd 2 for its native log lines (see hwlab.export.writers)."""
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr is not a file (captured in tests)
        return Console(stderr=True)
    return Console(file=os.fdopen(os.dup(fd), "w", buffering=1))

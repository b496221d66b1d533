"""The runner stops itself when the host is gone.

A host killed outright (SIGKILL, a crash) cannot stop what it started. The runner's
parent is then gone too (the host's process, or the SSH session's), and the runner,
reparented, would go on measuring for nobody. This watchdog notices the change of
parent within ``interval`` seconds and sends the runner SIGTERM, which restores a
changed governor on the way out (see signals.py) like any other termination.
"""

from __future__ import annotations

import os
import signal
import sys
import threading


def watch_parent(interval: float = 0.5) -> threading.Thread | None:
    """Start the watchdog (a daemon thread); None where the OS has no parent ids to watch."""
    if not hasattr(os, "getppid") or not hasattr(signal, "SIGTERM"):
        return None
    parent = os.getppid()

    def watch() -> None:
        stop = threading.Event()
        while not stop.wait(interval):
            if os.getppid() != parent:
                print(f"hwlab_runner: the host is gone (parent {parent} exited): stopping", file=sys.stderr)
                os.kill(os.getpid(), signal.SIGTERM)
                return

    thread = threading.Thread(target=watch, name="hwlab-runner-watchdog", daemon=True)
    thread.start()
    return thread

"""The runner stops itself when the host is gone.

A host killed outright (SIGKILL, a crash) cannot stop what it started. Two things
tell the runner: its parent is gone (the host's process, or the SSH session's shell,
so the runner was reparented), or nobody reads its results any more (the read end of
its stdout pipe closed, or the terminal that carried it hung up). Either way it would
go on measuring for nobody until its next result line failed, minutes later for a long
model. This watchdog checks both every ``interval`` seconds and sends the runner
SIGTERM, which restores a changed governor on the way out (see signals.py) like any
other termination.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading


def _reader_gone(fd: int) -> bool:
    """Whether the results descriptor reports an error or a hang-up: its reader is gone (POLLERR for a pipe
    whose read end closed, POLLHUP for a socket or terminal). Never blocks."""
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, 0)  # errors and hang-ups are always reported
    try:
        events = poller.poll(0)
    except OSError:
        return False
    return any(mask & (select.POLLERR | select.POLLHUP | select.POLLNVAL) for _, mask in events)


def _identity(fd: int | None) -> tuple[int, int, int] | None:
    """(fd, device, inode) of an open descriptor; None when closed. The results descriptor is watched only
    while it is still the same file: once the runner closes it, its number may be reused by a library (a
    socket that reports a hang-up of its own), which must not stop the runner."""
    if fd is None:
        return None
    try:
        info = os.fstat(fd)
    except OSError:
        return None
    return fd, info.st_dev, info.st_ino


def watch_host(results_fd: int | None = None, interval: float = 0.5) -> threading.Thread | None:
    """Start the watchdog (a daemon thread); None where the OS has no parent ids to watch."""
    if not hasattr(os, "getppid") or not hasattr(signal, "SIGTERM"):
        return None
    parent = os.getppid()
    results = _identity(results_fd)

    def watch() -> None:
        if hasattr(signal, "pthread_sigmask"):  # the kernel gives SIGTERM/SIGHUP to a thread that handles them
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, getattr(signal, "SIGHUP", signal.SIGTERM)})
        stop = threading.Event()
        while not stop.wait(interval):
            if os.getppid() != parent:
                why = f"parent {parent} exited"
            elif results is not None and _identity(results_fd) == results and _reader_gone(results[0]):
                why = "nobody reads the results any more"
            else:
                continue
            print(f"hwlab_runner: the host is gone ({why}): stopping", file=sys.stderr)
            os.kill(os.getpid(), signal.SIGTERM)
            return

    thread = threading.Thread(target=watch, name="hwlab-runner-watchdog", daemon=True)
    thread.start()
    return thread

"""One lock per device on the host, so two profiles never share a device.

An ``flock`` on ``<cache>/locks/<device>.lock``: the kernel releases it when the
holder dies, so a killed profile never leaves a stale lock behind. The file
records who holds it, for the message the second profile prints.
"""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hwlab.cache import cache_dir
from hwlab.errors import DeviceBusy, InvalidRequest
from hwlab.names import name_problem

POLL_S = 0.2


def lock_dir() -> Path:
    return cache_dir() / "locks"


@contextmanager
def device_lock(device: str, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the device's lock; wait for it at most ``wait_s`` seconds, then refuse."""
    problem = name_problem(device)
    if problem:
        raise InvalidRequest(f"device {problem}", hint="use a device name from the inventory")
    folder = lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{device}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = path.read_text().strip() or "another process"
                    raise DeviceBusy(
                        f"device {device!r} is in use by {holder}",
                        hint="wait for it to finish, or pass --lock-wait SECONDS to queue behind it",
                    ) from None
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} ({' '.join(sys.argv[:3])})\n".encode())
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock

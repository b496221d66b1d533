"""Turning termination signals into exceptions, so ``finally`` blocks restore the device.

SIGINT already raises KeyboardInterrupt. SIGTERM (a host killing the job) and
SIGHUP (an SSH session that dropped) would end the process on the spot and
leave a changed governor behind; inside :func:`exit_on_signals` they raise
``SystemExit(128 + signal)`` instead, the exit status a shell reports for them.
A signal the caller chose to ignore (``nohup``) stays ignored.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Any, Iterator

NAMES = ("SIGTERM", "SIGHUP")


def _raise(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_signals(enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise SystemExit; handlers are put back on the way out."""
    previous = {}
    if enabled and threading.current_thread() is threading.main_thread():
        for name in NAMES:
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) == signal.SIG_DFL:
                previous[number] = signal.signal(number, _raise)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)

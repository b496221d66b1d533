"""Turning termination signals into exceptions, so ``finally`` blocks restore the device.

SIGINT already raises KeyboardInterrupt. SIGTERM (a host killing the job) and
SIGHUP (an SSH session that dropped) would end the process on the spot and
leave a changed governor behind; inside :func:`exit_on_signals` they raise
``SystemExit(128 + signal)`` instead, the exit status a shell reports for them.
A signal the caller chose to ignore (``nohup``) stays ignored.

The handler also records the signal, and the measuring loops call
:func:`stop_if_signalled` after every block: a SystemExit that some library
swallowed (an exception raised inside a finaliser is only printed) still ends
the job within one block instead of at the end of a long model.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

NAMES = ("SIGTERM", "SIGHUP")


_received: list[int] = []  # signals the handler saw, in order


def _raise(signum: int, frame: Any) -> None:
    _received.append(signum)
    # os.write, not print: the handler may run while the main thread is inside a print to stderr.
    os.write(2, f"hwlab_runner: {signal.Signals(signum).name} received: stopping\n".encode())
    raise SystemExit(128 + signum)


def stop_if_signalled() -> None:
    """Raise SystemExit again for a signal already handled, in case its first SystemExit was swallowed."""
    if _received:
        raise SystemExit(128 + _received[0])


@contextlib.contextmanager
def exit_on_signals(enabled: bool = True) -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise SystemExit; handlers are put back on the way out."""
    previous = {}
    _received.clear()
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
        _received.clear()  # once outside, a signal seen inside has been dealt with

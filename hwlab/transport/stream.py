"""The stdout lines of a running command, as they arrive: one class for every transport.

Two reader threads pump the command's stdout (line by line) and stderr; the
caller's thread waits at most ``line_timeout`` seconds for each line (and for the
command to exit once its stdout ends), the whole command at most ``deadline_s``,
asks the transport about its link in between, and kills the command when any of
these fails. Once the command has exited, the stderr reader is joined before the
result is built, so the last lines of an error are in it (unless something the
command left running keeps stderr open for ``JOIN_S`` more seconds).

Transports differ only in how a command starts and what its raw lines mean, so a
transport overrides the hooks (``_line``, ``_check``, ``_exited``, ``_finish``,
``_kill``) and nothing else: a subprocess's pipes (local, adb) and an SSH
channel's files alike.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from typing import IO

from hwlab.errors import CommandTimeout, TransportError
from hwlab.transport.base import Completed

POLL_S = 0.2  # how often a silent command's link is checked
JOIN_S = 10.0  # how long stderr may stay open once the command has exited (a child it left running)
SILENCE_HINT = "raise the stop rule's max time or check the device"


GRACE_S = 3.0  # a stopped command's time to clean up (the runner restores a governor) before SIGKILL


def kill_process_group(proc: subprocess.Popen, grace: float = GRACE_S) -> None:  # type: ignore[type-arg]
    """Stop a command started in its own session and everything it started, then reap it: SIGTERM first
    (the runner restores what it changed on the device), SIGKILL for what is left after ``grace`` seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def close_pipes(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
    """Close a finished command's pipes (their readers are done)."""
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _pump(pipe: IO[bytes], out: queue.Queue[bytes | None] | list[bytes], heard: list[float]) -> None:
    """Copy ``pipe`` into ``out`` a line at a time (a ``None`` last, for a queue), noting when each came."""
    try:
        for line in pipe:
            heard[0] = time.monotonic()
            if isinstance(out, list):
                out.append(line)
            else:
                out.put(line)
    except (OSError, ValueError, EOFError):  # the pipe or channel was closed under the reader: its end
        pass
    finally:
        if not isinstance(out, list):
            out.put(None)


class CommandStream:
    """Iterate for the command's stdout lines (newline removed), then read :attr:`result`."""

    def __init__(
        self,
        argv: Sequence[str],
        stdout: IO[bytes],
        stderr: IO[bytes] | None,
        *,
        line_timeout: float,
        deadline_s: float | None = None,
        where: str = "",
    ) -> None:
        self.argv = tuple(argv)
        self.line_timeout = line_timeout
        self.deadline_s = deadline_s
        self.where = where  # " on DEVICE", for messages
        self.heard = [time.monotonic()]  # when the command last printed anything, on either pipe
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: list[bytes] = []
        self._result: Completed | None = None
        self._started = time.monotonic()
        threading.Thread(target=_pump, args=(stdout, self._lines, self.heard), daemon=True).start()
        self._stderr_reader: threading.Thread | None = None
        if stderr is not None:
            self._stderr_reader = threading.Thread(target=_pump, args=(stderr, self._stderr, self.heard), daemon=True)
            self._stderr_reader.start()

    # --- what a transport overrides -----------------------------------------------------------

    def _line(self, text: str) -> str | None:
        """What a raw stdout line is: the command's line, or None when it is the transport's own."""
        return text

    def _check(self) -> None:
        """Raise when the link to the device is known to be dead (called while the command is silent)."""

    def _exited(self) -> bool:
        """Whether the command has ended (asked once its stdout has)."""
        raise NotImplementedError

    def _finish(self, stderr: str) -> Completed:
        """Once the command has exited and stderr is read: say how it ended."""
        raise NotImplementedError

    def _kill(self) -> None:
        """Stop the command and everything it started."""
        raise NotImplementedError

    # --- the shared part ------------------------------------------------------------------------

    @property
    def result(self) -> Completed:
        if self._result is None:
            raise TransportError("the command's result was asked for before its output was read to the end")
        return self._result

    def kill(self) -> None:
        with contextlib.suppress(Exception):
            self._kill()

    def _timeout(self, what: str, hint: str | None = None) -> CommandTimeout:
        self.kill()
        return CommandTimeout(f"{self.argv[0]!r}{self.where} {what} and was killed", hint=hint)

    def _past_deadline(self) -> None:
        if self.deadline_s is not None and time.monotonic() - self._started > self.deadline_s:
            raise self._timeout(f"ran past its {self.deadline_s:g} s deadline")

    def _next(self) -> bytes | None:
        """The next raw line, None at the end of stdout; raises when a bound is passed or the link died."""
        waiting_since = time.monotonic()
        while True:
            self._past_deadline()  # a chatty command is held to its deadline too
            try:
                return self._lines.get(timeout=POLL_S)
            except queue.Empty:
                pass
            self._check()
            self._past_deadline()
            if time.monotonic() - waiting_since > self.line_timeout:
                raise self._timeout(f"printed nothing for {self.line_timeout:g} s", SILENCE_HINT)

    def _await_exit(self) -> None:
        """Stdout has ended; the command exits too, within the same bounds as a line."""
        waiting_since = time.monotonic()
        while not self._exited():
            self._past_deadline()
            self._check()
            if time.monotonic() - waiting_since > self.line_timeout:
                raise self._timeout(f"closed its output but did not exit within {self.line_timeout:g} s")
            time.sleep(POLL_S / 4)

    def __iter__(self) -> Iterator[str]:
        try:
            while (raw := self._next()) is not None:
                text = self._line(raw.decode("utf-8", "replace").removesuffix("\n"))
                if text is not None:
                    yield text
            self._await_exit()
            if self._stderr_reader is not None:
                self._stderr_reader.join(timeout=JOIN_S)
            self._result = self._finish(b"".join(self._stderr).decode("utf-8", "replace"))
        except BaseException:  # interrupted, terminated, abandoned or failed: the command does not go on alone
            if self._result is None:
                self.kill()
            raise

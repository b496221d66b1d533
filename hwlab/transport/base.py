"""What every transport offers: commands as argument lists, files, a deadline.

A transport moves commands and files, nothing else (labgrid's driver). Commands
are always argument lists; a transport that needs a shell quotes them once, in
one place (:func:`shell_join`), so nothing from an inventory reaches a shell
unquoted.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from hwlab.errors import CommandFailed

# A streamed device command first prints its shell's pid after this marker, then execs the command (which
# keeps that pid), so the host can stop the command itself, not only the link that carries it.
PID_MARKER = "__hwlab_pid="
# Stop a remote pid: TERM (the runner restores what it changed), up to 3 s to finish, then KILL. A constant
# script; the pid travels as an argument.
STOP_SCRIPT = (
    'kill -TERM "$1" 2>/dev/null || exit 0; i=0; '
    'while kill -0 "$1" 2>/dev/null && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done; '
    'kill -KILL "$1" 2>/dev/null; exit 0'
)


def with_pid_line(argv: Sequence[str]) -> list[str]:
    """``argv`` run by a shell that first prints its pid after :data:`PID_MARKER`, then execs ``argv``."""
    return ["sh", "-c", f'echo "{PID_MARKER}$$"; exec "$@"', "sh", *argv]


def stop_argv(pid: int) -> list[str]:
    """The device command that stops ``pid`` (see :data:`STOP_SCRIPT`)."""
    return ["sh", "-c", STOP_SCRIPT, "sh", str(int(pid))]


@dataclass(frozen=True)
class Completed:
    """A finished command with its evidence."""

    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    def check(self, hint: str | None = None) -> Completed:
        """Raise CommandFailed when the command exited non-zero."""
        if self.rc != 0:
            raise CommandFailed(list(self.argv), self.rc, self.stdout, self.stderr, hint=hint)
        return self


class LineStream(Protocol):
    """Lines of a running command's stdout, as they arrive; ``result`` once exhausted."""

    def __iter__(self) -> Iterator[str]: ...

    @property
    def result(self) -> Completed: ...

    def kill(self) -> None: ...


class Transport(Protocol):
    """The commands and file moves hwlab needs from a device."""

    def run(self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Completed: ...

    def stream(self, argv: Sequence[str], *, line_timeout: float, env: dict[str, str] | None = None) -> LineStream: ...

    def push(self, local: str, remote: str) -> None: ...

    def pull(self, remote: str, local: str) -> None: ...

    def listdir(self, remote: str) -> list[str]: ...

    def mkdir(self, remote: str) -> None: ...

    def expand(self, remote: str) -> str: ...

    def close(self) -> None: ...


def shell_join(argv: Sequence[str], env: dict[str, str] | None = None) -> str:
    """The one place an argument list becomes a shell command line: every word quoted."""
    words = [f"{k}={v}" for k, v in (env or {}).items()]
    if words:
        words.insert(0, "env")
    words.extend(argv)
    return shlex.join(words)

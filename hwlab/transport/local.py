"""The local host as a device: subprocesses without a shell, files copied."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hwlab.errors import CommandTimeout, TransportError
from hwlab.transport.base import Completed
from hwlab.transport.stream import CommandStream, close_pipes, kill_process_group


def _popen(argv: Sequence[str], env: dict[str, str] | None, *, text: bool = True) -> subprocess.Popen:  # type: ignore[type-arg]
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=text,
            env=full_env,
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise TransportError(f"{argv[0]!r} is not installed on this host", hint="install it or fix the path") from err


class LocalStream(CommandStream):
    """A local command's stdout lines; killing it kills its whole process group."""

    def __init__(self, argv: Sequence[str], line_timeout: float, env: dict[str, str] | None) -> None:
        self._proc = _popen(argv, env, text=False)
        assert self._proc.stdout is not None and self._proc.stderr is not None
        try:
            super().__init__(argv, self._proc.stdout, self._proc.stderr, line_timeout=line_timeout)
        except BaseException:  # interrupted while the stream was being set up: the command does not go on alone
            kill_process_group(self._proc)
            raise

    def _exited(self) -> bool:
        return self._proc.poll() is not None

    def _finish(self, stderr: str) -> Completed:
        close_pipes(self._proc)
        return Completed(self.argv, self._proc.wait(), "", stderr)

    def _kill(self) -> None:
        kill_process_group(self._proc)


class LocalTransport:
    """Runs commands on this host; `push` is a copy, atomic by rename."""

    def run(self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Completed:
        """Like a remote shell, a missing program is exit status 127, not an exception."""
        try:
            proc = _popen(argv, env)
        except TransportError:
            return Completed(tuple(argv), 127, "", f"{argv[0]}: not found\n")
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_process_group(proc)
            raise CommandTimeout(f"{argv[0]!r} ran past its {timeout:g} s deadline and was killed") from None
        except BaseException:  # interrupted or terminated: the command does not go on alone
            kill_process_group(proc)
            raise
        return Completed(tuple(argv), proc.returncode, out, err)

    def stream(self, argv: Sequence[str], *, line_timeout: float, env: dict[str, str] | None = None) -> LocalStream:
        return LocalStream(argv, line_timeout, env)

    def push(self, local: str, remote: str) -> None:
        target = Path(remote)
        tmp = target.with_name(f".{target.name}.part")
        shutil.copyfile(local, tmp)
        os.replace(tmp, target)

    def pull(self, remote: str, local: str) -> None:
        self.push(remote, local)

    def listdir(self, remote: str) -> list[str]:
        try:
            return sorted(os.listdir(remote))
        except FileNotFoundError:
            return []

    def mkdir(self, remote: str) -> None:
        Path(remote).mkdir(parents=True, exist_ok=True)

    def expand(self, remote: str) -> str:
        return os.path.expanduser(remote)

    def close(self) -> None:
        pass

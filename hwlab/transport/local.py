"""The local host as a device: subprocesses without a shell, files copied."""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from hwlab.errors import CommandTimeout, TransportError
from hwlab.transport.base import Completed, FinishedOnce


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill the command and everything it started (the deadline's promise)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _popen(argv: Sequence[str], env: dict[str, str] | None) -> subprocess.Popen[str]:
    full_env = {**os.environ, **env} if env else None
    try:
        return subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
            start_new_session=True,
        )
    except FileNotFoundError as err:
        raise TransportError(f"{argv[0]!r} is not installed on this host", hint="install it or fix the path") from err


class LocalStream(FinishedOnce):
    """Stdout lines of a local command, each awaited for at most ``line_timeout`` seconds."""

    def __init__(self, argv: Sequence[str], line_timeout: float, env: dict[str, str] | None) -> None:
        self._argv = tuple(argv)
        self._timeout = line_timeout
        self._proc = _popen(argv, env)
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    @staticmethod
    def _pump(pipe, lines: queue.Queue[str | None]) -> None:  # type: ignore[no-untyped-def]
        for line in pipe:
            lines.put(line)
        lines.put(None)

    def _drain_stderr(self) -> None:
        assert self._proc.stderr is not None
        self._stderr.extend(self._proc.stderr)

    def __iter__(self) -> Iterator[str]:
        while True:
            try:
                line = self._lines.get(timeout=self._timeout)
            except queue.Empty:
                self.kill()
                raise CommandTimeout(
                    f"{self._argv[0]!r} printed nothing for {self._timeout:.0f} s and was killed",
                    hint="raise the stop rule's max time or check the device",
                ) from None
            if line is None:
                break
            yield line.rstrip("\n")
        rc = self._proc.wait()
        self._result = Completed(self._argv, rc, "", "".join(self._stderr))

    def kill(self) -> None:
        _kill_group(self._proc)


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
            _kill_group(proc)
            raise CommandTimeout(f"{argv[0]!r} ran past its {timeout:g} s deadline and was killed") from None
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

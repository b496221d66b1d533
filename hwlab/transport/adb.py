"""Android devices over adb: the real ``adb`` client, one bounded subprocess per call.

Why it looks the way it does:

- Every call is ``adb -s SERIAL ...`` as an argument list; a device command
  line is built by :func:`shell_join` (every word quoted once) and handed to
  ``adb shell`` as ONE argument, which adbd runs with the device's ``sh -c``.
- ``-x`` asks for adb's legacy ``shell:`` service on every phone, so all of
  them behave like the one the tests exercise: the command runs on a raw PTY,
  with no exit status sent back and stderr merged into stdout. So each
  command is wrapped: its stderr goes to a ``mktemp`` file on the device
  (adbd sets TMPDIR), unlinked at once and read back through an open
  descriptor, so nothing is left behind even when the command is hung up;
  then a marker unique to the call carries ``$?``; then the stderr text.
  Before the marker is stdout, the marker's number is the exit code, after it
  is stderr. On a device without ``mktemp`` stderr stays merged into stdout.
  A missing marker means the link died: :class:`DeviceOffline`, never a
  silent rc 0.
- Every adb subprocess runs in its own process group under a deadline and the
  group is killed when it fires (:class:`CommandTimeout`); adbd then hangs the
  remote command up, as it does whenever a shell stream closes. A streamed
  command (the runner) also prints its pid first, and a stream that is stopped
  stops that pid on the device too (SIGTERM, then SIGKILL), as over SSH.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence

from hwlab.errors import CommandTimeout, DeviceOffline, TransportError
from hwlab.transport.base import PID_MARKER, Completed, shell_join, stop_argv, with_pid_line
from hwlab.transport.stream import CommandStream, close_pipes, kill_process_group

MIN_RATE = 1_000_000  # bytes/s a slow USB 2 or Wi-Fi link still manages: sizes transfer deadlines
STATE_POLL_S = 0.2

# stderr to an unlinked temp file (fd 4 writes, fd 5 reads it back), the marker with $?, then stderr.
_WRAP = (
    '__e=$(mktemp 2>/dev/null) && exec 4>"$__e" 5<"$__e" && rm -f "$__e" || __e=; '
    'if [ -n "$__e" ]; then {cmd} 2>&4 4>&- 5<&-; else {cmd} 2>&1; fi; '
    '__r=$?; echo "{marker}$__r"; '
    '[ -z "$__e" ] || cat <&5'
)
# Names in a folder, one a line, nothing when the folder is missing (ls would quote odd names on a tty).
_LISTDIR = (
    'cd "$1" 2>/dev/null || exit 0; for f in * .*; do '
    'case $f in .|..) continue;; esac; [ -e "$f" ] || [ -L "$f" ] || continue; '
    "printf '%s\\n' \"$f\"; done"
)
# Each adb client runs in a session of its own (a deadline kills its group), so it would outlive a host
# killed outright and keep the phone's command running for nobody. On Linux, util-linux's setpriv execs it
# with a parent-death signal: the client is killed with the host (with the thread that started it, strictly),
# adbd then hangs the command up, and the runner stops itself (its watchdog). adb's server, which a client
# may fork, does not inherit it.
_DIES_WITH_HOST: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL") if sys.platform.startswith("linux") and shutil.which("setpriv") else ()
)
_NETWORK_SERIAL = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[^:\s\[\]]+):\d+$")


def _wrap(argv: Sequence[str], env: dict[str, str] | None) -> tuple[str, str]:
    """The device command line for argv, and the marker that will carry its exit code."""
    if not argv:
        raise TransportError("an empty command cannot be run on a device")
    marker = f"__hwlab_rc_{uuid.uuid4().hex}="
    return _WRAP.format(cmd=shell_join(argv, env), marker=marker), marker


def _split(out: str, marker: str) -> tuple[str, int, str] | None:
    """(stdout, rc, stderr) of a wrapped command's output; None when the marker never came."""
    at = out.find(marker)
    if at < 0:
        return None
    rc_text, _, stderr = out[at + len(marker) :].partition("\n")
    try:
        return out[:at], int(rc_text), stderr
    except ValueError:
        return None


class AdbTransport:
    """A phone (or any adbd) by its adb serial: a USB serial or ``host:port`` for adb over TCP."""

    def __init__(self, serial: str, *, adb: str = "adb", connect_timeout: float = 30.0) -> None:
        if not serial or serial != serial.strip():
            raise TransportError(f"bad adb serial {serial!r}", hint="copy the serial from `adb devices -l`")
        self.serial = serial
        self.adb = adb
        self.connect_timeout = connect_timeout
        self._ready = False
        self._connect_said = ""
        self._streams: set[AdbStream] = set()

    # --- adb itself --------------------------------------------------------------------------

    def _popen(self, args: Sequence[str]) -> subprocess.Popen[bytes]:
        adb = shutil.which(self.adb)  # found here: setpriv would report a missing client as its own exit 127
        if adb is None:
            raise TransportError(
                f"the adb client {self.adb!r} is not installed on this host",
                hint="install it (apt-get install adb; scripts/setup --dev does) or pass its path",
            )
        return subprocess.Popen(
            [*_DIES_WITH_HOST, adb, "-s", self.serial, *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )

    def _adb(self, args: Sequence[str], timeout: float, what: str) -> tuple[int, str, str]:
        """Run one adb command under a deadline: (rc, stdout, stderr)."""
        proc = self._popen(args)
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException as exc:  # past the deadline, interrupted or terminated: adb does not go on alone
            kill_process_group(proc)
            if not isinstance(exc, subprocess.TimeoutExpired):
                raise
            raise CommandTimeout(
                f"{what} on adb device {self.serial!r} ran past its {timeout:g} s deadline and was killed",
                hint="check the device's link (`adb devices -l`) or raise the timeout",
            ) from None
        return proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def _devices(self) -> str:
        with contextlib.suppress(TransportError):
            return self._adb(["devices", "-l"], 10.0, "`adb devices -l`")[1].strip()
        return "(adb devices -l did not answer)"

    # --- device state ------------------------------------------------------------------------

    def _state(self, timeout: float) -> str:
        """adb's word for the device: device, offline, unauthorized, not found, ..."""
        rc, out, err = self._adb(["get-state"], timeout, "`adb get-state`")
        if rc == 0 and out.strip():
            return out.strip()
        for state in ("not found", "unauthorized", "offline", "no permissions"):
            if state in err:
                return state
        raise TransportError(f"`adb -s {self.serial} get-state` failed (exit {rc}): {err.strip()}")

    def _offline_error(self, state: str, detail: str = "") -> DeviceOffline:
        where = f"adb device {self.serial!r}"
        if state == "not found":
            said = f" (adb connect: {self._connect_said})" if self._connect_said else ""
            return DeviceOffline(
                f"{where} not found{said}{detail}; adb sees:\n{self._devices()}",
                state=state,
                hint="check the serial in the inventory against `adb devices -l`;"
                " for a phone over Wi-Fi use host:port (hwlab runs `adb connect host:port` for it)",
            )
        hints = {
            "offline": "reconnect the cable (or Wi-Fi) and restart adbd: toggle USB debugging, or `adb reconnect`",
            "unauthorized": "unlock the phone and accept the RSA key prompt ('Allow USB debugging?')",
            "no permissions": "allow this user to open the USB device (udev rule, plugdev group), then replug",
        }
        return DeviceOffline(
            f"{where} is {state}{detail}",
            state=state,
            hint=hints.get(state, "reboot the phone into Android (adb state 'device')"),
        )

    def _connect(self, timeout: float) -> None:
        """``adb connect host:port``; its verdict is read from the state that follows."""
        try:
            _, out, err = self._adb(["connect", self.serial], timeout, "`adb connect`")
        except CommandTimeout:
            self._connect_said = f"no answer within {timeout:g} s"
        else:
            self._connect_said = (out + err).strip()

    def _ensure_ready(self) -> None:
        """Start the server, connect a network serial, and wait (bounded) for state 'device'."""
        if self._ready:
            return
        deadline = time.monotonic() + self.connect_timeout
        self._adb(["start-server"], self.connect_timeout, "`adb start-server`")
        network = bool(_NETWORK_SERIAL.match(self.serial))
        if network:
            self._connect(max(1.0, deadline - time.monotonic()))
        reconnected = False
        while True:
            state = self._state(max(1.0, min(10.0, deadline - time.monotonic())))
            if state == "device":
                self._ready = True
                return
            if state == "not found":
                raise self._offline_error(state)
            if network and state == "offline" and not reconnected:
                # A device that went away and came back stays offline until adb retries; ask now.
                reconnected = True
                self._adb(["disconnect", self.serial], 10.0, "`adb disconnect`")
                self._connect(max(1.0, deadline - time.monotonic()))
                continue
            if time.monotonic() >= deadline:
                raise self._offline_error(state, f" (still after {self.connect_timeout:g} s)")
            time.sleep(STATE_POLL_S)

    def wait_for_device(self, timeout: float) -> None:
        """Block until adb sees the device online, at most ``timeout`` seconds."""
        if _NETWORK_SERIAL.match(self.serial):
            self._connect(min(timeout, self.connect_timeout))
        try:
            self._adb(["wait-for-device"], timeout, "`adb wait-for-device`")
        except CommandTimeout:
            raise CommandTimeout(
                f"adb device {self.serial!r} did not come online within {timeout:g} s",
                hint="plug it in / check `adb devices -l`, accept the RSA prompt on the phone",
            ) from None

    def _gone(self, what: str, adb_err: str) -> DeviceOffline:
        self._ready = False  # the next call checks the state again (and reconnects a network serial)
        for state in ("not found", "unauthorized", "offline", "no permissions"):
            if state in adb_err:
                return self._offline_error(state)
        said = f" (adb: {adb_err.strip()})" if adb_err.strip() else ""
        return DeviceOffline(
            f"adb device {self.serial!r} went away during {what}{said}",
            state="gone",
            hint="check the cable or Wi-Fi link and `adb devices -l`; rerun to continue",
        )

    # --- the transport protocol --------------------------------------------------------------

    def _shell_args(self, line: str) -> list[str]:
        return ["shell", "-n", "-x", line]

    def run(self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Completed:
        """Run argv on the device: exact exit code, stdout and stderr apart (see the module doc)."""
        self._ensure_ready()
        line, marker = _wrap(argv, env)
        rc, out, err = self._adb(self._shell_args(line), timeout, f"{argv[0]!r}")
        parts = _split(out, marker)
        if parts is None:
            raise self._gone(f"{argv[0]!r} (exit {rc})", err)
        stdout, code, stderr = parts
        return Completed(tuple(argv), code, stdout, stderr)

    def stream(self, argv: Sequence[str], *, line_timeout: float, env: dict[str, str] | None = None) -> AdbStream:
        """Start argv on the device; iterate for its stdout lines as they come, then read ``.result``."""
        self._ensure_ready()
        line, marker = _wrap(with_pid_line(argv), env)
        stream = AdbStream(self, argv, self._popen(self._shell_args(line)), marker, line_timeout)
        self._streams.add(stream)
        return stream

    def _stop(self, pid: int) -> None:
        """SIGTERM to a streamed command on the device, SIGKILL after 3 s: adbd hangs up a shell whose stream
        closed, but a command that ignores the hang-up (or an adbd that does not send it) is stopped too."""
        line, _ = _wrap(stop_argv(pid), None)
        with contextlib.suppress(TransportError):
            self._adb(self._shell_args(line), 15.0, "stopping the command")

    def _checked_path(self, remote: str) -> str:
        if not remote.startswith("/"):
            raise TransportError(
                f"device path {remote!r} is not absolute", hint="use an absolute workdir in the inventory"
            )
        return remote

    def push(self, local: str, remote: str) -> None:
        """Copy a file to the device, placed atomically (pushed beside it, then renamed)."""
        self._ensure_ready()
        remote = self._checked_path(remote)
        part = posixpath.join(posixpath.dirname(remote), f".{posixpath.basename(remote)}.part")
        timeout = max(60.0, os.path.getsize(local) / MIN_RATE)
        rc, out, err = self._adb(["push", os.path.abspath(local), part], timeout, "`adb push`")
        if rc != 0:
            raise self._transfer_error("push", local, remote, err or out)
        self.run(["mv", "-f", part, remote], timeout=60.0).check(hint=f"check that {remote!r} is writable")

    def pull(self, remote: str, local: str) -> None:
        """Copy a file from the device, placed atomically on this host."""
        self._ensure_ready()
        remote = self._checked_path(remote)
        size = self.run(["wc", "-c", remote], timeout=60.0).check(hint="check the path on the device")
        timeout = max(60.0, int(size.stdout.split()[0]) / MIN_RATE)
        part = os.path.join(os.path.dirname(os.path.abspath(local)), f".{os.path.basename(local)}.part")
        rc, out, err = self._adb(["pull", remote, part], timeout, "`adb pull`")
        if rc != 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise self._transfer_error("pull", remote, local, err or out)
        os.replace(part, local)

    def _transfer_error(self, verb: str, src: str, dst: str, said: str) -> TransportError:
        if any(s in said for s in ("not found", "unauthorized", "offline", "no permissions")):
            return self._gone(f"`adb {verb}`", said)
        return TransportError(
            f"adb {verb} {src!r} -> {dst!r} failed on {self.serial!r}: {said.strip()[-500:]}",
            hint="check free space and permissions on the device",
        )

    def listdir(self, remote: str) -> list[str]:
        done = self.run(["sh", "-c", _LISTDIR, "sh", remote], timeout=60.0).check()
        return sorted(name for name in done.stdout.split("\n") if name)

    def mkdir(self, remote: str) -> None:
        self.run(["mkdir", "-p", remote], timeout=60.0).check(hint=f"check that {remote!r} can be created")

    def expand(self, remote: str) -> str:
        """Android has no ``~``: a leading ``~/`` becomes the device's $HOME when it has one."""
        if remote != "~" and not remote.startswith("~/"):
            return remote
        home = self.run(["sh", "-c", 'printf %s "$HOME"'], timeout=60.0).check().stdout.strip()
        return home + remote[1:] if home else remote

    def close(self) -> None:
        for stream in list(self._streams):
            stream.kill()
        self._streams.clear()


class AdbStream(CommandStream):
    """A device command's stdout lines: before the call's marker is stdout, the marker carries the exit
    code, after it comes the command's stderr; stdout ending without the marker means the link died."""

    def __init__(
        self,
        transport: AdbTransport,
        argv: Sequence[str],
        proc: subprocess.Popen[bytes],
        marker: str,
        line_timeout: float,
    ) -> None:
        self._transport = transport
        self._proc = proc
        self._marker = marker
        self._rc_text: str | None = None  # set once the marker has come
        self._pid: int | None = None  # the command's pid on the device, from its first line
        self._command_stderr: list[str] = []
        assert proc.stdout is not None and proc.stderr is not None
        try:
            super().__init__(
                argv, proc.stdout, proc.stderr, line_timeout=line_timeout, where=f" on adb device {transport.serial!r}"
            )
        except BaseException:  # interrupted while the stream was being set up: adb does not go on alone
            kill_process_group(proc)
            raise

    def _line(self, text: str) -> str | None:
        if self._pid is None and text.startswith(PID_MARKER):  # the first line: the command's pid
            self._pid = int(text[len(PID_MARKER) :])
            return None
        if self._rc_text is not None:  # after the marker: the command's stderr
            self._command_stderr.append(text + "\n")
            return None
        at = text.find(self._marker)
        if at < 0:
            return text
        self._rc_text = text[at + len(self._marker) :]
        return text[:at] or None  # the command's last line had no newline when something precedes the marker

    def _exited(self) -> bool:
        return self._proc.poll() is not None

    def _finish(self, stderr: str) -> Completed:
        """adb has exited: the exit code is the one the marker carried (no marker: the link died)."""
        close_pipes(self._proc)
        self._transport._streams.discard(self)
        if self._rc_text is None:
            raise self._transport._gone(f"{self.argv[0]!r}", stderr)
        try:
            rc = int(self._rc_text)
        except ValueError:
            raise self._transport._gone(f"{self.argv[0]!r} (its exit code was cut off)", "") from None
        return Completed(self.argv, rc, "", "".join(self._command_stderr))

    def _kill(self) -> None:
        kill_process_group(self._proc)
        self._transport._streams.discard(self)
        if self._pid is not None:
            self._transport._stop(self._pid)

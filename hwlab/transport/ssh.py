"""SSH boards and GPU boxes through paramiko: verified host keys, deadlines, keepalive.

* Host keys are checked against known_hosts. An unknown key is refused with its
  fingerprint and the command that trusts it; a changed key is refused loudly.
  Nothing is ever accepted silently.
* Every command has a deadline. When it fires the remote process is killed (its
  pid is captured when it starts), not just abandoned.
* A dead link is noticed within ~45 s: while a command is silent, the server is
  asked for a reply every 15 s, and a link that gives none within 30 s more is
  declared dead (a hung or unplugged board); a TCP user timeout makes the kernel
  drop a connection whose packets go unacknowledged as long.
* Files go over SFTP to ``NAME.part`` and are renamed into place, so a dropped
  link never leaves a half file under the final name.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import posixpath
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

from hwlab.errors import (
    HostKeyChanged,
    HostKeyNotTrusted,
    LinkLost,
    NotSsh,
    TransportError,
    UnknownHostKey,
)
from hwlab.names import host_problem, user_problem
from hwlab.transport.base import PID_MARKER, Completed, shell_join, stop_argv
from hwlab.transport.stream import CommandStream

KEEPALIVE_S = 15
DEAD_LINK_S = 45  # a link whose packets go unanswered this long is dropped


def fingerprint(key: paramiko.PKey) -> str:
    """OpenSSH's SHA256 fingerprint of a public key."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def known_hosts_name(host: str, port: int) -> str:
    """How known_hosts names a host: bare on port 22, ``[host]:port`` otherwise."""
    return host if port == 22 else f"[{host}]:{port}"


@dataclass(frozen=True)
class SshTarget:
    """Where to connect, after merging the inventory with ~/.ssh/config."""

    alias: str
    hostname: str
    port: int
    user: str | None
    key_files: tuple[str, ...]
    proxy_jump: str | None
    known_hosts: str
    ssh_config: str | None = None

    @classmethod
    def resolve(
        cls,
        host: str,
        *,
        port: int | None = None,
        user: str | None = None,
        key_file: str | None = None,
        known_hosts: str | None = None,
        ssh_config: str | None = None,
    ) -> SshTarget:
        """Inventory values win; ~/.ssh/config (Host alias, HostName, Port, User, IdentityFile,
        ProxyJump) fills the rest.

        ``host`` reaches the config's token expansion (``Match exec "... %h"`` runs a shell), so a
        host with shell characters is refused before the config is read, like OpenSSH 9.6 does.
        """
        for problem in (host_problem(host), user_problem(user) if user is not None else None):
            if problem:
                raise TransportError(problem, hint="fix host/user in the inventory (or the ProxyJump of ~/.ssh/config)")
        config = paramiko.SSHConfig()
        path = Path(os.path.expanduser(ssh_config or "~/.ssh/config"))
        if path.is_file():
            config = paramiko.SSHConfig.from_path(str(path))
        entry = config.lookup(host)
        keys = [key_file] if key_file else list(entry.get("identityfile", []))
        return cls(
            alias=host,
            hostname=entry.get("hostname", host),
            port=int(port or entry.get("port", 22)),
            user=user or entry.get("user"),
            key_files=tuple(os.path.expanduser(k) for k in keys),
            proxy_jump=entry.get("proxyjump"),
            known_hosts=os.path.expanduser(known_hosts or "~/.ssh/known_hosts"),
            ssh_config=ssh_config,
        )


class _RefuseUnknown(paramiko.MissingHostKeyPolicy):
    """Refuse an unknown host key, telling the user how to trust it."""

    def __init__(self, device: str, known_hosts: str) -> None:
        self.device = device
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise UnknownHostKey(
            f"{hostname} offered an unknown {key.get_name()} host key {fingerprint(key)} (not in {self.known_hosts})",
            hint=f"if that fingerprint is your device's, trust it with: hwlab devices trust {self.device}",
        )


def _tcp_socket(host: str, port: int, timeout: float, dead_link_s: float = DEAD_LINK_S) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    if hasattr(socket, "TCP_USER_TIMEOUT"):  # Linux: drop the link when data stays unacknowledged
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, int(dead_link_s * 1000))
    return sock


@contextlib.contextmanager
def _paramiko_logs_kept() -> Iterator[None]:
    """paramiko logs each failed handshake with a traceback (Python prints it on stderr when nobody
    configured logging); the error hwlab raises says it in one line, so that log is kept quiet meanwhile."""
    logger = logging.getLogger("paramiko")
    quiet = logging.NullHandler()
    logger.addHandler(quiet)
    previous = logger.propagate
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(quiet)
        logger.propagate = previous


class Liveness:
    """Asks the server for a reply after ``every_s`` of silence; none within ``dead_after_s`` in all
    means the link is dead. paramiko's own keepalive wants no reply, so it cannot tell.

    ``clock`` (seconds) is injectable, so the rule is tested with a simulated one.
    """

    def __init__(
        self,
        transport: paramiko.Transport,
        every_s: float,
        dead_after_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.transport = transport
        self.every_s = every_s
        self.dead_after_s = dead_after_s
        self.clock = clock
        self.last = clock()
        self._probe: threading.Thread | None = None

    def heard(self, at: float | None = None) -> None:
        """The server said something (at ``at``, default now)."""
        self.last = max(self.last, self.clock() if at is None else at)

    def _ask(self) -> None:
        # OpenSSH answers an unknown global request with a failure message: any answer is a sign of life.
        self.transport.global_request("keepalive@openssh.com", wait=True)

    def dead(self) -> bool:
        now = self.clock()
        if self._probe is not None:
            if not self._probe.is_alive():
                self._probe = None
                self.last = now
            elif now - self.last > self.dead_after_s:
                return True
        elif now - self.last > self.every_s:
            self._probe = threading.Thread(target=self._ask, daemon=True)
            self._probe.start()
        return False


class SshTransport:
    """Commands and files on a device over SSH."""

    def __init__(
        self,
        target: SshTarget,
        *,
        device: str = "",
        connect_timeout: float = 15.0,
        reconnect_attempts: int = 3,
        keepalive_s: float = KEEPALIVE_S,
        dead_link_s: float = DEAD_LINK_S,
    ) -> None:
        self.target = target
        self.device = device or target.alias
        self.connect_timeout = connect_timeout
        self.reconnect_attempts = reconnect_attempts
        self.keepalive_s = keepalive_s
        self.dead_link_s = dead_link_s
        self._client: paramiko.SSHClient | None = None
        self._jump: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- connection -------------------------------------------------------------------
    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        if os.path.exists(self.target.known_hosts):
            client.load_host_keys(self.target.known_hosts)
        client.set_missing_host_key_policy(_RefuseUnknown(self.device, self.target.known_hosts))
        return client

    def _open_socket(self) -> socket.socket | paramiko.Channel:
        if not self.target.proxy_jump:
            return _tcp_socket(self.target.hostname, self.target.port, self.connect_timeout, self.dead_link_s)
        jump_user, _, jump_host = self.target.proxy_jump.rpartition("@")
        jump_host, _, jump_port = jump_host.partition(":")
        jump_target = SshTarget.resolve(
            jump_host, port=int(jump_port) if jump_port else None, user=jump_user or None,
            known_hosts=self.target.known_hosts, ssh_config=self.target.ssh_config,
        )  # fmt: skip
        self._jump = SshTransport(jump_target, device=self.device)._connect()
        jump_transport = self._jump.get_transport()
        assert jump_transport is not None
        return jump_transport.open_channel(
            "direct-tcpip", (self.target.hostname, self.target.port), ("127.0.0.1", 0), timeout=self.connect_timeout
        )

    def _connect(self) -> paramiko.SSHClient:
        with _paramiko_logs_kept():
            return self._connect_quietly()

    @staticmethod
    def _stopped(client: paramiko.SSHClient) -> None:
        """A failed client's transport thread stopped and joined, so it logs its failure while paramiko's
        log is still kept quiet (it may otherwise print a traceback after hwlab has said the error)."""
        transport = client.get_transport()
        client.close()
        if transport is not None and transport.is_alive():
            transport.join(timeout=5)

    def _connect_quietly(self) -> paramiko.SSHClient:
        client = self._new_client()
        name = known_hosts_name(self.target.hostname, self.target.port)
        try:
            client.connect(
                self.target.hostname,
                port=self.target.port,
                username=self.target.user,
                key_filename=list(self.target.key_files) or None,
                sock=self._open_socket(),
                timeout=self.connect_timeout,
                banner_timeout=self.connect_timeout,
                auth_timeout=self.connect_timeout,
                allow_agent=False,
                look_for_keys=not self.target.key_files,
            )
        except paramiko.BadHostKeyException as err:
            raise HostKeyChanged(
                f"WARNING: THE HOST KEY OF {name} HAS CHANGED. Someone may be intercepting the connection,"
                f" or the device was reinstalled. Expected {fingerprint(err.expected_key)},"
                f" got {fingerprint(err.key)}. hwlab refuses to connect.",
                hint=f"if you know why it changed: ssh-keygen -R '{name}' -f {self.target.known_hosts}"
                f" && hwlab devices trust {self.device}",
            ) from None
        except paramiko.AuthenticationException as err:
            raise TransportError(
                f"{self.target.user}@{name} refused the key ({err})",
                hint="set key_file in the inventory (or IdentityFile in ~/.ssh/config) to a key the device accepts",
            ) from None
        except (OSError, paramiko.SSHException) as err:
            if isinstance(err, TransportError):
                raise
            transport = client.get_transport()
            self._stopped(client)
            if transport is not None and not transport.remote_version:  # TCP up, no SSH server spoke: no retry
                raise NotSsh(
                    f"{name} accepted the connection but sent no SSH banner within {self.connect_timeout:g} s",
                    hint="check that an SSH server (sshd) listens on that port, not another service",
                ) from None
            raise TransportError(
                f"cannot connect to {name}: {err}", hint="check that the device is on and the address is right"
            ) from None
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(int(self.keepalive_s))
        return client

    def client(self) -> paramiko.SSHClient:
        """The live connection, reconnecting (with back-off) when the last one died."""
        if self._client is not None:
            transport = self._client.get_transport()
            if transport is not None and transport.is_active():
                return self._client
            self._drop()
        for attempt in range(self.reconnect_attempts):
            try:
                self._client = self._connect()
                return self._client
            except (UnknownHostKey, HostKeyChanged, NotSsh):
                raise
            except TransportError:
                if attempt == self.reconnect_attempts - 1:
                    raise
                time.sleep(2**attempt)
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        for closable in (self._sftp, self._client, self._jump):
            if closable is not None:
                with contextlib.suppress(Exception):
                    closable.close()
        self._sftp = self._client = self._jump = None

    def sftp(self) -> paramiko.SFTPClient:
        if self._sftp is None or self._sftp.get_channel().closed:
            self._sftp = self.client().open_sftp()
        return self._sftp

    def close(self) -> None:
        self._drop()

    # -- commands ---------------------------------------------------------------------
    def _start(self, argv: Sequence[str], env: dict[str, str] | None) -> paramiko.Channel:
        transport = self.client().get_transport()
        assert transport is not None
        channel = transport.open_session(timeout=self.connect_timeout)
        # `exec` keeps the pid the shell printed, so a deadline can kill the command itself.
        channel.exec_command(f"echo {PID_MARKER}$$; exec {shell_join(argv, env)}")
        return channel

    def _kill(self, pid: int | None) -> None:
        """SIGTERM to the remote command (the runner restores what it changed), SIGKILL if it is still there."""
        if pid is None:
            return
        with contextlib.suppress(Exception):
            self.run(stop_argv(pid), timeout=30)

    def run(self, argv: Sequence[str], *, timeout: float, env: dict[str, str] | None = None) -> Completed:
        stream = SshStream(self, argv, env, line_timeout=timeout, deadline_s=timeout)
        out = "\n".join(stream)
        result = stream.result
        return Completed(result.argv, result.rc, out + ("\n" if out else ""), result.stderr)

    def stream(self, argv: Sequence[str], *, line_timeout: float, env: dict[str, str] | None = None) -> SshStream:
        return SshStream(self, argv, env, line_timeout=line_timeout)

    # -- files ------------------------------------------------------------------------
    def push(self, local: str, remote: str) -> None:
        part = f"{remote}.part"
        sftp = self.sftp()
        try:
            sftp.put(local, part)
            sftp.posix_rename(part, remote)
        except OSError as err:
            raise TransportError(f"cannot copy {local} to {self.device}:{remote}: {err}") from None

    def pull(self, remote: str, local: str) -> None:
        try:
            self.sftp().get(remote, local)
        except OSError as err:
            raise TransportError(f"cannot copy {self.device}:{remote} here: {err}") from None

    def listdir(self, remote: str) -> list[str]:
        try:
            return sorted(self.sftp().listdir(remote))
        except FileNotFoundError:
            return []

    def mkdir(self, remote: str) -> None:
        self.run(["mkdir", "-p", "--", remote], timeout=30).check(hint="check the device's workdir and its permissions")

    def expand(self, remote: str) -> str:
        """``~`` is the login user's home: SFTP starts there."""
        if remote == "~" or remote.startswith("~/"):
            return posixpath.join(self.sftp().normalize("."), remote[2:])
        return remote


class SshStream(CommandStream):
    """A remote command's stdout lines; its first line is the pid the shell printed (for the kill).

    While the command is silent the link is asked for a reply (:class:`Liveness`); a
    link that gives none is dropped and the stream ends with :class:`LinkLost`.
    """

    def __init__(
        self,
        ssh: SshTransport,
        argv: Sequence[str],
        env: dict[str, str] | None,
        *,
        line_timeout: float,
        deadline_s: float | None = None,
    ) -> None:
        self._ssh = ssh
        self._channel = ssh._start(argv, env)
        transport = self._channel.get_transport()
        assert transport is not None
        self._liveness = Liveness(transport, ssh.keepalive_s, ssh.dead_link_s)
        self._pid: int | None = None
        super().__init__(
            argv, self._channel.makefile("rb"), self._channel.makefile_stderr("rb"),
            line_timeout=line_timeout, deadline_s=deadline_s, where=f" on {ssh.device}",
        )  # fmt: skip

    def _link_lost(self) -> LinkLost:
        return LinkLost(
            f"the SSH link to {self._ssh.device} died while {self.argv[0]!r} was running",
            hint="every result received so far is kept; rerun when the device is back",
        )

    def _link_alive(self) -> bool:
        transport = self._channel.get_transport()
        return transport is not None and transport.is_active()

    def _line(self, text: str) -> str | None:
        if self._pid is None and text.startswith(PID_MARKER):
            self._pid = int(text[len(PID_MARKER) :])
            return None
        return text

    def _check(self) -> None:
        self._liveness.heard(self.heard[0])
        if not self._link_alive():
            raise self._link_lost()
        if self._liveness.dead():
            self._ssh.close()  # a silent link: drop it, the next command reconnects
            raise self._link_lost()

    def _exited(self) -> bool:
        return self._channel.exit_status_ready() or not self._link_alive()

    def _finish(self, stderr: str) -> Completed:
        rc = self._channel.recv_exit_status()
        if rc == -1 and not self._link_alive():  # closed without an exit status: the link went down
            raise self._link_lost()
        self._channel.close()
        return Completed(self.argv, rc, "", stderr)

    def _kill(self) -> None:
        with contextlib.suppress(Exception):
            self._channel.close()
        if self._link_alive():
            self._ssh._kill(self._pid)


def fetch_host_key(target: SshTarget, timeout: float = 15.0) -> paramiko.PKey:
    """The host key a device offers, fetched without authenticating (for `hwlab devices trust`)."""
    name = known_hosts_name(target.hostname, target.port)
    with _paramiko_logs_kept():
        try:
            sock = _tcp_socket(target.hostname, target.port, timeout)
        except OSError as err:
            raise TransportError(
                f"cannot reach {name}: {err}", hint="check that the device is on and the address is right"
            ) from None
        transport = paramiko.Transport(sock)
        transport.banner_timeout = timeout
        try:
            transport.start_client(timeout=timeout)
            return transport.get_remote_server_key()
        except (OSError, paramiko.SSHException) as err:
            spoke = bool(transport.remote_version)
            transport.close()
            if transport.is_alive():  # joined while paramiko's log is quiet: no traceback after the error
                transport.join(timeout=5)
            if not spoke:
                raise NotSsh(
                    f"{name} accepted the connection but sent no SSH banner within {timeout:g} s",
                    hint="check that an SSH server (sshd) listens on that port, not another service",
                ) from None
            raise TransportError(f"cannot fetch the host key of {name}: {err}", hint="check the SSH server") from None
        finally:
            transport.close()


def trust_host_key(target: SshTarget, key: paramiko.PKey) -> str:
    """Append the key to known_hosts; returns the line written."""
    name = known_hosts_name(target.hostname, target.port)
    line = f"{name} {key.get_name()} {key.get_base64()}\n"
    path = Path(target.known_hosts)
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.read_text() if path.exists() else ""
    if any(re.match(rf"{re.escape(name)}\s+{re.escape(key.get_name())}\s", ln) for ln in existing.splitlines()):
        raise HostKeyNotTrusted(
            f"{path} already holds a {key.get_name()} key for {name}",
            hint=f"remove it first: ssh-keygen -R '{name}' -f {path}",
        )
    with open(path, "a") as fh:
        if existing and not existing.endswith("\n"):
            fh.write("\n")
        fh.write(line)
    return line

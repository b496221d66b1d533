"""A real OpenSSH server (Debian's openssh-server) on a loopback port, with throwaway host and user keys."""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from hwlab.inventory import DeviceSpec

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {dir}/host_ed25519
PidFile {dir}/sshd.pid
AuthorizedKeysFile {dir}/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
StrictModes no
UsePAM no
Subsystem sftp internal-sftp
LogLevel ERROR
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (sshd forks one per connection, which forks the command)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


@dataclass
class Sshd:
    """One sshd process; ``kill()`` takes it down with every connection, like a board losing power."""

    dir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def user(self) -> str:
        return getpass.getuser()

    @property
    def user_key(self) -> Path:
        return self.dir / "id_ed25519"

    @property
    def host_pub(self) -> Path:
        return self.dir / "host_ed25519.pub"

    def start(self) -> None:
        (self.dir / "sshd_config").write_text(CONFIG.format(port=self.port, dir=self.dir))
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.dir / "sshd_config")],
            stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "sshd.log", "ab"),  # noqa: SIM115 - lives as long as the server
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.dir / 'sshd.log').read_text()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start listening")

    def kill(self) -> None:
        if self.proc is None:
            return
        for pid in [self.proc.pid, *descendants(self.proc.pid)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def known_hosts_line(self) -> str:
        key_type, key_b64 = self.host_pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {key_type} {key_b64}\n"

    def device(self, name: str = "board", *, known_hosts: Path | None = None, **fields: object) -> DeviceSpec:
        """An inventory entry for this server (the "board"); the runner runs with this Python."""
        values: dict[str, object] = {
            "name": name,
            "transport": "ssh",
            "source": "<test>",
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key_file": str(self.user_key),
            "known_hosts": str(known_hosts or self.dir / "known_hosts"),
            "workdir": str(self.dir / "device-workdir"),
            "python": sys.executable,
        }
        values.update(fields)
        return DeviceSpec(**values)  # type: ignore[arg-type]

    def inventory(self, folder: Path, name: str = "board", **extra: object) -> Path:
        """Write the device as devices/NAME.yaml for CLI tests."""
        folder.mkdir(parents=True, exist_ok=True)
        spec = self.device(name)
        fields = {
            "name": name,
            "transport": "ssh",
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key_file": spec.key_file,
            "known_hosts": spec.known_hosts,
            "workdir": spec.workdir,
            "python": sys.executable,
            **extra,  # overrides the defaults above: a key appears once (the inventory refuses duplicates)
        }
        (folder / f"{name}.yaml").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
        return folder

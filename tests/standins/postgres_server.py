"""A real PostgreSQL server (Debian's postgresql) in a temporary folder on a loopback port.

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres`` user (which Debian's
package creates) and the folder lives under ``/tmp`` where that user can reach it.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path


def pg_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Postgres:
    folder: Path
    port: int
    as_user: list[str]

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://hwlab@127.0.0.1:{self.port}/postgres"

    def _run(self, argv: list[str]) -> None:
        done = subprocess.run([*self.as_user, *argv], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    @classmethod
    def start(cls) -> Postgres:
        initdb, pg_ctl = pg_binary("initdb"), pg_binary("pg_ctl")
        if not initdb or not pg_ctl:
            raise FileNotFoundError("initdb/pg_ctl not found (Debian: apt install postgresql)")
        root = Path(tempfile.mkdtemp(prefix="hwlab-pg-", dir="/tmp"))
        root.chmod(0o755)
        as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        server = cls(root, _free_port(), as_user)
        data = root / "data"
        server._run([initdb, "-D", str(data), "-A", "trust", "-U", "hwlab", "--no-sync", "-E", "UTF8"])
        options = f"-p {server.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
        server._run([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"])
        return server

    def stop(self) -> None:
        pg_ctl = pg_binary("pg_ctl")
        try:
            if pg_ctl:
                self._run([pg_ctl, "-D", str(self.folder / "data"), "-m", "immediate", "-w", "stop"])
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

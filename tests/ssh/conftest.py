"""Fixtures of the SSH tests: a real sshd per test."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sshd_server import SSHD, Sshd, free_port, keygen


@pytest.fixture
def sshd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server not installed: `scripts/setup --dev` installs it (Debian: openssh-server)")
    if os.geteuid() == 0:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    home = tmp_path / "sshd"
    home.mkdir()
    keygen(home / "host_ed25519")
    keygen(home / "id_ed25519")
    shutil.copy(home / "id_ed25519.pub", home / "authorized_keys")
    server = Sshd(home, free_port())
    (home / "known_hosts").write_text(server.known_hosts_line())
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    server.start()
    yield server
    server.kill()

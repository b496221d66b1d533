"""Fixtures shared by the test folders: a real sshd per test (the loopback "board"), and a private adb
server with a stand-in phone that speaks adbd's wire protocol (no real phone can run here).

Every test process has its own hwlab cache folder (exported models, device leases): the suite never
touches the user's, and two worker processes (``make test`` runs two) never wait on each other's lease
of the local device.

Each test gets its own adb server port (``ANDROID_ADB_SERVER_PORT``) and key folder, so a user's adb
server and phones are never touched; the server is killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from adbd_standin import StandIn
from sshd_server import SSHD, Sshd, free_port, keygen

from hwlab.transport.adb import AdbTransport


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("hwlab-cache")
    patch = pytest.MonkeyPatch()
    patch.setenv("HWLAB_CACHE", str(folder))
    yield folder
    patch.undo()


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


ADB = shutil.which("adb")


@pytest.fixture
def adb_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A private adb server on a free port; its RSA keys live in the test's tmp folder."""
    if ADB is None:
        pytest.skip("the adb client is not installed (scripts/setup --dev installs it)")
    home = tmp_path / "adb-home"
    home.mkdir()
    for _ in range(3):  # a port free a moment ago may be taken by another process before adb binds it
        monkeypatch.setenv("ANDROID_ADB_SERVER_PORT", str(free_port()))
        env = {**os.environ, "HOME": str(home)}
        started = subprocess.run([ADB, "start-server"], env=env, capture_output=True, text=True, timeout=30)
        if started.returncode == 0:
            break
    assert started.returncode == 0, started.stderr
    yield ADB
    subprocess.run([ADB, "kill-server"], env=env, capture_output=True, timeout=30)


@pytest.fixture
def standin(tmp_path: Path, adb_server: str) -> Iterator[StandIn]:
    phone = StandIn(tmp_path / "phone").start()
    yield phone
    phone.stop()


@pytest.fixture
def phone(standin: StandIn) -> Iterator[AdbTransport]:
    transport = AdbTransport(standin.serial)
    yield transport
    transport.close()

"""Fixtures for the adb transport: a private adb server and a stand-in phone per test.

Each test gets its own adb server port (``ANDROID_ADB_SERVER_PORT``) and key
folder, so a user's adb server and phones are never touched; the server is
killed at teardown.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from adbd_standin import StandIn

from hwlab.transport.adb import AdbTransport

ADB = shutil.which("adb")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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

"""Fixtures of the farm tests: a history database on SQLite and on a real PostgreSQL server, and plans."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from farmkit import fresh_postgres_url
from postgres_server import Postgres, pg_binary


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if not pg_binary("initdb") or not pg_binary("pg_ctl"):
        pytest.skip("PostgreSQL is not installed: `scripts/setup --dev` installs it (Debian: postgresql)")
    server = Postgres.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'farm.db'}"
    return fresh_postgres_url(request.getfixturevalue("postgres"))

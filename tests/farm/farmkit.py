"""Helpers of the farm tests: fresh PostgreSQL databases, small models, plans."""

from __future__ import annotations

import itertools
from pathlib import Path

from postgres_server import Postgres

_databases = itertools.count()


def fresh_postgres_url(server: Postgres) -> str:
    """A new, empty database on the server (one per test)."""
    import psycopg

    name = f"farm_{next(_databases)}"
    with psycopg.connect(f"host=127.0.0.1 port={server.port} user=hwlab dbname=postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # a fixed, generated name: nothing from outside
    return server.url.rsplit("/", 1)[0] + f"/{name}"


def export_onnx(path: Path, width: int = 16, size: int = 16) -> Path:
    """A small two-convolution model (more ``width``: more work), exported by hwlab's exporter."""
    import shutil

    import torch
    from torch import nn

    from hwlab.export import export_module

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(8, width, 3, padding=1), nn.ReLU(), nn.Conv2d(width, 16, 3, padding=1)).eval()
    exported = export_module(model, (torch.randn(1, 8, size, size),), "onnx", name=f"farm-test-{width}-{size}")
    shutil.copyfile(exported.path, path)
    return path


QUICK = "measuring: {max_time_s: 0.1, min_rounds: 3, max_rounds: 4}\n"


def write_plan(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "farm.yaml"
    path.write_text(body)
    return path

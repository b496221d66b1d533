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


def synthetic_nights(history, key, levels: list[float], seed: int = 7, alerts: bool = True) -> list[str]:  # type: ignore[no-untyped-def]
    """Seeded synthetic nights of one series (test data for detection and reports, never a device's table);
    an alert is raised where a night is judged flagged and none is open, as a run would. The run ids, oldest first."""
    import numpy as np

    from hwlab.farm.baseline import earlier_nights
    from hwlab.farm.regress import Night, judge

    rng = np.random.default_rng(seed)
    runs = []
    for i, level in enumerate(levels):
        run = f"202612{1 + i // 24:02d}T{i % 24:02d}0000Z-test"
        if history.run(run) is None:
            history.start_run(run, plan_hash="h")
            history.end_run(run, "finished")
        samples = [float(level * s) for s in np.exp(rng.normal(0.0, 0.02, 100))]
        history.add_result(
            run,
            key,
            "night",
            status="ok",
            samples=samples,
            median=float(np.median(samples)),
            raw_median=float(np.median(samples)),
            n=100,
        )
        before = [n for _, n in earlier_nights(history, key, run)]
        verdict = judge(before, Night(run, tuple(samples)))
        if alerts and verdict.flagged and history.open_alert(key, verdict.kind) is None:
            history.add_alert(run, key, kind=verdict.kind, change=verdict.change, p=verdict.p,
                              threshold=verdict.threshold, noise=verdict.noise, began_run_id=run)  # fmt: skip
        runs.append(run)
    return runs

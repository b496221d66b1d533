"""``hwlab farm run``: one night of a plan over its devices, here or on Dask workers.

A run records hwlab's version, the project's git commit, the plan's hash, its host, start and end. The
devices' nights (:mod:`hwlab.farm.night`) run one after another here, or all at once on the Dask workers
that have them (:mod:`hwlab.farm.scale`). A run killed at any moment stays ``running`` in the database;
``--resume RUN`` measures only what it lacks.
"""

from __future__ import annotations

import datetime as dt
import secrets
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hwlab
from hwlab.errors import InvalidRequest
from hwlab.farm.db import History, database_url
from hwlab.farm.night import Log, NightJob, NightOutcome, device_night
from hwlab.farm.plan import load_plan
from hwlab.inventory import inventory_dir, load_inventory


@dataclass
class RunSummary:
    run_id: str
    db_url: str
    resumed: bool
    outcomes: list[NightOutcome] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "resumed": self.resumed, "devices": [o.to_json() for o in self.outcomes],
                "alerts": self.alerts}  # fmt: skip


def new_run_id() -> str:
    """A run's id: when it started (UTC), and a random suffix so two runs of one second differ."""
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


def git_commit() -> str | None:
    """The commit of the hwlab checkout that runs (None for an installed package)."""
    root = Path(hwlab.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    done = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30)
    return done.stdout.strip() or None if done.returncode == 0 else None


def farm_run(
    plan_path: Path,
    *,
    db: str | None = None,
    inventory: str | None = None,
    resume: str | None = None,
    scheduler: str | None = None,
    lease_wait_s: float = 0.0,
    log: Log = lambda _: None,
) -> RunSummary:
    """Run (or resume) one night of the plan; the summary of every device and the run's alerts."""
    plan = load_plan(plan_path)
    folder = inventory_dir(inventory).resolve()
    devices = plan.select(load_inventory(folder))
    url = database_url(db, plan.path)
    history = History.open(url)
    if scheduler:
        from hwlab.farm.scale import check_offered

        check_offered(scheduler, [d.name for d in devices])
    if resume:
        found = history.run(resume)
        if found is None:
            raise InvalidRequest(f"no run {resume!r} in {url}", hint="see `hwlab farm report` for the runs")
        if found["plan_hash"] != plan.digest:
            raise InvalidRequest(f"run {resume} was started with another version of {plan.path.name}",
                                 hint="resume it with the plan it started with, or start a new run")  # fmt: skip
        run_id = resume
    else:
        run_id = new_run_id()
        history.start_run(run_id, plan_path=str(plan.path), plan_hash=plan.digest, hwlab_version=hwlab.__version__,
                          git_commit=git_commit(), host=socket.gethostname())  # fmt: skip
    log(f"run {run_id}{' (resumed)' if resume else ''}: {len(devices)} device(s), database {history.where}")
    jobs = [NightJob(run_id, str(plan.path), url, d.name, str(folder), lease_wait_s) for d in devices]
    if scheduler:
        from hwlab.farm.scale import nights_on_workers

        outcomes = nights_on_workers(scheduler, jobs, plan.result_timeout_s, log)
    else:
        outcomes = [device_night(job, log) for job in jobs]
    history.end_run(run_id, "finished")
    return RunSummary(run_id, url, bool(resume), outcomes, history.alerts(run_id=run_id))

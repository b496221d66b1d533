"""Scale-out on Dask ``distributed``: a worker per host advertises the devices attached to it.

``hwlab farm worker --scheduler tcp://HOST:8786 --device rk3399`` starts a ``distributed`` worker with the
resource ``device-rk3399=1`` for each device it has; ``hwlab farm run --scheduler tcp://...`` submits each
device's night with ``resources={"device-NAME": 1}``, so Dask runs it on the host that has the device, one
night per device at a time. Dask only routes: the farm's leases still keep any other hwlab process off a
device. A device that no worker offers is refused before anything is submitted (Dask would wait for such a
worker for ever), and a night gives up after the plan's ``result_timeout_s``.

Every worker writes to the one history database of the run (its URL travels with the work): with
workers on several hosts, give a PostgreSQL URL that every host reaches, and the plan, inventory and
model files at the same paths on every host.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from hwlab.errors import HwlabError, InvalidRequest
from hwlab.farm.db import History
from hwlab.farm.night import Log, NightJob, NightOutcome, device_night
from hwlab.inventory import get_device

RESOURCE_PREFIX = "device-"
CONNECT_TIMEOUT_S = 30


def resource_of(device: str) -> str:
    return f"{RESOURCE_PREFIX}{device}"


class SchedulerError(HwlabError):
    """The Dask scheduler cannot be reached, or no worker offers a device of the plan."""


def run_worker(scheduler: str, devices: Sequence[str], inventory: str | None = None, name: str | None = None) -> None:
    """Serve as a Dask worker for ``devices`` (checked against the inventory first) until stopped."""
    from distributed import Worker

    if not devices:
        raise InvalidRequest("a farm worker needs at least one device", hint="pass --device NAME (repeatable)")
    for device in devices:
        get_device(device, inventory)

    async def serve() -> None:
        worker = Worker(scheduler, resources={resource_of(d): 1 for d in devices}, nthreads=len(devices), name=name,
                        death_timeout=CONNECT_TIMEOUT_S)  # fmt: skip
        await worker
        await worker.finished()

    try:
        asyncio.run(serve())
    except (OSError, TimeoutError) as err:
        raise SchedulerError(f"cannot serve the scheduler {scheduler}: {err}",
                             hint="start it with `dask scheduler` and give its address") from None  # fmt: skip


def offered(client: object) -> dict[str, list[str]]:
    """Each device resource the scheduler's workers offer, and by which workers."""
    found: dict[str, list[str]] = {}
    for address, worker in client.scheduler_info(n_workers=-1)["workers"].items():  # type: ignore[attr-defined]
        for resource in worker.get("resources") or {}:
            found.setdefault(resource, []).append(address)
    return found


def _night_on_worker(job: NightJob) -> NightOutcome:
    from distributed import get_worker

    outcome = device_night(job, lambda line: print(f"hwlab farm: {line}", flush=True))
    outcome.worker = str(get_worker().name)
    return outcome


def _connect(scheduler: str):  # type: ignore[no-untyped-def]
    from distributed import Client
    from distributed import TimeoutError as DaskTimeout

    try:
        return Client(scheduler, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, DaskTimeout) as err:
        raise SchedulerError(f"cannot reach the Dask scheduler {scheduler}: {err}",
                             hint="check the address, and that `dask scheduler` runs there") from None  # fmt: skip


def check_offered(scheduler: str, devices: Sequence[str]) -> None:
    """Refuse at once a device that no worker of the scheduler offers (Dask would wait for ever)."""
    with _connect(scheduler) as client:
        _refuse_missing(scheduler, devices, offered(client))


def _refuse_missing(scheduler: str, devices: Sequence[str], have: dict[str, list[str]]) -> None:
    missing = [device for device in devices if resource_of(device) not in have]
    if missing:
        raise SchedulerError(
            f"no worker of {scheduler} offers device(s) {', '.join(missing)}",
            hint=f"start `hwlab farm worker --scheduler {scheduler} --device {missing[0]}` on the host that has it",
        )


def nights_on_workers(scheduler: str, jobs: Sequence[NightJob], timeout_s: float, log: Log) -> list[NightOutcome]:
    """Each job on the worker that offers its device; a job without a result in ``timeout_s`` (or whose
    worker died) is an infrastructure outcome of its device."""
    from distributed import TimeoutError as DaskTimeout

    with _connect(scheduler) as client:
        have = offered(client)
        _refuse_missing(scheduler, [job.device for job in jobs], have)
        futures = []
        for job in jobs:
            workers = have[resource_of(job.device)]
            log(f"{job.device}: sent to {', '.join(workers)}")
            futures.append((job, client.submit(_night_on_worker, job, resources={resource_of(job.device): 1},
                                               key=f"night-{job.run_id}-{job.device}", pure=False)))  # fmt: skip
        outcomes = []
        for job, future in futures:
            try:
                outcome = future.result(timeout=timeout_s)
            except (TimeoutError, DaskTimeout):
                future.cancel()
                outcome = NightOutcome(job.device, "infrastructure", f"no result within {timeout_s:g} s")
            except HwlabError:
                raise
            except Exception as err:  # noqa: BLE001 - a worker lost (KilledWorker, CommClosedError...)
                outcome = NightOutcome(job.device, "infrastructure", f"worker lost: {type(err).__name__}: {err}")
            if outcome.status == "infrastructure" and outcome.worker is None:  # the worker could not say so
                History.open(job.db_url).count_infra_error(job.device, job.run_id, 1, outcome.message)
            log(f"{job.device}: {outcome.status} {outcome.message}".rstrip())
            outcomes.append(outcome)
        return outcomes

"""Scale-out: a real Dask scheduler and two worker processes on loopback, each with its own devices."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from adbd_standin import StandIn
from farmkit import QUICK, export_onnx, write_plan
from sshd_server import free_port

from hwlab.farm.db import History, SeriesKey, database_url
from hwlab.farm.run import farm_run
from hwlab.farm.scale import SchedulerError


def _start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[str]:
    port = free_port()
    proc = _start([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                   str(port), "--no-dashboard"], tmp_path / "scheduler.log")  # fmt: skip
    yield f"tcp://127.0.0.1:{port}"
    proc.kill()
    proc.wait()


def test_each_device_runs_on_the_worker_that_has_it(  # type: ignore[no-untyped-def]
    scheduler: str, sshd, standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import Client

    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    inventory = sshd.inventory(tmp_path / "devices")  # the loopback-SSH board
    (inventory / "phone.yaml").write_text(  # the stand-in phone, behind the real adb server
        f"name: phone\ntransport: adb\nserial: {standin.serial}\nworkdir: {standin.root / 'hwlab'}\n"
        f"python: {sys.executable}\n"
    )
    (inventory / "spare.yaml").write_text("name: spare\ntransport: local\n")
    export_onnx(tmp_path / "small.onnx")
    plan = write_plan(tmp_path, "devices: [local, board, phone]\nmodels: [small.onnx]\n" + QUICK)
    hwlab = [sys.executable, "-m", "hwlab.cli", "farm", "worker", "--scheduler", scheduler, "--inventory",
             str(inventory)]  # fmt: skip
    workers = [
        _start([*hwlab, "--name", "here", "--device", "local"], tmp_path / "worker-here.log"),
        _start([*hwlab, "--name", "lab", "--device", "board", "--device", "phone"], tmp_path / "worker-lab.log"),
    ]
    try:
        with Client(scheduler, timeout=60) as client:
            client.wait_for_workers(2, timeout=120)
        with pytest.raises(SchedulerError, match="offers device.* spare") as info:
            farm_run(write_plan(tmp_path / "other", "devices: [spare]\nmodels: [../small.onnx]\n"),
                     inventory=str(inventory), scheduler=scheduler)  # fmt: skip
        assert "hwlab farm worker" in str(info.value)
        summary = farm_run(plan, inventory=str(inventory), scheduler=scheduler)
    finally:
        for worker in workers:
            worker.kill()
            worker.wait()
    ran_on = {o.device: (o.worker, o.status) for o in summary.outcomes}
    assert ran_on == {"local": ("here", "done"), "board": ("lab", "done"), "phone": ("lab", "done")}
    history = History.open(database_url(None, plan))  # every worker wrote into the one database
    for device in ("local", "board", "phone"):
        [result] = history.results(SeriesKey(device, "onnxruntime", "small"))
        assert result["status"] == "ok" and result["run_id"] == summary.run_id

"""Farm nights on real measurements: results and provenance, resume after a kill, health, retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from farmkit import QUICK, export_onnx, write_plan

from hwlab.cli import main
from hwlab.farm.db import History, SeriesKey, database_url
from hwlab.farm.models import GOLDEN_KEY
from hwlab.farm.plan import load_plan
from hwlab.farm.run import farm_run


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def _history(plan: Path) -> History:
    return History.open(database_url(None, plan))


def test_a_night_records_the_run_its_results_and_a_model_error_once(tmp_path: Path) -> None:
    export_onnx(tmp_path / "small.onnx")
    (tmp_path / "broken.onnx").write_bytes(b"not an onnx model")
    plan = write_plan(tmp_path, "devices: [local]\nmodels: [small.onnx, broken.onnx]\n" + QUICK)
    summary = farm_run(plan)
    history = _history(plan)
    run = history.run(summary.run_id)
    assert run is not None and run["status"] == "finished" and run["ended_at"] >= run["started_at"]
    assert run["plan_hash"] == load_plan(plan).digest and run["hwlab_version"] and run["host"]
    assert (run["git_commit"] is not None) == (Path(__file__).resolve().parents[2] / ".git").exists()
    [outcome] = summary.outcomes
    assert (outcome.status, outcome.attempts, outcome.results, outcome.errors) == ("done", 1, 1, 1)
    [small] = history.results(SeriesKey("local", "onnxruntime", "small"))
    assert small["status"] == "ok" and len(small["samples"]) == small["n"] > 0 and small["median"] > 0
    [broken] = history.results(SeriesKey("local", "onnxruntime", "broken"))
    assert (broken["status"], broken["error_class"]) == ("error", "model") and "not an ONNX model" in broken["error"]
    [golden] = history.results(SeriesKey("local", "onnxruntime", GOLDEN_KEY), kinds=("golden",))
    assert golden["status"] == "ok"
    device = history.device("local")
    assert (device["health"], device["state"], device["infra_errors"]) == ("good", "idle", 0)
    assert json.loads(device["fingerprint"])["runtimes"]["onnxruntime"] and device["fingerprint_hash"]


def _rows(table: Path) -> list[dict]:  # type: ignore[type-arg]
    rows = table / "ops.jsonl"
    return [json.loads(line) for line in rows.read_text().splitlines()] if rows.exists() else []


def test_a_killed_run_resumes_with_nothing_lost_and_nothing_measured_twice(tmp_path: Path) -> None:
    for i in range(3):
        export_onnx(tmp_path / f"m{i}.onnx", width=8 + 8 * i)
    plan = write_plan(tmp_path, "devices: [local]\nmodels: [m0.onnx, m1.onnx, m2.onnx]\n"
                                "measuring: {schedule: single, max_time_s: 0.5, min_time_s: 0.5, ci: 0}\n")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "hwlab.cli", "farm", "run", "--plan", str(plan)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy())  # fmt: skip
    tables = tmp_path / "farm" / "tables" / "local" / "onnxruntime"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        night = next(tables.glob("*-night"), None) if tables.exists() else None
        if night is not None and len(_rows(night)) >= 1:
            break
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _rows(night)
    assert 1 <= len(before) < 3
    [run] = _history(plan).runs()
    assert run["status"] == "running"  # killed: nothing closed it

    summary = farm_run(plan, resume=run["id"])
    after = _rows(night)
    assert after[: len(before)] == before  # the rows measured before the kill are kept as they were
    assert sorted(r["key"] for r in after) == ["m0", "m1", "m2"]  # each measured once
    history = _history(plan)
    for key in ("m0", "m1", "m2"):
        [result] = history.results(SeriesKey("local", "onnxruntime", key))
        assert result["run_id"] == run["id"] and result["status"] == "ok"
    assert summary.run_id == run["id"] and history.run(run["id"])["status"] == "finished"  # type: ignore[index]


def test_a_failed_health_check_takes_the_device_out_until_it_is_set_good(tmp_path: Path) -> None:
    export_onnx(tmp_path / "small.onnx")
    inventory = tmp_path / "devices"
    inventory.mkdir()
    (inventory / "nopython.yaml").write_text("name: nopython\ntransport: local\npython: /nonexistent/python3\n")
    plan = write_plan(tmp_path, "devices: [nopython]\nmodels: [small.onnx]\n" + QUICK)
    [first] = farm_run(plan, inventory=str(inventory)).outcomes
    assert first.status == "unhealthy" and "no Python" in first.message
    history = _history(plan)
    assert history.device("nopython")["health"] == "bad"
    [second] = farm_run(plan, inventory=str(inventory)).outcomes
    assert second.status == "skipped" and "bad" in second.message
    assert history.results(SeriesKey("nopython", "onnxruntime", "small")) == []
    assert main(["farm", "health", "nopython", "--set", "good", "--reason", "fixed", "--plan", str(plan)]) == 0
    [third] = farm_run(plan, inventory=str(inventory)).outcomes
    assert third.status == "unhealthy"  # checked again (and still failing)
    assert [e["health"] for e in history.health_events("nopython")] == ["bad", "good", "bad"]


def test_infrastructure_errors_are_retried_and_counted_against_the_device(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    export_onnx(tmp_path / "small.onnx")
    inventory = sshd.inventory(tmp_path / "devices")
    plan = write_plan(tmp_path, "devices: [board]\nmodels: [small.onnx]\nretries: {count: 2, delay_s: 0}\n" + QUICK)
    sshd.kill()  # the board lost power: nothing answers on its port
    [outcome] = farm_run(plan, inventory=str(inventory)).outcomes
    assert (outcome.status, outcome.attempts) == ("infrastructure", 3)
    history = _history(plan)
    errors = history.device_errors()
    assert [e["attempt"] for e in errors] == [1, 2, 3] and all(e["error_class"] == "infrastructure" for e in errors)
    device = history.device("board")
    assert device["infra_errors"] == 3 and device["health"] == "bad"  # it never passed tonight's health check
    assert device["state"] == "idle"


def test_a_real_slowdown_is_confirmed_alerted_located_and_acknowledged(tmp_path: Path) -> None:
    export_onnx(tmp_path / "ref.onnx", width=16, size=32)
    plan = write_plan(tmp_path, "devices: [local]\nmodels: [{file: ref.onnx, name: ref}]\n"
                                "health: {max_slowdown: 10}\n" + QUICK)  # fmt: skip
    quiet = [farm_run(plan) for _ in range(3)]
    assert all(not s.alerts for s in quiet)
    export_onnx(tmp_path / "ref.onnx", width=128, size=32)  # eight times the work, under the same series name
    slower = farm_run(plan)
    [alert] = slower.alerts
    assert alert["kind"] == "regression" and alert["change"] > 1.0 and alert["p"] < 0.002
    assert alert["began_run_id"] == slower.run_id and alert["acknowledged_at"] is None
    history = _history(plan)
    series = SeriesKey("local", "onnxruntime", "ref")
    [confirmation] = history.results(series, run_id=slower.run_id, kinds=("confirm",))  # measured again first
    [before] = history.results(series, run_id=quiet[-1].run_id)
    assert confirmation["status"] == "ok" and confirmation["median"] > 2 * before["median"]
    assert main(["farm", "run", "--plan", str(plan), "--fail-on-regression"]) == 0  # still slower: the same alert
    assert [a["id"] for a in history.alerts()] == [alert["id"]]
    assert main(["farm", "ack", str(alert["id"]), "--real", "--note", "bigger model", "--plan", str(plan)]) == 0
    after = farm_run(plan)
    assert after.alerts == [] and after.outcomes[0].flagged == []  # the baseline starts at the slower night

"""`hwlab profile` over SSH, end to end, against a real sshd: kills, resumes, locks, injection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gated_runner import gated_python, recording_python, running, start_long_profile

from hwlab.cli import main
from hwlab.errors import DeviceBusy, TransportError
from hwlab.lease import device_lease
from hwlab.measure.anchors import ANCHORS
from hwlab.measure.settings import MeasureSettings, stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.space import get_space
from hwlab.tables import LookupTable

FAST = stopping(min_time_s=0.01, max_time_s=0.2, min_count=5)
OPS = get_space("generic", count=4, seed=2)


def request(device, tables: Path, specs=OPS, settings: MeasureSettings = FAST) -> ProfileRequest:  # type: ignore[no-untyped-def]
    return ProfileRequest(
        device=device, backend="onnxruntime", specs=specs, space="generic", tables_root=tables, settings=settings
    )


def test_cli_profile_over_ssh_then_nothing_new(sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    inventory = sshd.inventory(tmp_path / "inv")
    args = ["profile", "--device", "board", "--inventory", str(inventory), "--backend", "onnxruntime"]
    args += ["--space", "generic", "--count", "4", "--seed", "2", "--min-time", "0.01", "--max-time", "0.2"]
    args += ["--tables-dir", str(tmp_path / "t"), "--json"]
    assert main(args) == 0
    (first,) = json.loads(capsys.readouterr().out)
    assert first["measured"] == 4 and first["errors"] == []
    rows = list(LookupTable(Path(first["table"])))
    assert {r["device"] for r in rows} == {"board"} and all(r["status"] == "ok" for r in rows)
    # The runner, the models and the anchors were pushed into the board's workdir, content-addressed.
    workdir = Path(sshd.device().workdir)
    assert len(list((workdir / "models").iterdir())) == 4 + len(ANCHORS)
    assert main(["doctor", "--device", "board", "--inventory", str(inventory), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["facts"]["runtimes"]["onnxruntime"]["version"]


def test_second_profile_pushes_nothing_new(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    first = profile(request(sshd.device(), tmp_path / "a"))
    assert first.pushed > 4  # runner files + 4 models
    again = profile(request(sshd.device(), tmp_path / "b"))  # a fresh table: every op measured again
    assert len(again.measured) == 4 and again.pushed == 0  # runner, models and job are all there


def test_server_killed_mid_profile_then_resumed(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The board dies after exactly three rows: a typed error, the rows kept, the rerun completes."""
    specs = get_space("generic", count=10, seed=4)
    tables = tmp_path / "t"
    rows_file = tables / "board" / "onnxruntime" / "generic" / "ops.jsonl"
    gate = tmp_path / "gate"
    board = sshd.device(python=gated_python(tmp_path / "gated-python", gate, 3))

    def kill_after_three_rows() -> None:
        deadline = time.monotonic() + 300  # a bound for a broken run only: the gate holds the fourth row back
        while time.monotonic() < deadline:
            if rows_file.exists() and len(rows_file.read_bytes().splitlines()) >= 3:
                break
            time.sleep(0.05)
        sshd.kill()

    killer = threading.Thread(target=kill_after_three_rows)
    killer.start()
    with pytest.raises(TransportError) as info:
        profile(request(board, tables, specs))
    killer.join()
    assert "kept" in str(info.value)
    assert len(LookupTable(rows_file.parent).keys()) == 3
    sshd.start()
    gate.touch()
    resumed = profile(request(board, tables, specs))
    assert resumed.skipped == 3 and len(resumed.measured) == 7
    assert LookupTable(rows_file.parent).keys() == {s.key for s in specs}


def test_injection_through_inventory_values_stays_literal(sshd, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pwned = sshd.dir / "PWNED"
    workdir = f"{sshd.dir}/w; touch {pwned}; $(touch {pwned}) `touch {pwned}`"
    report = profile(request(sshd.device(workdir=workdir), tmp_path / "t", OPS[:1]))
    assert report.errors == [] and len(report.measured) == 1
    assert not pwned.exists()
    assert Path(workdir, "models").is_dir()  # the odd name exists literally on the device


def test_second_profile_of_a_busy_device_refuses_or_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from hwlab.lease import device_lease\n"
         "with device_lease('board'):\n    print('held', flush=True); sys.stdin.readline(); released = time.time()\n"
         "print(released, flush=True)"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={**os.environ, "HWLAB_CACHE": str(tmp_path)},
    )  # fmt: skip
    assert holder.stdin is not None and holder.stdout is not None and holder.stdout.readline() == "held\n"
    with pytest.raises(DeviceBusy, match=rf"in use by pid {holder.pid}") as info, device_lease("board"):
        pass  # the holder keeps the lock until it is told to let go
    assert "--lock-wait" in str(info.value)
    holder.stdin.write("let go\n")
    holder.stdin.flush()
    with device_lease("board", wait_s=60):  # queues behind the holder, then gets it
        acquired = time.time()
    assert acquired >= float(holder.stdout.readline())
    holder.wait()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL], ids=lambda s: s.name)
def test_a_terminated_profile_stops_its_runner_on_the_board(sshd, tmp_path: Path, sig: signal.Signals) -> None:  # type: ignore[no-untyped-def]
    """SIGTERM or Ctrl-C to hwlab mid-job: the runner on the board is stopped (SIGTERM, then SIGKILL) before
    hwlab exits. SIGKILL: hwlab runs no code, the link drops, and the runner stops itself."""
    pid_file = tmp_path / "runner.pid"
    inventory = sshd.inventory(tmp_path / "inv", python=recording_python(tmp_path / "recording-python", pid_file))
    proc, runner = start_long_profile("board", inventory, tmp_path / "t", pid_file)
    assert running(runner)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        deadline = time.monotonic() + 100  # the job would run 360 s; the watchdog looks every 0.5 s
        while running(runner) and time.monotonic() < deadline:
            time.sleep(0.1)
    else:
        assert proc.returncode == 128 + sig and "every finished row is kept" in err, err
    assert not running(runner)  # the job would have run for minutes

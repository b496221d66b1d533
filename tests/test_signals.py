"""Nothing outlives hwlab: a terminated or interrupted profile stops its runner; a runner whose host was
killed outright stops itself.

The runner's pid is recorded as its job starts (tests/standins/gated_runner.py), and its job is made
to last minutes (every model runs to its time limit), so whether that very process is still measuring
after the host went away is a fact, not a race.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest
from gated_runner import recording_python, running, start_long_profile

from hwlab.tables import LookupTable, TableId


def start_profile(tmp_path: Path, pid_file: Path) -> tuple[subprocess.Popen[str], int]:
    inventory = tmp_path / "inventory"
    inventory.mkdir(exist_ok=True)
    python = recording_python(tmp_path / "recording-python", pid_file)
    (inventory / "host.yaml").write_text(f"name: host\ntransport: local\npython: {python}\n")
    return start_long_profile("host", inventory, tmp_path / "t", pid_file)


@pytest.mark.parametrize(
    ("sig", "rc", "said"),
    [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "interrupted"), (signal.SIGHUP, 129, "SIGHUP")],
)
def test_a_terminated_or_interrupted_profile_stops_its_runner_first(
    tmp_path: Path, sig: signal.Signals, rc: int, said: str
) -> None:
    pid_file = tmp_path / "runner.pid"
    proc, runner = start_profile(tmp_path, pid_file)
    assert running(runner)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == rc and said in err and "every finished row is kept" in err, err
    assert not running(runner)  # stopped (and reaped) before hwlab exited
    assert LookupTable.at(tmp_path / "t", TableId("host", "onnxruntime", "generic")).exists


def test_a_runner_whose_host_was_killed_outright_stops_itself(tmp_path: Path) -> None:
    pid_file = tmp_path / "runner.pid"
    proc, runner = start_profile(tmp_path, pid_file)
    proc.kill()  # SIGKILL: hwlab runs no code at all
    proc.communicate(timeout=60)
    deadline = time.monotonic() + 100  # the job would run 360 s; the watchdog looks every 0.5 s
    while running(runner) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(runner)

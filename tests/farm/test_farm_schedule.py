"""`hwlab farm schedule`: units systemd accepts and a cron line the shell reads back, for an awkward path."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from farmkit import write_plan

from hwlab.cli import main
from hwlab.errors import InvalidRequest
from hwlab.farm.schedule import schedule

ODD = "lab 50% 'quoted' $(touch pwned)"


def test_units_verify_and_the_cron_line_reads_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ODD).mkdir()
    (tmp_path / ODD / "m.onnx").write_bytes(b"x")
    plan = write_plan(tmp_path / ODD, "devices: [local]\nmodels: [m.onnx]\n")
    assert main(["farm", "schedule", "--plan", str(plan), "--at", "02:30"]) == 0
    printed = capsys.readouterr().out
    s = schedule(plan, "02:30")
    assert s.service in printed and s.timer in printed and s.cron in printed
    assert "OnCalendar=*-*-* 02:30:00" in s.timer and f"Unit={s.unit}.service" in s.timer
    assert s.cron.startswith("30 2 * * * ")
    command = s.cron.split(" ", 5)[5].replace("\\%", "%")  # cron gives the shell its command, "\%" as "%"
    words = shlex.split(command)
    assert words[:3] == ["cd", str(plan.parent), "&&"] and words[words.index("--plan") + 1] == str(plan)
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: the units were not verified")
    units = tmp_path / "units"
    units.mkdir()
    (units / f"{s.unit}.service").write_text(s.service)
    (units / f"{s.unit}.timer").write_text(s.timer)
    done = subprocess.run(["systemd-analyze", "verify", f"{s.unit}.service", f"{s.unit}.timer"], cwd=units,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()


def test_a_bad_time_of_day_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="not a time of day"):
        schedule(tmp_path / "farm.yaml", "25:00")

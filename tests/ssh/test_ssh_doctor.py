"""`hwlab doctor` on a remote device says what is missing and how to fix it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hwlab.cli import main


def doctor(capsys: pytest.CaptureFixture[str], inventory: Path) -> tuple[int, dict]:  # type: ignore[type-arg]
    rc = main(["doctor", "--device", "board", "--inventory", str(inventory), "--json"])
    return rc, json.loads(capsys.readouterr().out)


def test_no_python_on_the_device(sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    inventory = sshd.inventory(tmp_path / "inv")
    yaml = inventory / "board.yaml"
    yaml.write_text(yaml.read_text().replace(f"python: {sys.executable}", "python: /opt/nowhere/python3"))
    rc, report = doctor(capsys, inventory)
    assert rc == 1 and report["facts"] is None
    (finding,) = report["findings"]
    assert finding["level"] == "missing" and "no Python at '/opt/nowhere/python3'" in finding["what"]
    assert "apt install python3 python3-numpy" in finding["fix"]


def test_python_without_numpy(sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    bare = tmp_path / "bare-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(bare)], check=True)
    inventory = sshd.inventory(tmp_path / "inv")
    yaml = inventory / "board.yaml"
    yaml.write_text(yaml.read_text().replace(f"python: {sys.executable}", f"python: {bare}/bin/python"))
    rc, report = doctor(capsys, inventory)
    assert rc == 1
    (finding,) = report["findings"]
    assert finding["what"] == f"numpy is not importable by {bare}/bin/python"
    assert finding["fix"] == f"{bare}/bin/python -m pip install numpy"


def test_healthy_device(sshd, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    rc, report = doctor(capsys, sshd.inventory(tmp_path / "inv", runtimes="[onnxruntime, torch]"))
    assert rc == 0
    levels = {f["what"].split()[0]: f["level"] for f in report["findings"]}
    assert levels["onnxruntime"] == "ok" and levels["torch"] == "ok"
    assert report["facts"]["python"] == ".".join(map(str, sys.version_info[:3]))

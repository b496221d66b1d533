"""A phone without Python, end to end through the CLI: `hwlab doctor` and `hwlab profile` drive the real
``adb`` client against the stand-in adbd, whose "phone" has only a stand-in of TFLite's benchmark_model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from adbd_standin import StandIn
from benchmark_model_standin import write_benchmark_model

from hwlab.cli import main
from hwlab.measure.benchmark_model.measurer import NO_POWER
from hwlab.space import get_space
from hwlab.tables import LookupTable, TableId

pytest.importorskip("litert_torch", reason="the TFLite exporter (hwlab[tflite]) is needed to make .tflite files")


@pytest.fixture
def phone_inventory(standin: StandIn, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An inventory naming the stand-in phone: no Python there, benchmark_model in its workdir."""
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "250")
    binary = write_benchmark_model(standin.root / "bin" / "benchmark_model", "litert_op_profiling")
    inventory = tmp_path / "inventory"
    inventory.mkdir()
    (inventory / "phone.yaml").write_text(
        "name: phone\ntransport: adb\n"
        f"serial: '{standin.serial}'\nworkdir: {standin.root / 'hwlab'}\n"
        "python: /nonexistent/python3\n"
        f"benchmark_model: {binary}\nruntimes: [litert]\n"
    )
    return inventory


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_doctor_and_profile_a_phone_without_python(
    phone_inventory: Path, standin: StandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, err = run(capsys, "doctor", "--device", "phone", "--inventory", str(phone_inventory), "--json")
    assert rc == 0, err
    report = json.loads(out)
    assert report["facts"]["python"] is None and report["facts"]["runtimes"]["litert"]["module"] == "benchmark_model"
    found = {f["what"]: f["level"] for f in report["findings"]}
    assert found["litert (benchmark_model)"] == "ok"
    assert any(level == "warn" and "only litert, through benchmark_model" in what for what, level in found.items())

    tables = tmp_path / "tables"
    argv = ["profile", "--device", "phone", "--inventory", str(phone_inventory), "--backend", "litert",
            "--space", "generic", "--count", "2", "--seed", "1", "--min-count", "7",
            "--tables-dir", str(tables), "--json"]  # fmt: skip
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    (summary,) = json.loads(out)
    assert (summary["measured"], summary["errors"], summary["measurer"]) == (2, [], "benchmark_model")
    table = LookupTable.at(tables, TableId("phone", "litert", "generic"))
    assert table.keys() == {s.key for s in get_space("generic", count=2, seed=1)}
    for row in table:
        assert (row["runtime_module"], row["stop_reason"], row["status"]) == ("benchmark_model",) * 2 + ("ok",)
        assert row["n"] == 497 and row["mean_ms"] == 0.402318  # the replayed log's regular runs
        assert row["power_w"] is None and row["power_note"] == NO_POWER and row["governor_note"] is None
    seen = json.loads((standin.root / "bin" / "seen.json").read_text())
    assert "--num_runs=7" in seen["argv"] and seen["argv"][0].startswith(f"--graph={standin.root / 'hwlab'}/models/")

    # A rerun measures nothing; a backend the phone lacks is refused without stopping the others.
    rc, out, err = run(capsys, *[("onnxruntime,litert" if a == "litert" else a) for a in argv])
    ours, refused = json.loads(out)
    assert rc == 1 and (ours["backend"], ours["skipped"], ours["measured"]) == ("litert", 2, 0)
    assert refused["backend"] == "onnxruntime" and "not installed on device 'phone'" in refused["refused"]


def test_requests_benchmark_model_cannot_honour_are_refused_before_any_export(
    phone_inventory: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["profile", "--device", "phone", "--inventory", str(phone_inventory), "--backend", "litert",
            "--space", "generic", "--count", "2", "--tables-dir", str(tmp_path / "t")]  # fmt: skip
    for extra, said in (
        (["--governor", "performance"], "setting the cpufreq governor (performance)"),
        (["--power", "rapl"], "sampling power sensor rapl"),
        (["--max-temp", "50"], "cooling down below --max-temp"),
    ):
        rc, _, err = run(capsys, *base, *extra)
        assert rc == 1 and "benchmark_model, which cannot do" in err and said in err, err
        assert "Traceback" not in err
    assert not (tmp_path / "cache" / "models").exists()  # nothing was exported

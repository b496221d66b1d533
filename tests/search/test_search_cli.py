"""`hwlab search`, `hwlab train` and `hwlab validate` end to end on the local device, tiny settings."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from hwlab.cli import main
from hwlab.tables import LookupTable, TableId

FAST = ["--min-time", "0.01", "--max-time", "0.2", "--min-count", "5", "--min-rounds", "3", "--max-rounds", "4"]
SPACE = ["--input-size", "16", "--width", "0.25", "--stem-stride", "1"]
TINY = ["--epochs", "1", "--population", "6", "--iterations", "2", "--parents", "2", "--mutations", "2",
        "--crossovers", "2", "--recal-batches", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_search_train_validate(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tables, runs = str(tmp_path / "tables"), tmp_path / "runs"
    rc, out, err = cli(capsys, "profile", "--backend", "onnxruntime", "--space", "spos", *SPACE, "--num-classes", "10",
                       *FAST, "--table", "spos-16-w0.25-c10-s1", "--tables-dir", tables, "--json")  # fmt: skip
    assert rc == 0, err
    table = LookupTable.at(Path(tables), TableId("local", "onnxruntime", "spos-16-w0.25-c10-s1"))
    totals = sorted(r["median_ms"] for r in table)
    budget = sum(totals) / len(totals) * 24  # about the cost of a 24-op architecture: some fit, some do not
    rc, out, err = cli(capsys, "search", "--latency-ms", f"{budget:.4f}", "--latency-source", "table", *SPACE, *TINY,
                       "--tables-dir", tables, "--runs-dir", str(runs), "--json")  # fmt: skip
    assert rc == 0, err
    summary = json.loads(out)
    best = summary["search"]["best"]
    assert best["latency_ms"] <= budget and summary["search"]["evaluated"] >= 6
    validation = summary["validation"]
    assert validation["measured_ms"] > 0 and validation["predicted_ms"] is None  # no predictor fitted here
    assert validation["within_budget"] == (validation["measured_ms"] <= budget)
    arch = Path(summary["files"]["arch"])
    record = json.loads(arch.read_text())
    assert record["choices"] == best["choices"] and len(record["validations"]) == 1
    assert Path(summary["files"]["plot"]).stat().st_size > 0
    assert LookupTable.at(Path(tables), TableId("local", "onnxruntime", "validate")).rows()

    # A budget no candidate meets ends with the fastest one named, before any training.
    rc, _, err = cli(capsys, "search", "--latency-ms", f"{totals[0]:.6f}", "--latency-source", "table", *SPACE, *TINY,
                     "--tables-dir", tables, "--runs-dir", str(tmp_path / "runs-unmet"))  # fmt: skip
    assert rc == 1 and re.search(r"the fastest of [\d,]+ drawn is predicted at [\d.]+ ms", err), err
    assert not (tmp_path / "runs-unmet").exists()

    # A second search on the same space reuses the trained supernet.
    rc, out, err = cli(capsys, "search", "--latency-ms", f"{budget:.4f}", "--latency-source", "table", *SPACE, *TINY,
                       "--tables-dir", tables, "--runs-dir", str(runs), "--random", "--no-validate",
                       "--json")  # fmt: skip
    assert rc == 0, err
    again = json.loads(out)
    assert again["supernet"]["resumed_from"] == 1 and again["search"]["method"] == "random"

    rc, out, err = cli(capsys, "train", str(arch), "--epochs", "1", "--json")
    assert rc == 0, err
    trained = json.loads(out)
    assert 0 <= trained["val_accuracy"] <= 1 and Path(trained["exports"]["onnx"]).stat().st_size > 0
    rc, out, err = cli(capsys, "validate", str(arch), "--tables-dir", tables, "--budget-ms", "1000", "--json")
    assert rc == 0, err
    (validation,) = json.loads(out)
    assert validation["within_budget"] is True
    record = json.loads(arch.read_text())
    assert len(record["validations"]) == 2 and record["trained"]["epochs"] == 1 and Path(record["weights"]).exists()


def test_search_without_a_predictor_says_how_to_fit_one(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = cli(capsys, "search", "--latency-ms", "1", *SPACE, "--predictors-dir", str(tmp_path / "none"))
    assert rc == 1 and "hwlab predictors fit" in err
    rc, _, err = cli(capsys, "search", "--latency-ms", "1", *SPACE, "--latency-source", "table",
                     "--tables-dir", str(tmp_path / "none"), "--runs-dir", str(tmp_path / "runs"))  # fmt: skip
    assert rc == 1 and "holds no measured rows" in err and not (tmp_path / "runs").exists()
    assert "hwlab profile --device local --backend onnxruntime --space spos --input-size 16 --width 0.25" in err
    assert "--table spos-16-w0.25-c10-s1" in err
    rc, _, err = cli(capsys, "search", "--latency-ms", "1", *SPACE, "--backend", "onnxruntime,torch")
    assert rc == 1 and "search works under one backend" in err
    rc, _, err = cli(capsys, "validate", str(tmp_path / "missing.json"))
    assert rc == 1 and "no architecture file" in err

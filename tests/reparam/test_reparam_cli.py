"""`hwlab reparam`, `hwlab profile --space blocks` and `hwlab search --space repvgg` end to end, tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwlab.cli import main
from hwlab.reparam.deploy import built_in
from hwlab.tables import LookupTable, TableId

FAST = ["--min-time", "0.01", "--max-time", "0.2", "--min-count", "5", "--min-rounds", "3", "--max-rounds", "4"]
TINY = ["--epochs", "1", "--population", "6", "--iterations", "2", "--parents", "2", "--mutations", "2",
        "--crossovers", "2", "--recal-batches", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_reparam_a_built_in_network(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, out, err = cli(capsys, "reparam", "--net", "repvgg-a0", "--input-size", "64", "--num-classes", "10",
                       "--out", str(tmp_path / "a0"), "--json")  # fmt: skip
    assert rc == 0, err
    report = json.loads(out)
    assert (
        len(report["blocks"]) == 22 and report["equivalence"]["ok"] and report["params_deploy"] < report["params_train"]
    )
    # The exported deploy form computes what the train form (same seed) computes, in the runtime.
    train = built_in("repvgg-a0", 10, 64, None)
    x = torch.randn(1, 3, 64, 64)
    session = ort.InferenceSession(report["files"]["onnx"], providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        expected = train(x).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()


def test_reparam_refuses_what_it_cannot_convert(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc, _, err = cli(capsys, "reparam")
    assert rc == 1 and "either an arch.json or --net" in err
    bad = tmp_path / "arch.json"
    bad.write_text('{"space": {"name": "spos"}}')
    rc, _, err = cli(capsys, "reparam", str(bad))
    assert rc == 1 and "not a repvgg space" in err
    rc, _, err = cli(capsys, "reparam", "--net", "repvgg-a0", "--formats", "pt")
    assert rc == 1 and "unknown format(s) pt" in err


def test_profile_the_blocks_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    rc, _, err = cli(capsys, "profile", "--space", "blocks", "--input-size", "32", *FAST, "--tables-dir", str(tables))
    assert rc == 0, err
    rows = {r["key"]: r for r in LookupTable.at(tables, TableId("local", "onnxruntime", "blocks"))}
    ops = {r["op"] for r in rows.values()}
    assert {"repvgg_block", "acnet_block", "conv_act", "frelu_train", "frelu", "weightnet", "se_conv",
            "condconv"} <= ops  # fmt: skip
    row = rows["repvgg_block-input:8x8x48-output:8x8x48-stride:1-act:relu"]
    assert row["status"] == "ok" and row["median_ms"] > 0 and row["threads"] == 1 and row["runtime_version"]
    assert "conv_act-input:8x8x48-output:8x8x48-kernel:3-stride:1-act:relu" in rows


def test_search_the_repvgg_space(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    tables, runs = str(tmp_path / "tables"), tmp_path / "runs"
    rc, _, err = cli(capsys, "search", "--space", "repvgg", "--width", "0.5", "--latency-ms", "1")
    assert rc == 1 and "--width belong to --space spos" in err
    rc, _, err = cli(capsys, "search", "--space", "repvgg", "--latency-ms", "1", "--latency-source", "table",
                     "--input-size", "16", "--tables-dir", tables)  # fmt: skip
    assert rc == 1 and "hwlab profile --device local --backend onnxruntime --space repvgg --input-size 16" in err
    rc, _, err = cli(capsys, "profile", "--space", "repvgg", "--input-size", "16", "--num-classes", "10", *FAST,
                     "--table", "repvgg-16-c10", "--tables-dir", tables)  # fmt: skip
    assert rc == 0, err
    medians = sorted(r["median_ms"] for r in LookupTable.at(Path(tables), TableId("local", "onnxruntime",
                                                                                   "repvgg-16-c10")))  # fmt: skip
    budget = float(np.median(medians)) * 10  # about a 10-op network's cost: some candidates fit, some do not
    rc, out, err = cli(capsys, "search", "--space", "repvgg", "--latency-ms", f"{budget:.4f}", "--latency-source",
                       "table", "--input-size", "16", *TINY, *FAST, "--tables-dir", tables, "--runs-dir", str(runs),
                       "--json")  # fmt: skip
    assert rc == 0, err
    summary = json.loads(out)
    best, deployed = summary["search"]["best"], summary["deployed"]
    assert best["latency_ms"] <= budget
    assert deployed["equivalence"]["ok"] and deployed["agreement"] >= 0.99
    assert abs(deployed["train_accuracy"] - deployed["deploy_accuracy"]) <= 0.005
    assert Path(deployed["files"]["onnx"]).stat().st_size > 0
    validation = summary["validation"]
    assert validation["measured_ms"] > 0 and validation["predicted_ms"] == pytest.approx(best["latency_ms"])
    record = json.loads(Path(summary["files"]["arch"]).read_text())
    assert record["search"]["cost"] == "deploy form" and len(record["validations"]) == len(summary["validation_tries"])
    # The winner's arch.json converts again, with its trained weights.
    rc, out, err = cli(capsys, "reparam", summary["files"]["arch"], "--json")
    assert rc == 0, err
    assert json.loads(out)["blocks"]

"""`hwlab qsearch` and `hwlab quantize` end to end on the local device, tiny settings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwlab.cli import main

FAST = ["--min-time", "0.01", "--max-time", "0.2", "--min-count", "5", "--min-rounds", "3", "--max-rounds", "4"]
TINY = ["--epochs", "1", "--population", "4", "--iterations", "1", "--parents", "2"]


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def test_qsearch_deploys_every_pick_and_quantize_rebuilds_the_winner(capsys, tmp_path):
    runs, tables = tmp_path / "runs", tmp_path / "tables"
    # A budget every assignment meets, so the test does not depend on this machine's speed.
    rc = main(["qsearch", "--latency-ms", "1000", *TINY, *FAST, "--runs-dir", str(runs), "--tables-dir", str(tables),
               "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    summary = json.loads(out)
    picks = {p["method"]: p for p in summary["picks"]}
    assert set(picks) == {"evolution", "uniform-fp32", "uniform-int8", "greedy", "ilp"}
    for pick in picks.values():
        assert pick["measured_ms"] > 0 and pick["composed_ms"] > 0
        deployed = pick["deployed"]
        ran = deployed.get("effective_precisions", pick["precisions"])  # listed when onnxruntime ran another
        assert deployed["runs_int8_as_chosen"] == (ran == pick["precisions"])
        assert all(
            r == "int8" for p, r in zip(pick["precisions"], ran, strict=True) if p == "int8"
        )  # every int8 layer does
        assert 0.0 <= deployed["runtime_top1"] <= 1.0
    assert picks["uniform-int8"]["deployed"]["int8_kernels"] == 16  # 15 convs and the classifier
    assert picks["uniform-fp32"]["deployed"]["int8_kernels"] == 0
    assert picks["uniform-int8"]["deployed"]["runs_int8_as_chosen"]
    assert picks["greedy"]["precisions"] == ["fp32"] * 16  # with room for everything, greedy reverts every layer
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert len(result["layers"]) == 16 and result["candidates"]
    for name in ("precisions_png", "pareto_png"):
        assert Path(summary["files"][name]).read_bytes()[:4] == b"\x89PNG"

    rc = main(["quantize", str(tmp_path / "out" / "arch.json"), "--out", str(tmp_path / "model.onnx"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    deployed = json.loads(out)
    winner = picks["evolution"]["precisions"]
    assert deployed["int8_layers"] == winner.count("int8") <= deployed["int8_kernels"]
    # The .tflite from the LiteRT quantizer: exactly the chosen layers carry int8 weights.
    tflite = deployed["tflite"]
    assert tflite["int8_ops"] == tflite["int8_layers"] == winner.count("int8"), tflite
    assert (tmp_path / "model.tflite").is_file() and 0.0 <= tflite["runtime_top1"] <= 1.0
    assert picks["evolution"]["tflite"]["int8_ops"] == winner.count("int8")

    # A budget nothing meets is refused from the table (measured above), before any training.
    fresh = tmp_path / "runs-unmet"
    rc = main(["qsearch", "--latency-ms", "0.0001", *TINY, *FAST, "--runs-dir", str(fresh), "--tables-dir",
               str(tables), "--out", str(tmp_path / "unmet")])  # fmt: skip
    _, err = capsys.readouterr()
    assert rc == 1 and "no assignment of fp32, int8 fits the budget" in err and "uniform int8" in err, err
    assert not (fresh / "qsupernets").exists()


@pytest.mark.slow  # a second 40 s search end to end, under a BitOps budget; run with -m slow
def test_a_bitops_search_offers_the_low_widths_and_labels_them(capsys, tmp_path):
    rc = main(["qsearch", "--bitops", "5", *TINY, "--no-validate", "--runs-dir", str(tmp_path / "runs"),
               "--out", str(tmp_path / "out"), "--json"])  # fmt: skip
    out, err = capsys.readouterr()
    assert rc == 0, err
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["choices"] == ["fp32", "int8", "int4", "int2"] and "BitOps cost only" in result["note"]
    assert all(c["bitops_g"] <= 5 for c in result["candidates"])
    assert all(c["composed_ms"] is None for c in result["candidates"] if {"int4", "int2"} & set(c["precisions"]))


def test_qsearch_without_a_budget_or_on_another_runtime_is_refused(capsys):
    rc = main(["qsearch", "--no-validate"])
    _, err = capsys.readouterr()
    assert rc != 0 and "--latency-ms and/or --bitops" in err
    rc = main(["qsearch", "--backend", "litert", "--latency-ms", "1"])
    _, err = capsys.readouterr()
    assert rc != 0 and "on onnxruntime only, not litert" in err

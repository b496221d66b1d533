"""A LiteRT predictor learned inside whole models, through benchmark_model's op profile, end to end.

The phone is this host with no Python for the runner; benchmark_model is the measuring stand-in
(tests/standins/benchmark_model_standin.py): it times each .tflite with LiteRT's Python interpreter and
prints an op profile of the file's real nodes whose split of the time over them is not measured. What is
tested is the path (rows placed on the training models' ONNX nodes, kernels learned from them), not
accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from benchmark_model_standin import write_measuring_benchmark_model

from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import stopping
from hwlab.predictors.kernels import FusionRules
from hwlab.predictors.regress import CANDIDATES
from hwlab.predictors.shapes import SposShape
from hwlab.predictors.train import FitPlan, fit_predictor
from hwlab.profile import ProfileRequest
from hwlab.tables import LookupTable

pytest.importorskip("litert_torch", reason="the TFLite exporter (hwlab[tflite]) is needed to make .tflite files")

QUICK = stopping(min_count=3, min_time_s=0.0, max_time_s=0.5)
PLAN = FitPlan(spos_shapes=(SposShape(32, 0.25, 1, 10),), spos_models=1, family_models=1, calibration_models=1,
               graph_runs=3, model_settings=QUICK, kernel_settings=QUICK, candidates=CANDIDATES[:1])  # fmt: skip


@pytest.mark.slow
def test_a_litert_fit_learns_kernels_from_the_op_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    binary = write_measuring_benchmark_model(tmp_path / "bin" / "benchmark_model")
    phone = DeviceSpec(name="phone", transport="local", source="<test>", python="/nonexistent/python3",
                       benchmark_model=str(binary), workdir=str(tmp_path / "phone"))  # fmt: skip
    base = ProfileRequest(device=phone, backend="litert", specs=[], space="", tables_root=tmp_path / "t")
    said: list[str] = []
    rules = FusionRules(frozenset({("conv", "relu"), ("conv", "relu6"), ("dwconv", "relu6")}))
    predictor = fit_predictor(base, PLAN, root=tmp_path / "p", say=said.append, rules=rules)
    meta = predictor.loaded.meta
    assert meta["targets"] == "in-graph", said
    graphs = LookupTable(Path(meta["tables"]["training-models"]["path"])).runtime_graphs()
    assert graphs and all(g.get("source") == "benchmark_model op profiling" for g in graphs.values())
    (line,) = [s for s in said if "kernel times from inside" in s]
    # The op-coverage models (PReLU, HardSigmoid, Div written as several nodes) are left out, named; the
    # SPOS, MobileNetV2, ResNet, VGG and both reparamnet models (one in train form) are placed whole.
    assert "; 2 models not mapped (the first, coverage-" in line, line
    assert line.split(" kernel times from inside ")[1].startswith("6 models"), line
    assert "conv" in predictor.loaded.ensembles

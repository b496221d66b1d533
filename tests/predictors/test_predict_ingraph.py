"""Kernels learned inside whole models: the runtime's graphs of the training models decide the fusion rules
and give each kernel its time as the runtime ran it, the profiler's cost calibrated out against the
unprofiled measurement. A real fit on this machine (onnxruntime, quick settings: what is tested is the path,
not accuracy)."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from test_predict_pipeline import unpredicted_ops

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import RoundRule, stopping
from hwlab.predictors.dataset import onnx_path, training_models
from hwlab.predictors.fusion import OVERHEAD
from hwlab.predictors.ingraph import MIN_KERNEL_MS, MeasuredGraph, event_overhead_us, in_graph_rows
from hwlab.predictors.predictor import Predictor
from hwlab.predictors.regress import CANDIDATES
from hwlab.predictors.shapes import SposShape
from hwlab.predictors.train import FitPlan, fit_predictor
from hwlab.profile import ProfileRequest
from hwlab.tables import LookupTable

# Three rounds at least, four at most (the default 10-40 is for figures): what is tested is the path.
QUICK = replace(
    stopping(min_time_s=0.01, max_time_s=0.15, ci_rel=0.05),
    rounds=RoundRule(min_rounds=3, max_rounds=4, max_time_s=0.15, ci_rel=0.05),
)
PLAN = FitPlan(spos_shapes=(SposShape(32, 0.25, 1, 10),), spos_models=2, family_models=1, calibration_models=1,
               graph_runs=5, model_settings=QUICK, fusion_settings=QUICK, candidates=CANDIDATES[:1])  # fmt: skip


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Predictor, list[str]]:
    home = tmp_path_factory.mktemp("ingraph")
    mp = pytest.MonkeyPatch()
    mp.setenv("HWLAB_CACHE", str(home / "cache"))
    base = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="", tables_root=home / "t")
    said: list[str] = []
    predictor = fit_predictor(base, PLAN, root=home / "p", say=said.append)
    yield predictor, said
    mp.undo()


def _graphs(predictor: Predictor) -> tuple[list[MeasuredGraph], float]:
    table = LookupTable(Path(predictor.loaded.meta["tables"]["training-models"]["path"]))
    rows = {r["key"]: r for r in table if r.get("status") == "ok"}
    graphs = table.runtime_graphs()
    models = training_models(PLAN.seed, PLAN.spos_models, PLAN.family_models, PLAN.spos_configs)
    assert all(m.name in graphs for m in models if m.name in rows)  # every measured model came with its graph
    measured = [MeasuredGraph.of(m.name, onnx_path(m), graphs[m.name], rows[m.name]) for m in models if m.name in rows]
    return measured, rows[OVERHEAD.key]["median_ms"]


def test_the_fit_learns_kernels_inside_whole_models(fitted) -> None:  # type: ignore[no-untyped-def]
    predictor, said = fitted
    meta = predictor.loaded.meta
    assert meta["targets"] == "in-graph" and {"training-models", "models"} <= set(meta["tables"])
    # Conv+Relu is one executed node, and the graph, not timing, says so.
    assert ("conv", "relu") in predictor.rules.fused and ("conv", "relu") in predictor.rules.seen_in_graph
    overhead = predictor.overhead
    assert overhead.per_kernel_ms >= 0 and overhead.kernel_floor == 0 and overhead.fixed_ms >= overhead.floor_ms > 0
    assert any("kernel times from inside" in line and "µs per node event" in line for line in said), said


def test_each_models_kernels_add_up_to_its_measurement(fitted) -> None:  # type: ignore[no-untyped-def]
    predictor, _ = fitted
    measured, fixed_ms = _graphs(predictor)
    assert measured and all(g.split.complete for g in measured), [g.name for g in measured if not g.split.complete]
    event_us = event_overhead_us(measured, fixed_ms)
    assert event_us >= 0
    data = in_graph_rows(measured, predictor.rules, fixed_ms, event_us)
    assert not data.models_left_out
    for g in measured:
        rows = [r for r in data.rows if r["model"] == g.name]
        floors = sum(1 for r in rows if r["median_ms"] == MIN_KERNEL_MS)
        total = sum(r["median_ms"] for r in rows)
        assert total == pytest.approx(g.measured_ms - fixed_ms, rel=1e-9, abs=floors * MIN_KERNEL_MS + 1e-9)
    # Op types the runtime always fused with a neighbour come from the same ops measured alone.
    kernels = predictor.loaded.meta["tables"].get("kernels")
    alone = [r for r in LookupTable(Path(kernels["path"])) if r.get("status") == "ok"] if kernels else []
    rows = Counter(r["op"] for r in [*data.rows, *alone])
    assert set(predictor.loaded.kernel_types) == {op for op, n in rows.items() if n >= 2}  # a regressor needs two
    assert not {r["op"] for r in alone} & {r["op"] for r in data.rows}


def test_no_prediction_is_below_the_fixed_cost_nor_pays_it_per_kernel(fitted) -> None:  # type: ignore[no-untyped-def]
    predictor, _ = fitted
    one_conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    prediction = predictor.predict(one_conv, torch.zeros(1, 3, 32, 32))
    assert prediction.total_ms >= predictor.overhead.floor_ms
    model_part = predictor.overhead(len(prediction.kernels))  # per kernel and the fixed cost, paid once
    assert prediction.total_ms == pytest.approx(
        max(sum(ms for _, ms in prediction.kernels) + model_part, predictor.overhead.floor_ms)
    )


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_common_cnn_op_alone_is_predicted(fitted) -> None:  # type: ignore[no-untyped-def]
    """Even an op the runtime always fused into a neighbour in the training models (a LeakyRelu after a
    convolution) is predicted where a model has it on its own."""
    predictor, _ = fitted
    assert not unpredicted_ops(predictor)

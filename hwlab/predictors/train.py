"""Build a predictor for one (device, backend): rules, kernels, regressors, overhead, saved.

1. Fusion rules are measured (table ``fusion``).
2. Training models are split into kernels under those rules; every distinct
   kernel is measured alone (table ``kernels``).
3. One regressor per kernel type is fitted (cross-validated choice of model).
4. Adaptive sampling, for a set number of rounds: kernels whose out-of-fold error
   exceeds 10% get neighbours (nearby configurations) measured and added.
5. Calibration models are measured end to end (table ``models``) and the
   overhead term is fitted on them (per kernel: minus the runtime's measured
   fixed cost; per model: fitted). Kernels learned inside whole models (where
   the runtime shows its graph, instead of 2) hold no fixed cost: it is paid
   once per model, with a non-negative cost per kernel, fitted on the training
   models measured whole as well (``fit_in_graph_overhead``).
Every measurement goes through ``profile`` into a resumable table, so an
interrupted fit loses nothing and a rerun measures only what is missing.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwlab.errors import InvalidRequest, PredictorError
from hwlab.export import export_module
from hwlab.measure.jobs import GraphRule
from hwlab.measure.settings import MeasureSettings, stopping
from hwlab.predictors.dataset import (
    distinct_kernels,
    kernel_item,
    model_file,
    onnx_path,
    rows_by_type,
    training_models,
)
from hwlab.predictors.extract import kernel_models
from hwlab.predictors.fusion import OVERHEAD, measure_fusion_rules
from hwlab.predictors.graph import onnx_kernels
from hwlab.predictors.ingraph import MIN_KERNEL_MS, MeasuredGraph, event_overhead_us, graph_rules, in_graph_rows
from hwlab.predictors.kernelgen import neighbour_items
from hwlab.predictors.kernels import FEATURES, FusionRules, Kernel
from hwlab.predictors.litert_kernels import is_litert_graph
from hwlab.predictors.predictor import Overhead, Predictor, predictor_dir
from hwlab.predictors.regress import CANDIDATES, FittedRegressor, fit_kernel_regressor
from hwlab.predictors.shapes import DEFAULT_SPOS_SHAPES, SposShape
from hwlab.predictors.store import load_predictor, save_predictor
from hwlab.profile import ModelItem, ProfileRequest, measurer_for, profile, shows_runtime_graph
from hwlab.progress import Progress
from hwlab.space import SposConfig
from hwlab.space.build import random_input
from hwlab.tables import LookupTable
from hwlab.zoo import FAMILIES, ZooModel, random_spos_arch, sample_family, spos_model

Say = Callable[[str], None]

NO_FUSION = FusionRules(frozenset())  # every op its own kernel


@dataclass(frozen=True)
class FitPlan:
    """How much to measure; the defaults fit a 2-core machine in minutes."""

    spos_shapes: tuple[SposShape, ...] = DEFAULT_SPOS_SHAPES
    spos_models: int = 4  # per SPOS space
    family_models: int = 8
    calibration_models: int = 6  # per family, and as many SPOS architectures
    adaptive_rounds: int = 1
    neighbours: int = 2
    adaptive_limit: int = 200  # kernels given neighbours per round at most, the worst predicted first
    candidates: tuple[dict[str, Any], ...] = CANDIDATES  # regressors cross-validated per kernel type
    seed: int = 0
    in_graph: bool = True  # learn kernels inside whole models where the runtime shows its graph
    graph_runs: int = 40  # profiled calls per captured graph (the quietest quarter are kept)
    fusion_settings: MeasureSettings = stopping(min_time_s=0.3, ci_rel=0.003)
    kernel_settings: MeasureSettings = stopping(min_time_s=0.05, max_time_s=1.0, ci_rel=0.03)
    model_settings: MeasureSettings = stopping(min_time_s=0.2, max_time_s=3.0)

    def __post_init__(self) -> None:  # read back from a predictor's JSON, shapes are lists or objects
        shapes = tuple(
            s if isinstance(s, SposShape) else SposShape(**s) if isinstance(s, dict) else SposShape(*s)
            for s in self.spos_shapes
        )
        if not shapes:
            raise InvalidRequest("a fit needs at least one SPOS space", hint="e.g. --spos-space 32,0.25,1,10")
        object.__setattr__(self, "spos_shapes", shapes)

    @property
    def spos_configs(self) -> list[SposConfig]:
        return [shape.config() for shape in self.spos_shapes]

    def to_json(self) -> dict[str, Any]:
        """The plan as a predictor's metadata keeps it (measuring settings left out)."""
        plain = {k: v for k, v in self.__dict__.items() if not isinstance(v, MeasureSettings)}
        return {**plain, "spos_shapes": [s.__dict__ for s in self.spos_shapes], "candidates": list(self.candidates)}


def model_item(model: ZooModel) -> ModelItem:
    """A whole model to measure end to end; its row keeps the family and MACs."""
    fields = {"op": "model", "family": model.family, "macs": model.macs, "input_h": model.input_shape[2]}
    # Built only when exported: a few hundred models held at once would cost gigabytes.
    return ModelItem(
        model.name,
        fields,
        lambda fmt: export_module(model.build(), random_input(model.input_shape), fmt, name=model.name),
    )


def calibration_models(plan: FitPlan, seed: int) -> list[ZooModel]:
    """``calibration_models`` SPOS architectures spread over the plan's spaces, and as many of each family."""
    rng = random.Random(seed)
    configs = plan.spos_configs
    spos = [spos_model(c, *random_spos_arch(rng, c)) for i in range(plan.calibration_models)
            for c in [configs[i % len(configs)]]]  # fmt: skip
    return spos + [m for f in FAMILIES for m in sample_family(f, plan.calibration_models, seed)]


def fit_overhead(
    sums_ms: np.ndarray, counts: np.ndarray, measured_ms: np.ndarray, fixed_cost_ms: float | None = None
) -> Overhead:
    """Least squares on relative error: measured ≈ sum + per_kernel * count + fixed.

    With the runtime's measured fixed cost, per_kernel is minus that cost and only ``fixed`` is fitted,
    no lower than that cost (a whole model pays it once; a lower fit would predict a one-kernel model
    below what any inference takes). Without it both are fitted, ``fixed`` no lower than 0.
    """
    weights = 1.0 / measured_ms
    if fixed_cost_ms is not None:
        residual = (measured_ms - sums_ms + fixed_cost_ms * counts) * weights
        fixed = float(np.sum(residual * weights) / np.sum(weights**2))
        return Overhead(-fixed_cost_ms, max(fixed, fixed_cost_ms), fixed_cost_ms)
    A = np.stack([counts * weights, weights], axis=1)
    b = (measured_ms - sums_ms) * weights
    (per_kernel, fixed), *_ = np.linalg.lstsq(A, b, rcond=None)
    if fixed < 0:  # refit per_kernel alone with fixed at its bound
        fixed = 0.0
        per_kernel = float(np.sum(b * counts * weights) / np.sum((counts * weights) ** 2))
    return Overhead(float(per_kernel), float(fixed))


def _fit_all(rows: list[dict[str, Any]], plan: FitPlan) -> dict[str, FittedRegressor]:
    return {
        t: fit_kernel_regressor(d.X, d.y_ms, seed=plan.seed, candidates=plan.candidates)
        for t, d in rows_by_type(rows).items()
        if len(d.y_ms) >= 2
    }


def _poorly_predicted(rows: list[dict[str, Any]], seed: int, tolerance: float = 0.10) -> list[dict[str, Any]]:
    """Rows whose out-of-fold prediction misses by more than ``tolerance`` (a quick forest per type), the
    worst first."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import cross_val_predict

    poor: list[dict[str, Any]] = []
    by_key = {r["key"]: r for r in rows}
    for data in rows_by_type(rows).values():
        if len(data.y_ms) < 5:
            continue
        forest = RandomForestRegressor(n_estimators=100, random_state=seed)
        folds = min(5, len(data.y_ms))
        predicted = np.exp(cross_val_predict(forest, np.log1p(data.X), np.log(data.y_ms), cv=folds))
        errors = np.abs(predicted - data.y_ms) / data.y_ms
        poor += [(float(e), by_key[k]) for k, e in zip(data.keys, errors, strict=True) if e > tolerance]
    return [row for _, row in sorted(poor, key=lambda pair: -pair[0])]


def _neighbour_items(rows: list[dict[str, Any]], rules: FusionRules, plan: FitPlan, round_: int) -> list[ModelItem]:
    rng = random.Random(plan.seed * 1000 + round_)
    items: dict[str, ModelItem] = {}
    for row in rows:
        kernel = Kernel(row["op"], (), {f: float(row.get(f) or 0.0) for f in FEATURES})
        for name, module, inputs in neighbour_items(kernel, rules, rng, plan.neighbours):
            path = export_module(module, inputs, "onnx", name=name).path
            for km in kernel_models(path, rules):
                if km.kernel.type == kernel.type:
                    items.setdefault(km.key, kernel_item(km))
    return list(items.values())


def fit_predictor(
    base: ProfileRequest,
    plan: FitPlan = FitPlan(),
    *,
    root: Path = Path("predictors"),
    say: Say = print,
    progress: Progress | None = None,
    rules: FusionRules | None = None,
) -> Predictor:
    """Measure what is missing, fit, calibrate and save ``predictors/<device>/<backend>/``.

    ``rules``: the runtime's fusion rules when they are known already (then they are not measured; without
    their evidence the overhead's per-kernel term is fitted too). Where the runtime shows its graph
    (onnxruntime; LiteRT through benchmark_model's op profile) and ``plan.in_graph``, kernels are learned
    from inside whole training models (ingraph.py); elsewhere from kernels measured alone.
    """
    device, backend = base.device.name, base.backend
    if rules is None:
        say("measuring fusion rules")
        # Fusion decides kernel boundaries: measured with the careful default rules, not the quick kernel ones.
        fusion = replace(base, settings=plan.fusion_settings, table_name="fusion")
        rules = measure_fusion_rules(fusion, progress=progress)
    say(f"fused pairs: {', '.join('+'.join(p) for p in sorted(rules.fused)) or 'none'}")

    models = training_models(plan.seed, plan.spos_models, plan.family_models, plan.spos_configs)
    if plan.in_graph and shows_runtime_graph(backend, measurer_for(base.device, backend)):
        fitted = _fit_in_graph(base, plan, models, rules, say, progress)
    else:
        fitted = _fit_standalone(base, plan, models, rules, say, progress)
    regressors, rules, tables = fitted.regressors, fitted.rules, fitted.tables
    say(f"fitted {len(regressors)} kernel types")

    calibration = calibration_models(plan, plan.seed + 1)
    # The runtime's fixed cost is measured with the whole models, in their rounds: their own scale.
    model_report = profile(
        replace(base, specs=[OVERHEAD, *(model_item(m) for m in calibration)], space="models", table_name="models",
                settings=plan.model_settings),
        progress,
    )  # fmt: skip
    measured = {r["key"]: r for r in LookupTable(model_report.table.folder) if r.get("status") == "ok"}
    fixed_cost = rules.fixed_cost_ms
    if OVERHEAD.key in measured:
        fixed_cost = measured[OVERHEAD.key]["median_ms"]
    folder = predictor_dir(root, device, backend)
    meta = {
        "device": device,
        "backend": backend,
        "plan": plan.to_json(),
        "targets": fitted.targets,
        "tables": {**tables, "models": _table_ref(model_report.table.folder)},
    }
    save_predictor(folder, regressors, rules, meta)  # without overhead, to predict the calibration sums
    raw = Predictor(load_predictor(folder))
    # Every model measured whole tells the model-level term: the calibration models, and the training models
    # where they were measured whole too (in-graph).
    whole = [(m, measured[m.name]["median_ms"]) for m in calibration if m.name in measured] + fitted.measured_whole
    sums, counts, times = [], [], []
    for model, ms_measured in whole:
        kernels = onnx_kernels(onnx_path(model), rules)
        ms, _ = raw.kernel_ms(kernels, allow_unknown=True)
        sums.append(sum(ms))
        counts.append(len(kernels))
        times.append(ms_measured)
    if fitted.targets == "in-graph":
        overhead = fit_in_graph_overhead(np.array(sums), np.array(counts), np.array(times), fixed_cost)
    else:
        overhead = fit_overhead(np.array(sums), np.array(counts), np.array(times), fixed_cost)
    say(f"overhead: {overhead.per_kernel_ms * 1000:.2f} µs per kernel, {overhead.fixed_ms * 1000:.1f} µs fixed")
    save_predictor(folder, regressors, rules, {**meta, "overhead": overhead.__dict__})
    return Predictor(load_predictor(folder))


@dataclass(frozen=True)
class _Fitted:
    regressors: dict[str, FittedRegressor]
    rules: FusionRules
    tables: dict[str, dict[str, str]]
    targets: str  # "in-graph" or "standalone"
    measured_whole: list[tuple[ZooModel, float]] = field(default_factory=list)  # training models timed whole (ms)


def _fit_standalone(
    base: ProfileRequest, plan: FitPlan, models: list[ZooModel], rules: FusionRules, say: Say,
    progress: Progress | None,
) -> _Fitted:  # fmt: skip
    """Every distinct kernel of the training models measured alone (table ``kernels``), adaptive rounds."""
    items = distinct_kernels(models, rules)
    say(f"{len(items)} distinct kernels in {len(models)} training models")
    kernel_request = replace(base, specs=items, space="kernels", table_name="kernels", settings=plan.kernel_settings)
    report = profile(kernel_request, progress)
    table = report.table
    wanted = {i.key for i in items}
    for round_ in range(plan.adaptive_rounds):
        rows = [r for r in LookupTable(table.folder) if r["key"] in wanted]
        poor = _poorly_predicted(rows, plan.seed)
        extra = _neighbour_items(poor[: plan.adaptive_limit], rules, plan, round_)
        say(f"adaptive round {round_ + 1}: {len(poor)} kernels off by > 10%, {len(extra)} neighbours to measure")
        if not extra:
            break
        profile(replace(kernel_request, specs=extra), progress)
        wanted |= {i.key for i in extra}
    rows = [r for r in LookupTable(table.folder) if r["key"] in wanted]
    return _Fitted(_fit_all(rows, plan), rules, {"kernels": _table_ref(table.folder)}, "standalone")


def _fit_in_graph(
    base: ProfileRequest, plan: FitPlan, models: list[ZooModel], rules: FusionRules, say: Say,
    progress: Progress | None,
) -> _Fitted:  # fmt: skip
    """The training models measured whole with the runtime's graphs (table ``training-models``); rules and
    kernel times from inside them (ingraph.py)."""
    say(f"measuring {len(models)} training models whole, with the runtime's graphs")
    report = profile(
        replace(base, specs=[OVERHEAD, *(model_item(m) for m in models)], space="models",
                table_name="training-models", settings=plan.model_settings,
                runtime_graph=GraphRule(runs=plan.graph_runs)),
        progress,
    )  # fmt: skip
    table = LookupTable(report.table.folder)
    rows = {r["key"]: r for r in table if r.get("status") == "ok"}
    graphs = table.runtime_graphs()
    if OVERHEAD.key not in rows:
        raise PredictorError(
            "the runtime's fixed cost could not be measured", hint=f"see hwlab tables show {report.table.folder}"
        )
    fixed_ms = rows[OVERHEAD.key]["median_ms"]
    measured = [
        MeasuredGraph.of(
            m.name,
            onnx_path(m),
            graphs[m.name],
            rows[m.name],
            model_file(m, "tflite") if is_litert_graph(graphs[m.name]) else None,
        )
        for m in models
        if m.name in rows and m.name in graphs
    ]
    rules = graph_rules(measured, rules)
    say(f"fused pairs, as the runtime's graphs show them: {', '.join('+'.join(p) for p in sorted(rules.fused))}")
    event_us = event_overhead_us(measured, fixed_ms)
    data = in_graph_rows(measured, rules, fixed_ms, event_us)
    unmapped = ""
    if data.models_left_out:
        first = next(g for g in measured if g.name == data.models_left_out[0])
        why = f": {first.split.unplaced[0]}" if first.split.unplaced else ""
        unmapped = f"; {len(data.models_left_out)} models not mapped (the first, {first.name}{why})"
    say(
        f"{len(data.rows)} kernel times from inside {len(measured) - len(data.models_left_out)} models (profiler:"
        f" {event_us:.2f} µs per node event, calibrated out); {data.kernels_shared} of them ran inside one node"
        f" with another kernel (its time shared by work){unmapped}"
    )
    if not data.rows:
        raise PredictorError("no kernel times could be taken from the runtime's graphs",
                             hint="fit with kernels measured alone: hwlab predictors fit --standalone")  # fmt: skip
    tables = {"training-models": _table_ref(table.folder)}
    alone, folder = _single_ops_alone(base, plan, models, {r["op"] for r in data.rows}, fixed_ms, progress)
    if folder is not None:
        say(f"{len(alone)} kernels of op types the runtime always fused with a neighbour, measured alone")
        tables["kernels"] = _table_ref(folder)
    whole = [(m, rows[m.name]["median_ms"]) for m in models if m.name in rows]
    return _Fitted(_fit_all([*data.rows, *alone], plan), rules, tables, "in-graph", whole)


def _single_ops_alone(
    base: ProfileRequest, plan: FitPlan, models: list[ZooModel], learned: set[str], fixed_ms: float,
    progress: Progress | None,
) -> tuple[list[dict[str, Any]], Path | None]:  # fmt: skip
    """Rows (and their table) for the op types that the training models never ran on their own (a LeakyRelu,
    a Tanh the runtime always fused into the convolution before it): each such op of the models measured
    alone, less the runtime's fixed cost, so a model that has one on its own is still predicted."""
    items = [item for item in distinct_kernels(models, NO_FUSION) if item.fields["op"] not in learned]
    if not items:
        return [], None
    report = profile(replace(base, specs=items, space="kernels", table_name="kernels", settings=plan.kernel_settings),
                     progress)  # fmt: skip
    wanted = {item.key for item in items}
    rows = [
        {**row, "median_ms": max(row["median_ms"] - fixed_ms, MIN_KERNEL_MS)}
        for row in LookupTable(report.table.folder)
        if row["key"] in wanted and row.get("status") == "ok" and row.get("median_ms")
    ]
    return rows, report.table.folder


def fit_in_graph_overhead(
    sums_ms: np.ndarray, counts: np.ndarray, measured_ms: np.ndarray, fixed_cost_ms: float | None
) -> Overhead:
    """A model is its in-graph kernels, ``per_kernel`` for each and ``fixed`` once: non-negative least squares
    on relative error, ``fixed`` no lower than the measured fixed cost of one inference (every training
    model's kernel times were taken less it), and no prediction below that cost.

    Why a per-kernel term: a training model's kernel times are scaled to add up to its measurement, so what
    no node's time holds (the executor's dispatch from one node to the next) goes to its kernels in
    proportion to their time. A regressor averages a kernel over models of every grain, so a model of many
    tiny kernels (SPOS at 32x32, width 0.25: 154 kernels in 0.27 ms) came out 4% short without it.
    """
    from scipy.optimize import nnls

    floor = fixed_cost_ms or 0.0
    if not len(sums_ms):
        return Overhead(0.0, floor, floor, kernel_floor_ms=0.0)
    weights = 1.0 / measured_ms
    terms = np.stack([counts * weights, weights], axis=1)
    (per_kernel, extra), _ = nnls(terms, (measured_ms - sums_ms - floor) * weights)
    return Overhead(float(per_kernel), floor + float(extra), floor, kernel_floor_ms=0.0)


def _table_ref(folder: Path) -> dict[str, str]:
    return {"path": str(folder), "sha256": _sha256(folder / "ops.jsonl")}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""

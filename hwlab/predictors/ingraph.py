"""Kernel latencies as the runtime runs them inside whole models: the training signal where a runtime shows
its graph.

A kernel measured alone is not the kernel inside a model. Alone, onnxruntime converts its input to the
blocked layout and back (the NCHWc reorders: about a quarter of a small convolution's time here) and
cannot fuse it with what follows; inside a model the layout stays blocked from one convolution to the next
and a residual Add runs inside the convolution before it. So where the runner captured the runtime's graph
of a whole measured model (runtime_kernels.py maps onnxruntime's onto the model's nodes, litert_split.py
LiteRT's op profile from benchmark_model), each kernel's training target is its time inside that graph:

1. The model is split into kernels under the fusion rules, which the runtime's graphs of these same models
   decided (``graph_rules``), so kernels and executed nodes mostly coincide. A kernel gets the time of the
   executed nodes that run its ONNX nodes, their reorders included. Where the runtime ran several kernels
   as one node (a residual Add inside the convolution in one block but not in another; a channel shuffle
   rewritten as one Reshape and a Split), that node's time is shared among them in proportion to their
   work (flops plus bytes moved), and the count of such kernels is reported.
2. The profiler's own cost is calibrated out against the unprofiled measurement of the same model: every
   profiled node event carries an overhead (µs; 3.5 to 7 here, as much as a small kernel, varying with
   the machine's state), this model's own, solved so that its nodes add up to its unprofiled time as
   measured (``event_overhead_us``, fitted over all models, where that is not possible). Each node is then
   moved onto the device's reference state by its own grain (µs per node, hwlab.measure.speed): the
   measuring run's state slows a 2 µs node more than a 1 ms one, so a model's one correction factor would
   leave its small kernels too fast and its large ones too slow next to the same kernels in models of
   another grain. What remains is scaled so that the model's kernels add up to its measured
   (drift-corrected) latency less the runtime's fixed cost of one inference, which is added once per
   prediction, never per kernel.
3. A kernel the runtime never executed (a Reshape it turned into a view, a Flatten it removed) takes
   no time in the graph; it is kept as a row of ``MIN_KERNEL_MS``, so its type is still predicted (as next
   to nothing).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwlab.errors import PredictorError
from hwlab.measure.speed import fit_line
from hwlab.predictors.graph import view_kernels
from hwlab.predictors.graph_load import GraphView, build_view, load_model
from hwlab.predictors.graph_ops import build_ops
from hwlab.predictors.kernels import FusionRules
from hwlab.predictors.litert_kernels import is_litert_graph
from hwlab.predictors.litert_split import litert_split
from hwlab.predictors.runtime_kernels import RuntimeSplit, fused_pairs, runtime_split
from hwlab.predictors.tflite_graph import read_tflite_nodes

MIN_KERNEL_MS = 1e-4  # 0.1 µs: a kernel the runtime did not execute


@dataclass(frozen=True)
class MeasuredGraph:
    """A whole model measured end to end with the runtime's graph captured, mapped onto its nodes."""

    name: str
    view: GraphView
    split: RuntimeSplit
    measured_ms: float  # unprofiled, on the reference scale (a floor row: its quiet-state figure)
    raw_ms: float  # unprofiled, in the state the graph was profiled in (not yet on the reference scale)

    @classmethod
    def of(
        cls, name: str, path: Path | str, graph: dict[str, Any], row: dict[str, Any], tflite: Path | str | None = None
    ) -> MeasuredGraph:
        """From a table row of the model and its captured graph: onnxruntime's, or LiteRT's op profile of the
        ``tflite`` file that was measured (litert_split.py). The runner profiles the graph's quiet runs,
        so a floor row's figure before its speed factor is the unprofiled time in that state; an older row's
        raw median is the nearest there is."""
        view = build_view(load_model(path))
        if is_litert_graph(graph):
            if tflite is None:
                raise PredictorError(f"{name}: a LiteRT op profile is placed through the .tflite that was measured",
                                     hint="pass the model's .tflite beside its .onnx")  # fmt: skip
            split = litert_split(view, read_tflite_nodes(tflite), graph)
        else:
            split = runtime_split(view, graph)
        measured = float(row["median_ms"])
        if str(row.get("correction") or "").startswith("floor"):
            raw = measured * float(row.get("speed_factor") or 1.0)
        else:
            raw = float(row.get("raw_median_ms") or measured)
        return cls(name, view, split, measured, raw)

    @property
    def events(self) -> int:
        return sum(unit.events for unit in self.split.units)

    @property
    def nodes(self) -> int:
        """Its ONNX nodes, Constant nodes left out: the count its grain is taken over, as when it was measured."""
        return sum(1 for node in self.view.nodes if node.op_type != "Constant")

    @property
    def profiled_us(self) -> float:
        return sum(unit.time_us + unit.layout_us for unit in self.split.units)


def graph_rules(graphs: Sequence[MeasuredGraph], base: FusionRules) -> FusionRules:
    """``base`` with every category pair the graphs show decided by them: fused when the runtime ran the two
    ops as one node more often than as two (a tie decides nothing)."""
    seen: Counter[tuple[str, str, bool]] = Counter()
    for g in graphs:
        if g.split.complete:
            ops, _ = build_ops(g.view)
            seen += fused_pairs(ops, g.view, g.split)
    pairs = {(a, b) for a, b, _ in seen}
    decided = {p: seen[(*p, True)] > seen[(*p, False)] for p in pairs if seen[(*p, True)] != seen[(*p, False)]}
    fused = {p for p in base.fused if p not in decided} | {p for p, f in decided.items() if f}
    return FusionRules(frozenset(fused), base.alpha, base.evidence, base.seen_in_graph | frozenset(decided))


def event_overhead_us(graphs: Sequence[MeasuredGraph], fixed_ms: float) -> float:
    """The profiler's cost per node event (µs), never negative: least squares on relative error of
    profiled node sum - unprofiled time as measured (less the fixed cost) = e * events over the models. Models
    of many small nodes tell it; a model of a few large ones mostly shows the drift between its measurement
    and its profiling, and weighs little."""
    used = [g for g in graphs if g.split.complete and g.events and g.raw_ms > fixed_ms]
    if not used:
        return 0.0
    unprofiled = np.array([(g.raw_ms - fixed_ms) * 1000.0 for g in used])
    extra = np.array([g.profiled_us for g in used]) - unprofiled
    events = np.array([g.events for g in used], dtype=float)
    weights = 1.0 / unprofiled**2
    return max(float(np.sum(extra * events * weights) / np.sum(events**2 * weights)), 0.0)


@dataclass(frozen=True)
class InGraphRows:
    """Training rows (shaped as table rows: key, op, features, median_ms) and what was left out."""

    rows: list[dict[str, Any]]
    kernels_shared: int  # kernels whose executed node ran other kernels too (its time shared by work)
    models_left_out: list[str]  # graphs that could not be mapped, or whose calibration failed


def grain_slope(graphs: Sequence[MeasuredGraph]) -> tuple[float, float, float]:
    """(slope, finest, coarsest grain) of log(raw / corrected) over log(raw µs per node) across the models:
    how much more the measuring run's machine state moved fine-grained work than coarse (hwlab.measure.speed);
    slope 0 when the models tell none."""
    points = [
        (math.log(g.raw_ms * 1000.0 / g.nodes), math.log(g.raw_ms / g.measured_ms))
        for g in graphs
        if g.nodes and g.raw_ms > 0 and g.measured_ms > 0
    ]
    grains = [p for p, _ in points]
    fitted = fit_line(points)
    return (0.0 if fitted is None else fitted[1]), min(grains, default=0.0), max(grains, default=0.0)


def in_graph_rows(graphs: Sequence[MeasuredGraph], rules: FusionRules, fixed_ms: float, event_us: float) -> InGraphRows:
    """Every kernel of every mapped model with its calibrated time inside the model (see the module doc)."""
    rows: list[dict[str, Any]] = []
    shared, bad = 0, []
    slope, finest, coarsest = grain_slope(graphs)
    for g in graphs:
        net = _unprofiled(g, fixed_ms, event_us)
        target_us = (g.measured_ms - fixed_ms) * 1000.0
        if not g.split.complete or sum(net) <= 0 or target_us <= 0 or not g.nodes:
            bad.append(g.name)
            continue
        # Onto the reference state node by node, each by its own grain: the model's factor at its grain,
        # moved along the slope to the node's (a tiny node slowed more than the model as a whole).
        model_factor = g.raw_ms / g.measured_ms
        model_grain = math.log(g.raw_ms * 1000.0 / g.nodes)
        ref = [
            t / (model_factor * math.exp(slope * (min(max(math.log(t / u.events), finest), coarsest) - model_grain)))
            if t > 0 else 0.0
            for t, u in zip(net, g.split.units, strict=True)
        ]  # fmt: skip
        if sum(ref) <= 0:
            bad.append(g.name)
            continue
        unit_of = g.split.unit_of()
        kernels = view_kernels(g.view, rules, allow_unknown=True)
        units_of = [{unit_of[n] for n in nodes if n in unit_of} for _, nodes in kernels]
        # Executed nodes that run no kernel's node (what the runtime computes of shapes hwlab folds) are part
        # of the model's time too: the scale spreads them over the kernels.
        touched = set().union(*units_of) if units_of else set()
        if sum(ref[u] for u in touched) <= 0:
            bad.append(g.name)
            continue
        net = ref
        scale = target_us / sum(net[u] for u in touched)
        work = [1.0 + kernel.features.get("flops", 0.0) + _bytes(kernel.features) for kernel, _ in kernels]
        work_on: dict[int, float] = {}  # per executed node, the work of the kernels it ran
        for k, units in enumerate(units_of):
            for u in units:
                work_on[u] = work_on.get(u, 0.0) + work[k]
        for k, (kernel, _) in enumerate(kernels):
            units = units_of[k]
            shared += any(work_on[u] > work[k] for u in units)
            share_us = sum(net[u] * work[k] / work_on[u] for u in units)
            ms = max(share_us * scale / 1000.0, MIN_KERNEL_MS)
            rows.append(
                {"key": f"{g.name}#{k}", "op": kernel.type, **kernel.features, "median_ms": ms, "status": "ok",
                 "model": g.name}
            )  # fmt: skip
    return InGraphRows(rows, shared, bad)


# What is left of a node's profiled time at most: the profiler's cost is part of every node's time, never all.
_KEEP_AT_LEAST = 0.25


def _unprofiled(g: MeasuredGraph, fixed_ms: float, event_us: float) -> list[float]:
    """Each executed node's time less the profiler's cost per event: ``event_us``, or this model's own where
    that does not bring its nodes down to its unprofiled time as measured (the cost varies with the
    machine's state; solved so that they add up to it, by bisection), each node keeping a quarter at least."""
    times = [u.time_us + u.layout_us for u in g.split.units]
    events = [u.events for u in g.split.units]

    def left(e: float) -> float:
        return sum(max(t - e * n, _KEEP_AT_LEAST * t) for t, n in zip(times, events, strict=True))

    target = (g.raw_ms - fixed_ms) * 1000.0
    e = event_us
    if left(0.0) > target > left(max(times, default=0.0)):
        low, high = 0.0, max(times)
        for _ in range(60):
            e = (low + high) / 2.0
            low, high = (e, high) if left(e) > target else (low, e)
    elif left(0.0) <= target:
        e = 0.0  # nothing to take off: the profiled nodes already fall short (the rest is the model's scale)
    return [max(t - e * n, _KEEP_AT_LEAST * t) for t, n in zip(times, events, strict=True)]


def _bytes(features: dict[str, float]) -> float:
    return features.get("bytes_in", 0.0) + features.get("bytes_out", 0.0)

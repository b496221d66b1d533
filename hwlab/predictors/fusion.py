"""Find which op pairs a device's runtime fuses, into FusionRules: from its own graph where it shows one,
by timing (nn-Meter's test) elsewhere.

For each candidate pair (first, second) and each probe shape, three models are
measured through the normal profiling path: first alone, second alone, and the
chain. Every measurement lands in the table ``tables/<device>/<backend>/fusion``
like any other row, so an interrupted probe resumes and nothing measured is lost.

* The runtime's graph (onnxruntime): the chain's measurement comes with the graph the runtime executed
  (runtime_kernels.py maps it onto the model). The pair is fused when the runtime ran both ops as one
  node, in most probe shapes. This is what the device does, not an inference from times, so two fits
  minutes apart agree.
* The executed nodes (LiteRT through benchmark_model's op profiling): fused when the chain ran as fewer
  kernels than its two ops alone, in most probe shapes (litert_kernels.py).
* Timing, for pairs the graph does not decide (a runtime that shows no graph, a pair the exporter already
  merged): fused when T1 + T2 - T12 > alpha * min(T1, T2), with the times the medians over the probe
  shapes, each less the fixed cost of one inference (measured on a model that does almost nothing).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from hwlab.measure.jobs import GraphRule
from hwlab.predictors.graph_load import build_view, load_model
from hwlab.predictors.graph_ops import build_ops
from hwlab.predictors.kernels import DEFAULT_ALPHA, FusionEvidence, FusionRules
from hwlab.predictors.litert_kernels import fused_vote, is_litert_graph
from hwlab.predictors.probes import Probe, probe_inputs
from hwlab.predictors.runtime_kernels import fused_pairs, runtime_split
from hwlab.profile import ModelItem, ProfileRequest, profile
from hwlab.progress import Progress
from hwlab.transport import Transport

# (first, second) pairs whose fusion matters for CNNs: conv/dwconv/fc followed by
# normalisation, activations, residual add, concat, pooling and channel shuffle; a conv of computed weights
# (dynconv) followed by ReLU, which onnxruntime fuses though it leaves that conv out of its blocked layout.
PAIRS: tuple[tuple[str, str], ...] = (
    *((first, second) for first in ("conv", "dwconv")
      for second in ("bn", "relu", "relu6", "hswish", "add", "concat", "maxpool", "avgpool", "reshape")),
    ("dynconv", "relu"), ("fc", "relu"), ("fc", "relu6"), ("fc", "hswish"), ("fc", "add"),
    ("add", "relu"), ("add", "relu6"), ("bn", "relu"), ("bn", "relu6"),
)  # fmt: skip
# (spatial size, channels) of the probes: wide and thin, so that the second op of a pair (an activation on
# every element) costs a larger share of the first (a 3x3 conv costs 9*C multiply-adds per element): measured
# here, a ReLU adds about 2% to the conv at 28x28x32, within the run-to-run noise, and about 3.5% at 56x56x8.
SHAPES: tuple[tuple[int, int], ...] = ((56, 8), (56, 16))
# The runtime's graph with each probe: a few profiled calls suffice, only which nodes ran matters here.
GRAPH_RULE = GraphRule(runs=5, warmup=2)


def _item(first: str | None, second: str | None, size: int, channels: int) -> ModelItem:
    """One probe model; anything paired with fc works on (1, C) activations."""
    flat = "fc" in (first, second) or size == 1
    side = 1 if flat else size
    parts = "+".join(p for p in (first, second) if p)
    key = f"fusion-{parts}-input:{side}x{side}x{channels}"
    fields = {"op": parts, "first": first, "second": second, "input_h": side, "input_w": side, "cin": channels}
    module = Probe(first, second, channels).eval()
    return ModelItem.of_module(key, module, probe_inputs(first, second, side, channels, flat), fields)


def _probe_keys(first: str, second: str, size: int, channels: int) -> tuple[ModelItem, ModelItem, ModelItem]:
    """(first alone, second alone on first's output, the pair)."""
    side = 1 if first == "fc" else size
    return _item(first, None, size, channels), _item(None, second, side, channels), _item(first, second, size, channels)


# A model that does almost nothing (a ReLU on one number): its latency is the runtime's fixed cost.
OVERHEAD = _item(None, "relu", 1, 1)


def probe_items(
    pairs: Sequence[tuple[str, str]] = PAIRS, shapes: Sequence[tuple[int, int]] = SHAPES
) -> list[ModelItem]:
    """Every model the probe measures: the fixed-cost model, each op alone (once per shape) and each pair."""
    items: dict[str, ModelItem] = {OVERHEAD.key: OVERHEAD}
    for size, channels in shapes:
        for first, second in pairs:
            for item in _probe_keys(first, second, size, channels):
                items.setdefault(item.key, item)
    return list(items.values())


def graph_decisions(
    graphs: dict[str, dict[str, Any]],
    pairs: Sequence[tuple[str, str]] = PAIRS,
    shapes: Sequence[tuple[int, int]] = SHAPES,
) -> dict[tuple[str, str], bool]:
    """Each pair the runtime's captured graphs decide: fused when it ran the two ops as one node in most probe
    shapes (a tie, a graph that cannot be mapped or a pair not in the exported graph decides nothing)."""
    decided: dict[tuple[str, str], bool] = {}
    for first, second in pairs:
        votes = []
        for size, channels in shapes:
            alone_first, alone_second, item = _probe_keys(first, second, size, channels)
            if item.key not in graphs:
                continue
            if is_litert_graph(graphs[item.key]):
                vote = fused_vote(graphs.get(alone_first.key, {}), graphs.get(alone_second.key, {}), graphs[item.key])
                if vote is not None:
                    votes.append(vote)
                continue
            view = build_view(load_model(item.export("onnx").path))
            ops, _ = build_ops(view)
            split = runtime_split(view, graphs[item.key])
            if not split.complete:
                continue
            seen = fused_pairs(ops, view, split)
            together, apart = seen[(first, second, True)], seen[(first, second, False)]
            if together != apart:
                votes.append(together > apart)
        if votes and 2 * sum(votes) != len(votes):
            decided[(first, second)] = 2 * sum(votes) > len(votes)
    return decided


def rules_from_table(
    rows: dict[str, dict],  # type: ignore[type-arg]
    pairs: Sequence[tuple[str, str]] = PAIRS,
    shapes: Sequence[tuple[int, int]] = SHAPES,
    alpha: float = DEFAULT_ALPHA,
    graphs: dict[str, dict[str, Any]] | None = None,
) -> FusionRules:
    """Decide each pair from the runtime's graphs where they show it, else from measured rows (medians over
    the probe shapes); unmeasured pairs decide nothing."""
    by_graph = graph_decisions(graphs, pairs, shapes) if graphs else {}
    timed = _timed_rules(rows, pairs, shapes, alpha)
    fused = {p for p in timed.fused if p not in by_graph} | {p for p, f in by_graph.items() if f}
    return FusionRules(frozenset(fused), alpha, timed.evidence, frozenset(by_graph))


def _timed_rules(
    rows: dict[str, dict],  # type: ignore[type-arg]
    pairs: Sequence[tuple[str, str]],
    shapes: Sequence[tuple[int, int]],
    alpha: float,
) -> FusionRules:
    if rows.get(OVERHEAD.key, {}).get("status") != "ok":
        return FusionRules.from_evidence([], alpha)
    overhead = rows[OVERHEAD.key]["median_ms"]
    evidence = []
    for first, second in pairs:
        probes = [_probe_keys(first, second, s, c) for s, c in shapes]
        keys = [[p[i].key for p in probes] for i in range(3)]
        if not all(rows.get(k, {}).get("status") == "ok" for ks in keys for k in ks):
            continue
        t1, t2, t12 = (statistics.median(rows[k]["median_ms"] for k in ks) for ks in keys)
        evidence.append(FusionEvidence(first, second, t1, t2, t12, overhead))
    return FusionRules.from_evidence(evidence, alpha)


def measure_fusion_rules(
    request: ProfileRequest,
    pairs: Sequence[tuple[str, str]] = PAIRS,
    shapes: Sequence[tuple[int, int]] = SHAPES,
    alpha: float = DEFAULT_ALPHA,
    progress: Progress | None = None,
    transport: Transport | None = None,
) -> FusionRules:
    """Profile the probes on the request's device and backend (table ``fusion``), with the runtime's graphs
    where it shows them, and decide the rules."""
    request = replace(
        request, specs=probe_items(pairs, shapes), space="fusion", table_name=request.table_name or "fusion",
        runtime_graph=request.runtime_graph or GRAPH_RULE,
    )  # fmt: skip
    report = profile(request, progress, transport=transport)
    return rules_from_table(report.table.rows(), pairs, shapes, alpha, report.table.runtime_graphs())

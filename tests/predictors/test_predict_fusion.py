"""Fusion rules: probes measured on onnxruntime, and the decision made exactly from rows."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.predictors.fusion import OVERHEAD, graph_decisions, measure_fusion_rules, probe_items, rules_from_table
from hwlab.predictors.kernels import FusionEvidence, FusionRules
from hwlab.profile import ProfileRequest
from hwlab.tables import LookupTable, TableId


def test_the_probe_measures_every_model_on_the_runtime_and_decides_from_those_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which pairs a runtime fuses by timing is decided near the noise, so it is no test's business to expect
    one answer from timings: the decision rule is tested on fixed rows below. The runtime's graph is what it
    did: Conv+Relu is one node."""
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    pairs = [("conv", "relu"), ("add", "relu")]
    request = ProfileRequest(
        device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="fusion", tables_root=tmp_path / "t",
        settings=stopping(min_time_s=0.02, max_time_s=0.2, min_count=5),
    )  # fmt: skip
    rules = measure_fusion_rules(request, pairs=pairs)
    table = LookupTable.at(tmp_path / "t", TableId("local", "onnxruntime", "fusion"))
    assert table.keys("ok") == {item.key for item in probe_items(pairs)}
    assert rules == rules_from_table(table.rows(), pairs, graphs=table.runtime_graphs())
    assert {(e.first, e.second) for e in rules.evidence} == set(pairs)
    assert all(e.overhead_ms > 0 and e.t_pair_ms > 0 for e in rules.evidence)
    # onnxruntime shows its graph: it ran Conv+Relu as one FusedConv, whatever the timings said.
    assert table.keys() <= set(table.runtime_graphs())
    assert ("conv", "relu") in rules.seen_in_graph and rules.fuses("conv", "relu")
    assert graph_decisions(table.runtime_graphs(), pairs)[("conv", "relu")] is True


def test_the_graph_overrides_timing_and_timing_decides_the_rest() -> None:
    pairs, shapes = [("conv", "relu"), ("conv", "relu6")], [(28, 32)]
    keys = [item.key for item in probe_items(pairs, shapes)]
    # Timing alone: conv+relu6 saves nothing (not fused), conv+relu saves a little (fused).
    times = dict(zip(keys, [0.003, 0.103, 0.005, 0.1035, 0.005, 0.106], strict=True))
    pair = "fusion-conv+relu6-input:28x28x32"
    item = next(i for i in probe_items(pairs, shapes) if i.key == pair)
    path = item.export("onnx").path
    nodes = onnx.load(path).graph.node
    conv, act = nodes[0], nodes[-1]
    one_node = {  # the runtime ran both as one node (its output keeps the activation's name)
        "fused_nodes": [{"name": "f", "op": "FusedConv", "inputs": list(conv.input), "outputs": list(act.output)}],
        "nodes": [{"name": "f", "op": "FusedConv", "domain": "", "inputs": list(conv.input),
                   "outputs": list(act.output), "time_us": 100.0}],
    }  # fmt: skip
    rules = rules_from_table(_rows(times), pairs, shapes, graphs={pair: one_node})
    assert rules.fused == frozenset({("conv", "relu"), ("conv", "relu6")})
    assert rules.seen_in_graph == frozenset({("conv", "relu6")})
    assert FusionRules.from_json(rules.to_json()) == rules


def _rows(times: dict[str, float]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {k: {"status": "ok", "median_ms": v} for k, v in times.items()}


def test_rules_from_rows_subtract_the_fixed_cost() -> None:
    pairs, shapes = [("conv", "relu"), ("conv", "relu6")], [(28, 32)]
    keys = [item.key for item in probe_items(pairs, shapes)]
    assert keys == [
        OVERHEAD.key,
        "fusion-conv-input:28x28x32",
        "fusion-relu-input:28x28x32",
        "fusion-conv+relu-input:28x28x32",
        "fusion-relu6-input:28x28x32",
        "fusion-conv+relu6-input:28x28x32",
    ]
    times = dict(zip(keys, [0.003, 0.103, 0.005, 0.1035, 0.005, 0.106], strict=True))
    rules = rules_from_table(_rows(times), pairs, shapes)
    # conv+relu: saving 0.103 + 0.005 - 0.1035 - 0.003 = 0.0015 > 0.5 * min(0.100, 0.002) = 0.001
    # conv+relu6: saving 0.103 + 0.005 - 0.106 - 0.003 = -0.001
    assert rules.fused == frozenset({("conv", "relu")})
    assert rules.evidence[0].saving_ms == pytest.approx(0.0015)
    del times["fusion-conv+relu6-input:28x28x32"]  # an unmeasured pair decides nothing
    assert [(e.first, e.second) for e in rules_from_table(_rows(times), pairs, shapes).evidence] == [("conv", "relu")]


def test_rules_round_trip_through_json() -> None:
    rules = FusionRules.from_evidence([FusionEvidence("conv", "relu", 0.1, 0.005, 0.1, 0.003)])
    assert FusionRules.from_json(rules.to_json()) == rules

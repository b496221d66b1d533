"""LiteRT's executed kernels from benchmark_model's op profile, and the fusion they show.

The graphs are built as driver.graph_of builds them: from the recorded op-profiling log
(tests/benchmark_model/fixtures) and from hand-written node lists in the same shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hwlab.measure.benchmark_model.driver import GRAPH_SOURCE, graph_of
from hwlab.measure.benchmark_model.parse import parse_benchmark_output
from hwlab.predictors.fusion import _probe_keys, graph_decisions, rules_from_table
from hwlab.predictors.litert_kernels import executed_kernels, fused_vote

FIXTURES = Path(__file__).resolve().parent.parent / "benchmark_model" / "fixtures"


def _graph(*types: str, delegate: bool = False) -> dict[str, Any]:
    """A profiled graph of builtins, or of XNNPACK operators under their delegate node."""
    nodes = [{"graph": "run", "type": t, "name": f"Delegate/{t}:{i}" if delegate else f"[{t.lower()}]:{i}",
              "avg_us": 10.0, "times_called": 1} for i, t in enumerate(types)]  # fmt: skip
    if delegate:
        wrapper = {"graph": "run", "type": "TfLiteXNNPackDelegate", "name": "[out]:9", "avg_us": 10.0 * len(types)}
        nodes.insert(0, {**wrapper, "times_called": 1})
    return {"source": GRAPH_SOURCE, "runs": 5, "nodes": nodes}


def test_the_recorded_profile_gives_the_delegates_operators_as_kernels() -> None:
    text = (FIXTURES / "litert_op_profiling.txt").read_text()
    graph = graph_of(parse_benchmark_output(text.replace("{graph}", "m.tflite").replace("{num_threads}", "1")))
    assert executed_kernels(graph) == [
        "Convolution (NHWC, F32) IGEMM", "Convolution (NHWC, F32) DWConv", "Convolution (NHWC, F32) GEMM", "ARG_MAX",
    ]  # fmt: skip


def test_a_delegate_hiding_its_operators_or_an_error_tells_nothing() -> None:
    opaque = {"source": GRAPH_SOURCE, "runs": 5,
              "nodes": [{"graph": "run", "type": "TfLiteXNNPackDelegate", "name": "[out]:0", "avg_us": 9.0,
                         "times_called": 1}]}  # fmt: skip
    assert executed_kernels(opaque) is None
    assert executed_kernels({"error": "benchmark_model exited 1"}) is None
    assert executed_kernels({"measured": {"nodes": []}}) is None  # onnxruntime's capture is not read here
    assert fused_vote(_graph("CONV_2D"), _graph("RELU"), opaque) is None


def test_fewer_kernels_in_the_chain_is_fusion_and_as_many_is_not() -> None:
    conv, bn_alone = _graph("CONV_2D"), _graph("MUL", "ADD")  # a standalone BN runs as a scale and a shift
    assert fused_vote(conv, bn_alone, _graph("CONV_2D")) is True  # the converter folded BN into the conv
    assert fused_vote(conv, _graph("HARD_SWISH"), _graph("CONV_2D", "HARD_SWISH")) is False
    xnn = "Convolution (NHWC, F32) IGEMM"
    assert fused_vote(_graph(xnn, delegate=True), _graph("Clamp (NC, F32)", delegate=True),
                      _graph(xnn, delegate=True)) is True  # fmt: skip
    assert fused_vote(conv, _graph("RELU"), _graph("PAD", "CONV_2D", "RELU", "RESHAPE")) is None  # more: no vote


def test_litert_graphs_decide_pairs_in_most_probe_shapes_and_override_timing() -> None:
    shapes = ((56, 8), (56, 16))
    graphs: dict[str, dict[str, Any]] = {}
    for size, channels in shapes:
        first, second, chain = _probe_keys("conv", "relu", size, channels)
        graphs |= {first.key: _graph("CONV_2D"), second.key: _graph("RELU"), chain.key: _graph("CONV_2D")}
        first, second, chain = _probe_keys("conv", "hswish", size, channels)
        graphs |= {first.key: _graph("CONV_2D"), second.key: _graph("HARD_SWISH"),
                   chain.key: _graph("CONV_2D", "HARD_SWISH")}  # fmt: skip
    pairs = (("conv", "relu"), ("conv", "hswish"), ("conv", "add"))
    assert graph_decisions(graphs, pairs, shapes) == {("conv", "relu"): True, ("conv", "hswish"): False}
    rules = rules_from_table({}, pairs, shapes, graphs=graphs)
    assert rules.fused == {("conv", "relu")} and rules.seen_in_graph == {("conv", "relu"), ("conv", "hswish")}

"""LiteRT's op profile placed on the model's own ONNX nodes (hwlab.predictors.litert_split).

The models are real: zoo networks exported by hwlab to ONNX and to TFLite (litert-torch), read back node
by node. No benchmark_model runs here, so the op profiles are written in the shape driver.graph_of gives
them, from the real .tflite's nodes: every node as a builtin row (``[tensor]:index``, XNNPACK off), or
under XNNPACK's delegate node as its operators in node order, with the pads XNNPACK folds into the
convolution left out. Each row's time is its node index + 1 µs, so where every row went can be checked.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
import torch

from hwlab.errors import PredictorError
from hwlab.export import export_module
from hwlab.measure.benchmark_model.driver import GRAPH_SOURCE
from hwlab.predictors.dataset import model_file
from hwlab.predictors.graph_load import GraphView, build_view, load_model
from hwlab.predictors.graph_ops import build_ops
from hwlab.predictors.ingraph import MIN_KERNEL_MS, MeasuredGraph, in_graph_rows
from hwlab.predictors.kernels import FusionRules
from hwlab.predictors.litert_split import OPERATORS_OF, litert_split
from hwlab.predictors.tflite_graph import TfliteNode, read_tflite_nodes
from hwlab.space import SposConfig
from hwlab.space.build import random_input
from hwlab.zoo import ZooModel, random_spos_arch, sample_family, spos_model


def _us(node: TfliteNode) -> float:
    return float(node.index + 1)


def builtin_profile(nodes: list[TfliteNode]) -> dict[str, Any]:
    rows = [{"graph": "run", "type": n.op, "name": f"[t{n.index}]:{n.index}", "avg_us": _us(n), "times_called": 1}
            for n in nodes]  # fmt: skip
    return {"source": GRAPH_SOURCE, "runs": 5, "nodes": rows}


def xnnpack_profile(nodes: list[TfliteNode], runs_none: tuple[str, ...] = ("PAD",)) -> dict[str, Any]:
    """Every node under the delegate, one operator each, ``runs_none`` nodes folded away."""
    rows = []
    for n in nodes:
        if n.op in runs_none:
            continue
        kind = sorted(OPERATORS_OF[n.op])[0]
        name = f"{kind} (NHWC, F32) IGEMM"
        rows.append({"graph": "run", "type": name, "name": f"Delegate/{name}:{len(rows)}", "avg_us": _us(n),
                     "times_called": 1})  # fmt: skip
    wrapper = {"graph": "run", "type": "TfLiteXNNPackDelegate", "name": f"[out]:{len(nodes)}",
               "avg_us": sum(r["avg_us"] for r in rows) + 5.0, "times_called": 1}  # fmt: skip
    return {"source": GRAPH_SOURCE, "runs": 5, "nodes": [wrapper, *rows]}


def _files(model: ZooModel) -> tuple[GraphView, Path, list[TfliteNode]]:
    tflite = Path(model_file(model, "tflite"))
    return build_view(load_model(model_file(model, "onnx"))), tflite, read_tflite_nodes(tflite)


@pytest.fixture(scope="module")
def mobilenet() -> tuple[GraphView, Path, list[TfliteNode]]:
    return _files(sample_family("mobilenetv2", 1, 3)[0])


@pytest.fixture(scope="module")
def spos() -> tuple[GraphView, Path, list[TfliteNode]]:
    config = SposConfig()
    return _files(spos_model(config, *random_spos_arch(random.Random(1), config)))


def _unit_holding(split: Any, view: GraphView, op_type: str) -> list[Any]:
    return [u for u in split.units if any(view.nodes[i].op_type == op_type for i in u.covers)]


def test_the_tflite_nodes_are_read_with_their_sizes(mobilenet: tuple[GraphView, Path, list[TfliteNode]]) -> None:
    view, _, nodes = mobilenet
    assert [n.op for n in nodes[:3]] == ["TRANSPOSE", "PAD", "CONV_2D"]  # NCHW -> NHWC, the stem's explicit pad
    stem = next(i for i, node in enumerate(view.nodes) if node.op_type == "Conv")
    weight = view.maybe_shape(view.nodes[stem].input[1])
    assert weight is not None and nodes[2].weight_elements == weight[0] * weight[1] * weight[2] * weight[3]
    out = view.maybe_shape(view.nodes[stem].output[0])
    assert out is not None and nodes[2].out_elements == out[0] * out[1] * out[2] * out[3]
    assert nodes[0].weight_elements is None


@pytest.mark.parametrize("form", ["builtins", "xnnpack"])
def test_every_row_of_a_mobilenet_profile_lands_on_its_ops(
    mobilenet: tuple[GraphView, Path, list[TfliteNode]], form: str
) -> None:
    view, _, nodes = mobilenet
    graph = builtin_profile(nodes) if form == "builtins" else xnnpack_profile(nodes)
    split = litert_split(view, nodes, graph)
    assert split.complete, split.unplaced
    executed = [r for r in graph["nodes"] if r["type"] != "TfLiteXNNPackDelegate"]
    assert split.total_us == sum(r["avg_us"] for r in executed)  # the delegate's own row is not a kernel
    assert sum(u.time_us + u.layout_us for u in split.units) == split.total_us  # every row placed once
    convs = [i for i, node in enumerate(view.nodes) if node.op_type == "Conv"]
    units_of = {i: [u for u in split.units if i in u.covers] for i in convs}
    assert all(len(found) == 1 for found in units_of.values())
    assert len({id(found[0]) for found in units_of.values()}) == len(convs)  # one executed node per conv
    stem = units_of[convs[0]][0]
    # The converter's NCHW -> NHWC transpose (node 0) is layout work of the stem that reads it, with the pad
    # (node 1) where XNNPACK did not fold the pad into the convolution.
    assert stem.time_us == 3.0 and stem.layout_us == (1.0 + 2.0 if form == "builtins" else 1.0)
    # Each Clip (ReLU6) ran inside the node of the convolution before it: the converter's fused activation.
    ops, _ = build_ops(view)
    for op in ops:
        if op.category == "relu6":
            (unit,) = [u for u in split.units if op.nodes[0] in u.covers]
            assert any(view.nodes[i].op_type == "Conv" for i in unit.covers)
    (flatten,) = [i for i, node in enumerate(view.nodes) if node.op_type == "Flatten"]
    assert not any(flatten in u.covers for u in split.units)  # a view: ran nothing


def test_a_spos_network_with_channel_shuffles_is_placed_whole(spos: tuple[GraphView, Path, list[TfliteNode]]) -> None:
    view, _, nodes = spos
    for graph in (builtin_profile(nodes), xnnpack_profile(nodes)):
        split = litert_split(view, nodes, graph)
        assert split.complete, split.unplaced[:5]
        assert sum(u.time_us + u.layout_us for u in split.units) == split.total_us
        # The shuffle's channel picks (ONNX Gather) ran as TFLite slices.
        assert _unit_holding(split, view, "Gather") and all(u.op in ("SLICE", "Slice (NHWC, F32) IGEMM")
                                                            for u in _unit_holding(split, view, "Gather"))  # fmt: skip


class _SliceRelu(torch.nn.Module):
    """A ReLU after a channel slice: a slice has no fused activation, so the converter keeps a RELU node."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.conv(x)[:, :4])


def test_an_activation_xnnpack_ran_inside_the_node_before_it_joins_that_node(tmp_path: Path) -> None:
    module, x = _SliceRelu(), random_input((1, 3, 16, 16))
    view = build_view(load_model(export_module(module, x, "onnx", name="slice-relu", cache_dir=tmp_path).path))
    nodes = read_tflite_nodes(export_module(module, x, "tflite", name="slice-relu", cache_dir=tmp_path).path)
    assert "RELU" in [n.op for n in nodes]
    split = litert_split(view, nodes, xnnpack_profile(nodes, runs_none=("RELU",)))
    assert split.complete, split.unplaced
    (sliced,) = _unit_holding(split, view, "Slice")
    assert any(view.nodes[i].op_type == "Relu" for i in sliced.covers)
    # Run as its own operator, the ReLU is its own unit.
    split = litert_split(view, nodes, xnnpack_profile(nodes, runs_none=()))
    assert split.complete and len(_unit_holding(split, view, "Relu")) == 1
    assert not any(view.nodes[i].op_type == "Relu" for u in _unit_holding(split, view, "Slice") for i in u.covers)


def test_a_standalone_batchnorm_the_converter_wrote_as_a_chain_is_one_unit() -> None:
    # RepVGG's identity branch in train form: a BN alone, which the converter writes as x - mean, two scales
    # and a shift; and WeightNet's convolution, whose weight is computed in the graph.
    model = sample_family("reparamnet", 2, 0)[1]
    view, _, nodes = _files(model)
    split = litert_split(view, nodes, builtin_profile(nodes))
    assert split.complete, split.unplaced[:5]
    ops, _ = build_ops(view)
    alone = [op for op in ops if op.category == "bn"]
    assert alone
    for op in alone:
        (unit,) = [u for u in split.units if op.nodes[0] in u.covers]
        assert unit.op == "SUB" and unit.own_events == 4  # SUB, MUL, MUL, ADD
        assert {view.nodes[i].op_type for i in unit.covers} == {"BatchNormalization"}
    assert any(op.category == "dynconv" for op in ops)


def test_a_profile_that_does_not_fit_the_file_is_unplaced_never_guessed(
    mobilenet: tuple[GraphView, Path, list[TfliteNode]],
) -> None:
    view, _, nodes = mobilenet
    graph = xnnpack_profile(nodes)
    graph["nodes"].insert(3, {**graph["nodes"][3], "type": "Softmax (NC, F32)", "name": "Delegate/Softmax (NC, F32):9"})
    assert any("do not align" in p for p in litert_split(view, nodes, graph).unplaced)
    wrong = builtin_profile(nodes)
    wrong["nodes"][2] = {**wrong["nodes"][2], "type": "MEAN"}  # node 2 is a CONV_2D
    assert any("no such node" in p for p in litert_split(view, nodes, wrong).unplaced)
    hidden = {"source": GRAPH_SOURCE, "runs": 5, "nodes": [xnnpack_profile(nodes)["nodes"][0]]}
    assert any("not shown" in p for p in litert_split(view, nodes, hidden).unplaced)


def test_ops_the_converter_decomposed_leave_the_model_out() -> None:
    model = sample_family("coverage", 1, 3)[0]
    view, _, nodes = _files(model)
    split = litert_split(view, nodes, builtin_profile(nodes))
    assert not split.complete
    # A standalone BatchNormalization became a scale and a shift: both sides are named.
    assert any("(bn)" in p for p in split.unplaced) and any("runs no op of the model" in p for p in split.unplaced)


def test_kernel_times_from_a_litert_graph_add_up_to_the_measurement(
    mobilenet: tuple[GraphView, Path, list[TfliteNode]],
) -> None:
    view, tflite, nodes = mobilenet
    model = sample_family("mobilenetv2", 1, 3)[0]
    graph = xnnpack_profile(nodes)
    row = {"median_ms": 0.5, "speed_factor": 1.0, "correction": "floor+anchors"}
    measured = MeasuredGraph.of(model.name, model_file(model, "onnx"), graph, row, tflite)
    assert measured.split.complete
    fused = FusionRules(frozenset({("conv", "relu6"), ("dwconv", "relu6")}))
    data = in_graph_rows([measured], fused, fixed_ms=0.01, event_us=0.0)
    assert not data.models_left_out
    ran = [r for r in data.rows if r["median_ms"] > MIN_KERNEL_MS]
    assert sum(r["median_ms"] for r in ran) == pytest.approx(0.5 - 0.01)  # measured less the fixed cost
    assert [r["op"] for r in data.rows if r not in ran] == ["flatten"]  # the view that ran nothing
    with pytest.raises(PredictorError, match=r"\.tflite"):
        MeasuredGraph.of(model.name, model_file(model, "onnx"), graph, row)

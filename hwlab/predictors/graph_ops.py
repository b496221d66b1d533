"""ONNX nodes -> categorised ops: the units that fusion later groups into kernels.

Every node that runs is given a category from `CATEGORIES` or reported as unknown: a node with no
predictor is never dropped silently, since the predicted latency would then be quietly too low.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from hwlab.predictors.graph_load import ONNX_DOMAINS, GraphView

UNKNOWN_PREFIX = "unknown:"

# ONNX op type -> category. Conditional entries are refined by `classify`.
CATEGORY_OF_ONNX: dict[str, str] = {
    # "dwconv" when group == input channels == output channels; other groups stay "conv". "dynconv" when its
    # weight is computed in the graph: a runtime cannot pre-pack it (onnxruntime packs it on every call and
    # leaves it out of its blocked NCHWc layout), so it costs unlike a conv of constant weights.
    "Conv": "conv",
    "ConvTranspose": "convtranspose",
    "Gemm": "fc",
    "MatMul": "fc",  # with a constant 2-D weight as its second input; of two activations, "matmul"
    "BatchNormalization": "bn",
    "Relu": "relu",
    "Clip": "relu6",  # Clip(0, 6); Clip(0, no max) is "relu"; other bounds "clip"
    "HardSwish": "hswish",
    "Sigmoid": "sigmoid",
    "HardSigmoid": "hsigmoid",  # alone (a gate); x * HardSigmoid(x) is "hswish"
    "LeakyRelu": "leakyrelu",
    "PRelu": "prelu",
    "Tanh": "tanh",
    "Max": "minmax",
    "Min": "minmax",
    "Add": "add",
    "Sub": "add",
    "Mul": "mul",
    "Div": "div",
    "Softmax": "softmax",
    "Resize": "resize",
    "Concat": "concat",
    "MaxPool": "maxpool",
    "AveragePool": "avgpool",
    "GlobalAveragePool": "gap",
    "ReduceMean": "gap",  # over H and W of a 4-D input; over other axes "reduce"
    "Reshape": "reshape",
    "Squeeze": "reshape",
    "Unsqueeze": "reshape",
    "Flatten": "flatten",
    "Transpose": "transpose",
    "Slice": "slice",
    "Gather": "gather",
    "Split": "split",
    "Pad": "pad",
}

# (activation, Mul) pairs computing x * act(x): one op of the given category.
PATTERNS: dict[str, str] = {"Sigmoid": "swish", "HardSigmoid": "hswish"}

# First input index from which an op's inputs configure it (shape, axes, pads, bounds, indices)
# rather than carry data or weights: such constant inputs are not parameters.
CONFIG_INPUTS_FROM: dict[str, int] = {
    "Reshape": 1,
    "Squeeze": 1,
    "Unsqueeze": 1,
    "Slice": 1,
    "Pad": 1,
    "Clip": 1,
    "Split": 1,
    "ReduceMean": 1,
    "Gather": 1,
    "Resize": 1,
}

ELEMENTWISE = frozenset({
    "bn", "relu", "relu6", "hswish", "sigmoid", "swish", "add", "mul", "leakyrelu", "prelu", "tanh", "hsigmoid",
    "clip", "minmax", "div", "softmax", "resize",
})  # fmt: skip


@dataclass(frozen=True)
class Op:
    """One categorised op: a node, or a (Sigmoid|HardSigmoid, Mul) pair forming swish or hswish."""

    category: str
    nodes: tuple[int, ...]  # node indices in the view, in order
    inputs: tuple[str, ...]  # dynamic values read from outside the op, first is the data input
    weights: tuple[str, ...]  # constant inputs that are weights (not configuration like a shape)
    outputs: tuple[str, ...]

    @property
    def unknown(self) -> bool:
        return self.category.startswith(UNKNOWN_PREFIX)


def _scalar(view: GraphView, node: onnx.NodeProto, position: int, attr: str) -> tuple[bool, float | None]:
    """A Clip bound from its input (opset >= 11) or attribute: (known, value), value None when absent."""
    for a in node.attribute:
        if a.name == attr:
            return True, float(onnx.helper.get_attribute_value(a))
    if len(node.input) <= position or not node.input[position]:
        return True, None
    held = view.value(node.input[position])
    return (False, None) if held is None or held.size != 1 else (True, float(held.reshape(-1)[0]))


def _attr(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def _clip(view: GraphView, node: onnx.NodeProto) -> tuple[str, str]:
    (known_lo, lo), (known_hi, hi) = _scalar(view, node, 1, "min"), _scalar(view, node, 2, "max")
    if known_lo and known_hi and lo == 0.0 and hi == 6.0:
        return "relu6", ""
    if known_lo and known_hi and lo == 0.0 and hi is None:
        return "relu", ""
    if known_lo and known_hi:
        return "clip", ""
    shown = f"Clip(min={lo if known_lo else '?'}, max={hi if known_hi else '?'})"
    return UNKNOWN_PREFIX + "Clip", f"{shown} has bounds computed at run time"


def _reduce_mean(view: GraphView, node: onnx.NodeProto, i: int) -> tuple[str, str]:
    axes = _attr(node, "axes")
    if axes is None and len(node.input) > 1 and node.input[1]:
        held = view.value(node.input[1])
        axes = None if held is None else held.reshape(-1).tolist()
    rank = len(view.shape(node.input[0], i))
    if axes is not None and rank == 4 and sorted(int(a) % rank for a in axes) == [2, 3]:
        return "gap", ""
    return "reduce", ""


def classify(view: GraphView, i: int) -> tuple[str, str]:
    """(category, why it is unknown) of node i; unknown categories are 'unknown:<OpType>'."""
    node = view.nodes[i]
    op = node.op_type
    if node.domain not in ONNX_DOMAINS:
        return UNKNOWN_PREFIX + op, f"custom domain '{node.domain}'"
    if op == "Conv":
        if not view.is_static(node.input[1]):
            return "dynconv", ""
        weight = view.shape(node.input[1], i)
        group = int(_attr(node, "group", 1))
        # Weight is (cout, cin / group, kh, kw): group == cin == cout means one input channel per group.
        return ("dwconv" if group > 1 and weight[0] == group and weight[1] == 1 else "conv"), ""
    if op == "MatMul":
        weight, data = node.input[1], node.input[0]
        if view.is_static(weight) and not view.is_static(data) and len(view.shape(weight, i)) == 2:
            return "fc", ""
        return "matmul", ""
    if op == "Clip":
        return _clip(view, node)
    if op == "ReduceMean":
        return _reduce_mean(view, node, i)
    if op in CATEGORY_OF_ONNX:
        return CATEGORY_OF_ONNX[op], ""
    return UNKNOWN_PREFIX + op, ""


def _pattern_partner(view: GraphView, i: int) -> int | None:
    """The Mul j computing x * act(x) with act = node i, when act(x) feeds nothing else."""
    node = view.nodes[i]
    if node.op_type not in PATTERNS or node.domain not in ONNX_DOMAINS:
        return None
    x, act = view.resolve(node.input[0]), node.output[0]
    users = view.consumers.get(act, [])
    if act in view.graph_outputs or len(users) != 1:
        return None
    mul = view.nodes[users[0]]
    if mul.op_type != "Mul" or mul.domain not in ONNX_DOMAINS:
        return None
    return users[0] if sorted(view.resolve(v) for v in mul.input) == sorted([x, act]) else None


def make_op(view: GraphView, category: str, members: tuple[int, ...]) -> Op:
    """Gather an op's external dynamic inputs, weights and outputs."""
    inside = {out for j in members for out in view.nodes[j].output if out}
    inputs: dict[str, None] = {}
    weights: dict[str, None] = {}
    for j in members:
        node = view.nodes[j]
        config_from = CONFIG_INPUTS_FROM.get(node.op_type, len(node.input))
        for position, raw in enumerate(node.input):
            name = view.resolve(raw) if raw else ""
            if not name or name in inside:
                continue
            if not view.is_static(name):
                inputs[name] = None
            elif position < config_from:
                weights[name] = None
    outputs = tuple(out for out in view.nodes[members[-1]].output if out)
    return Op(category, members, tuple(inputs), tuple(weights), outputs)


def build_ops(view: GraphView) -> tuple[list[Op], dict[str, list[tuple[str, str]]]]:
    """The ops of the graph in topological order, and the unknown ones by op type (name, why)."""
    ops: list[Op] = []
    unknown: dict[str, list[tuple[str, str]]] = {}
    partners: set[int] = set()
    for i in range(len(view.nodes)):
        if i in view.folded or i in partners:
            continue
        partner = _pattern_partner(view, i)
        if partner is not None:
            partners.add(partner)
            ops.append(make_op(view, PATTERNS[view.nodes[i].op_type], (i, partner)))
            continue
        category, why = classify(view, i)
        if category.startswith(UNKNOWN_PREFIX):
            unknown.setdefault(view.nodes[i].op_type, []).append((view.names[i], why))
        ops.append(make_op(view, category, (i,)))
    return ops, unknown


def config_value(view: GraphView, node: onnx.NodeProto, name: str) -> list[int] | None:
    """An integer-list attribute of a node (kernel_shape, strides), or None when absent."""
    found = _attr(node, name)
    return None if found is None else [int(v) for v in np.asarray(found).reshape(-1)]

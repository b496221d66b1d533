"""The numeric features of a fused kernel (see `FEATURES`), from the shapes of its ops.

Batch 1, NCHW float32: every tensor costs 4 bytes an element. Features a kernel has no use for
(kernel size, stride, groups of a kernel without conv or pooling) are 0. A weight computed in the graph
(a dynconv's) is not a parameter: its bytes count in bytes_in, since the kernel reads it on every call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from hwlab.predictors.graph_load import GraphView, Shape, elements
from hwlab.predictors.graph_ops import ELEMENTWISE, Op, config_value
from hwlab.predictors.kernels import FEATURES

BYTES_PER_ELEMENT = 4
WINDOWED = ("conv", "dwconv", "dynconv", "convtranspose", "maxpool", "avgpool")
CONVS = ("conv", "dwconv", "dynconv", "convtranspose")

ShapeOf = Callable[[str, int], Shape | None]


def _channels_and_space(shape: Shape | None, features_last: bool) -> tuple[int, int, int]:
    """(channels, h, w) of an NCHW-like tensor; fc tensors keep features on the last axis."""
    if shape is None:
        return 0, 0, 0
    if len(shape) < 2:
        return (shape[0] if shape else 1), 1, 1
    if features_last:
        return shape[-1], math.prod(shape[1:-1]), 1
    h = shape[2] if len(shape) > 2 else 1
    w = math.prod(shape[3:]) if len(shape) > 3 else 1
    return shape[1], h, w


def _fc_in_out(view: GraphView, op: Op, shape_of: ShapeOf) -> tuple[int, int]:
    """(in features, out features) of a Gemm or MatMul from its second operand's shape (a weight, or for
    a MatMul of two activations the other activation: its last two axes)."""
    i = op.nodes[0]
    node = view.nodes[i]
    weight = shape_of(node.input[1], i)
    if weight is None or len(weight) < 2:
        return 0, 0
    trans_b = node.op_type == "Gemm" and (config_value(view, node, "transB") or [0])[0] == 1
    return (weight[-1], weight[-2]) if trans_b else (weight[-2], weight[-1])


def _window(view: GraphView, op: Op, shape_of: ShapeOf) -> tuple[list[int], int, int]:
    """(kernel shape, stride, groups) of a conv or pooling op; the largest side for non-square ones. A
    dilated kernel is given by its extent, d * (k - 1) + 1: the window it reads."""
    i = op.nodes[0]
    node = view.nodes[i]
    kernel = config_value(view, node, "kernel_shape")
    if kernel is None and op.category in CONVS:
        weight = shape_of(node.input[1], i)
        kernel = list(weight[2:]) if weight is not None else []
    dilations = config_value(view, node, "dilations") or [1] * len(kernel or [])
    kernel = [d * (k - 1) + 1 for k, d in zip(kernel or [], dilations, strict=False)]
    stride = max(config_value(view, node, "strides") or [1])
    groups = (config_value(view, node, "group") or [1])[0] if op.category in CONVS else 0
    return kernel, stride, groups


def _op_flops(view: GraphView, op: Op, shape_of: ShapeOf) -> int:
    """2 x MACs for conv/fc, one op per output element when elementwise, kernel area per pooled element. A
    dynconv's weight shape comes from shape inference (it is a computed tensor, not an initializer)."""
    i = op.nodes[0]
    out = elements(shape_of(op.outputs[0], i)) if op.outputs else 0
    if op.category in ("conv", "dwconv", "dynconv"):
        weight = shape_of(view.nodes[i].input[1], i)
        return 2 * out * math.prod(weight[1:]) if weight is not None else 0
    if op.category == "convtranspose":  # weight (cin, cout / groups, kh, kw): each input element scatters
        weight = shape_of(view.nodes[i].input[1], i)
        data = elements(shape_of(op.inputs[0], i)) if op.inputs else 0
        return 2 * data * math.prod(weight[1:]) if weight is not None else 0
    if op.category in ("fc", "matmul"):
        return 2 * out * _fc_in_out(view, op, shape_of)[0]
    if op.category == "reduce":
        return elements(shape_of(op.inputs[0], i)) if op.inputs else 0
    if op.category in ("maxpool", "avgpool"):
        return out * math.prod(_window(view, op, shape_of)[0])
    if op.category == "gap":
        return elements(shape_of(op.inputs[0], i)) if op.inputs else 0
    return out if op.category in ELEMENTWISE else 0


def kernel_features(view: GraphView, ops: Sequence[Op], outputs: Sequence[str]) -> dict[str, float]:
    """Features of the kernel made of `ops` (in order) whose results are `outputs`.

    Kernels of unknown ops tolerate missing shapes (their features are informative only); any
    other kernel needs every shape, since a guessed shape would be a wrong prediction.
    """
    strict = not any(op.unknown for op in ops)

    def shape_of(name: str, node: int) -> Shape | None:
        return view.shape(name, node) if strict else view.maybe_shape(name)

    first = ops[0]
    fc = first.category in ("fc", "matmul")
    data = shape_of(first.inputs[0], first.nodes[0]) if first.inputs else None
    cin, h, w = _channels_and_space(data, fc)
    cout = _channels_and_space(shape_of(outputs[0], ops[-1].nodes[-1]) if outputs else None, fc)[0]
    if fc:
        cin = _fc_in_out(view, first, shape_of)[0] or cin
    kernel, stride, groups = [0], 0, 0
    windowed = next((op for op in ops if op.category in WINDOWED), None)
    if windowed is not None:
        kernel, stride, groups = _window(view, windowed, shape_of)
    produced = {out for op in ops for out in op.outputs}
    inputs = dict.fromkeys(x for op in ops for x in op.inputs if x not in produced)
    weights = dict.fromkeys(x for op in ops for x in op.weights)
    found = {
        "h": h,
        "w": w,
        "cin": cin,
        "cout": cout,
        "kernel": max(kernel, default=0),
        "stride": stride,
        "groups": groups,
        "flops": sum(_op_flops(view, op, shape_of) for op in ops),
        "params": sum(elements(shape_of(x, first.nodes[0])) for x in weights),
        "bytes_in": BYTES_PER_ELEMENT * sum(elements(shape_of(x, first.nodes[0])) for x in inputs),
        "bytes_out": BYTES_PER_ELEMENT * sum(elements(shape_of(x, ops[-1].nodes[-1])) for x in outputs),
    }
    return {name: float(found[name]) for name in FEATURES}

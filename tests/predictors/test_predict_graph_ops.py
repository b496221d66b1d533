"""ONNX node -> kernel category: activations, patterns, pooling and data-movement ops."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper
from onnx_graphs import make

from hwlab.errors import UnknownOpError
from hwlab.predictors.graph import onnx_kernels
from hwlab.predictors.kernels import FusionRules, Kernel

NONE = FusionRules(frozenset())


def single(
    node: onnx.NodeProto, weights: dict[str, np.ndarray] | None = None, shape: list[int] | None = None
) -> Kernel:
    [kernel] = onnx_kernels(make([node], {"x": shape or [1, 4, 8, 8]}, list(node.output), weights), NONE)
    return kernel


def scalar(v: float) -> np.ndarray:
    return np.array(v, np.float32)


def test_clip_0_6_from_inputs_is_relu6() -> None:
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")
    kernel = single(node, {"lo": scalar(0), "hi": scalar(6)})
    assert kernel.type == "relu6"
    assert (kernel.features["params"], kernel.features["flops"]) == (0, 256)  # bounds configure, not weights


def test_clip_0_6_from_attributes_is_relu6() -> None:
    node = helper.make_node("Clip", ["x"], ["y"], name="clip", min=0.0, max=6.0)
    [kernel] = onnx_kernels(make([node], {"x": [1, 4, 8, 8]}, ["y"], opset=10), NONE)
    assert kernel.type == "relu6"


def test_clip_bounds_from_constant_nodes_and_open_max() -> None:
    nodes = [
        helper.make_node("Constant", [], ["lo"], name="lo", value=numpy_helper.from_array(scalar(0))),
        helper.make_node("Constant", [], ["hi"], name="hi", value=numpy_helper.from_array(scalar(6))),
        helper.make_node("Clip", ["x", "lo", "hi"], ["a"], name="relu6"),
        helper.make_node("Clip", ["a", "lo"], ["y"], name="relu"),
    ]
    kernels = onnx_kernels(make(nodes, {"x": [1, 4, 8, 8]}, ["y"]), NONE)
    assert [(k.type, k.nodes) for k in kernels] == [("relu6", ("relu6",)), ("relu", ("relu",))]


def test_other_constant_clip_is_clip_and_a_computed_one_unknown() -> None:
    node = helper.make_node("Clip", ["x", "lo", "hi"], ["y"], name="clip")
    model = make([node], {"x": [1, 4, 8, 8]}, ["y"], {"lo": scalar(-1), "hi": scalar(1)})
    assert [k.type for k in onnx_kernels(model, NONE)] == ["clip"]
    computed = make([node], {"x": [1, 4, 8, 8], "lo": [], "hi": []}, ["y"])
    with pytest.raises(UnknownOpError, match=r"Clip \(node 'clip': .* has bounds computed at run time\)"):
        onnx_kernels(computed, NONE)


def test_hardswish_is_hswish() -> None:
    assert single(helper.make_node("HardSwish", ["x"], ["y"], name="hs")).type == "hswish"


@pytest.mark.parametrize(("act", "category"), [("HardSigmoid", "hswish"), ("Sigmoid", "swish")])
def test_x_times_act_x_is_one_op(act: str, category: str) -> None:
    nodes = [
        helper.make_node(act, ["x"], ["s"], name="act"),
        helper.make_node("Mul", ["s", "x"], ["y"], name="mul"),
    ]
    [kernel] = onnx_kernels(make(nodes, {"x": [1, 4, 8, 8]}, ["y"]), NONE)
    assert (kernel.type, kernel.nodes) == (category, ("act", "mul"))
    assert (kernel.features["flops"], kernel.features["bytes_in"], kernel.features["bytes_out"]) == (256, 1024, 1024)


def test_swish_after_conv_fuses_though_conv_output_feeds_two_nodes() -> None:
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["c"], name="conv", kernel_shape=[1, 1]),
        helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        helper.make_node("Mul", ["c", "s"], ["y"], name="mul"),
    ]
    model = make(nodes, {"x": [1, 4, 8, 8]}, ["y"], {"W": np.zeros((4, 4, 1, 1), np.float32)})
    [kernel] = onnx_kernels(model, FusionRules(frozenset({("conv", "swish")})))
    assert (kernel.type, kernel.nodes) == ("conv+swish", ("conv", "sig", "mul"))


def test_sigmoid_used_elsewhere_is_not_swish() -> None:
    nodes = [
        helper.make_node("Sigmoid", ["x"], ["s"], name="sig"),
        helper.make_node("Mul", ["x", "s"], ["m"], name="mul"),
        helper.make_node("Add", ["m", "s"], ["y"], name="add"),
    ]
    kernels = onnx_kernels(make(nodes, {"x": [1, 4, 8, 8]}, ["y"]), NONE)
    assert [k.type for k in kernels] == ["sigmoid", "mul", "add"]


def test_sub_is_add_and_constant_operand_is_a_parameter() -> None:
    kernel = single(helper.make_node("Sub", ["x", "b"], ["y"], name="sub"), {"b": np.zeros((1, 4, 1, 1), np.float32)})
    assert (kernel.type, kernel.features["params"], kernel.features["bytes_in"]) == ("add", 4, 1024)


MAXPOOL = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2])  # 8x8 -> 3x3
AVGPOOL = helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2], strides=[2, 2])  # 8x8 -> 4x4


@pytest.mark.parametrize(
    ("node", "category", "kernel", "stride", "flops", "bytes_out"),
    [
        (MAXPOOL, "maxpool", 3, 2, 4 * 9 * 9, 4 * 4 * 9),  # kernel area per output element
        (AVGPOOL, "avgpool", 2, 2, 4 * 16 * 4, 4 * 4 * 16),
        (helper.make_node("GlobalAveragePool", ["x"], ["y"]), "gap", 0, 0, 256, 16),  # H x W per output element
        (helper.make_node("ReduceMean", ["x"], ["y"], axes=[-2, -1], keepdims=0), "gap", 0, 0, 256, 16),
    ],
)
def test_pooling(node: onnx.NodeProto, category: str, kernel: int, stride: int, flops: int, bytes_out: int) -> None:
    found = single(node)
    assert found.type == category
    f = found.features
    assert (f["kernel"], f["stride"], f["groups"], f["flops"], f["bytes_out"]) == (kernel, stride, 0, flops, bytes_out)
    assert (f["h"], f["w"], f["cin"], f["cout"]) == (8, 8, 4, 4)


def test_reduce_mean_over_channels_is_reduce() -> None:
    assert single(helper.make_node("ReduceMean", ["x"], ["y"], axes=[1])).type == "reduce"


def test_split_kernel_counts_every_output() -> None:
    node = helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1)
    [kernel] = onnx_kernels(make([node], {"x": [1, 4, 8, 8]}, ["a", "b"], {"sizes": np.array([1, 3], np.int64)}), NONE)
    f = kernel.features
    assert (kernel.type, f["cout"], f["params"], f["bytes_out"]) == ("split", 1, 0, 1024)


@pytest.mark.parametrize(
    ("node", "weights", "category"),
    [
        (helper.make_node("Flatten", ["x"], ["y"]), {}, "flatten"),
        (helper.make_node("Transpose", ["x"], ["y"], perm=[0, 2, 3, 1]), {}, "transpose"),
        (helper.make_node("Squeeze", ["x", "ax"], ["y"]), {"ax": np.array([0], np.int64)}, "reshape"),
        (helper.make_node("Unsqueeze", ["x", "ax"], ["y"]), {"ax": np.array([0], np.int64)}, "reshape"),
        (
            helper.make_node("Slice", ["x", "s", "e"], ["y"]),
            {"s": np.array([0], np.int64), "e": np.array([2], np.int64)},
            "slice",
        ),
        (helper.make_node("Gather", ["x", "i"], ["y"], axis=1), {"i": np.array([0, 2], np.int64)}, "gather"),
        (helper.make_node("Pad", ["x", "p"], ["y"]), {"p": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)}, "pad"),
        (helper.make_node("Concat", ["x", "x"], ["y"], axis=1), {}, "concat"),
        (helper.make_node("Mul", ["x", "x"], ["y"]), {}, "mul"),
    ],
)
def test_data_movement_and_elementwise_categories(
    node: onnx.NodeProto, weights: dict[str, np.ndarray], category: str
) -> None:
    kernel = single(node, weights)
    assert kernel.type == category
    assert kernel.features["params"] == 0  # shapes, axes, pads and indices are configuration
    assert kernel.features["bytes_in"] == 1024  # a tensor read twice counts once

"""Splitting ONNX graphs into fused kernels: hand-built graphs with exact expected kernels and features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnx_graphs import make
from torch import nn

from hwlab.errors import HwlabError
from hwlab.predictors.graph import (
    CATEGORY_OF_ONNX,
    PATTERNS,
    GraphError,
    UnknownOpError,
    kernel_summary,
    module_kernels,
    onnx_kernels,
)
from hwlab.predictors.kernels import CATEGORIES, FEATURES, FusionRules, Kernel
from hwlab.space.build import random_input, seeded_rng


def rules(*pairs: tuple[str, str]) -> FusionRules:
    return FusionRules(frozenset(pairs))


NONE = rules()


def zeros(*shape: int) -> np.ndarray:
    return np.zeros(shape, np.float32)


def conv(name: str, x: str, y: str, weight: str, *, bias: str | None = None, stride: int = 1, group: int = 1):
    inputs = [x, weight] + ([bias] if bias else [])
    return helper.make_node(
        "Conv", inputs, [y], name=name, kernel_shape=[3, 3], pads=[1, 1, 1, 1], strides=[stride, stride], group=group
    )


def types(kernels: list[Kernel]) -> list[str]:
    return [k.type for k in kernels]


def conv_relu() -> onnx.ModelProto:
    """x (1,3,8,8) -> Conv 3x3 pad 1 (4 out, bias) -> Relu."""
    return make(
        [conv("conv", "x", "c", "W", bias="B"), helper.make_node("Relu", ["c"], ["y"], name="relu")],
        {"x": [1, 3, 8, 8]},
        ["y"],
        {"W": zeros(4, 3, 3, 3), "B": zeros(4)},
    )


def test_conv_relu_fuse_into_one_kernel_with_exact_features() -> None:
    [kernel] = onnx_kernels(conv_relu(), rules(("conv", "relu")))
    assert kernel.type == "conv+relu"
    assert kernel.nodes == ("conv", "relu")
    out = 4 * 8 * 8
    assert kernel.features == {
        "h": 8.0,
        "w": 8.0,
        "cin": 3.0,
        "cout": 4.0,
        "kernel": 3.0,
        "stride": 1.0,
        "groups": 1.0,
        "flops": float(2 * out * 3 * 3 * 3 + out),  # 2 x MACs, then one op per element for the relu
        "params": float(4 * 3 * 3 * 3 + 4),
        "bytes_in": float(4 * 3 * 8 * 8),
        "bytes_out": float(4 * out),
    }
    assert list(kernel.features) == list(FEATURES)


def test_without_rules_conv_and_relu_are_two_kernels() -> None:
    first, second = onnx_kernels(conv_relu(), NONE)
    assert (first.type, second.type) == ("conv", "relu")
    assert first.features["flops"] == 2 * 256 * 27
    assert second.features == {
        **dict.fromkeys(FEATURES, 0.0),
        **{"h": 8.0, "w": 8.0, "cin": 4.0, "cout": 4.0, "flops": 256.0, "bytes_in": 1024.0, "bytes_out": 1024.0},
    }


def test_depthwise_conv_is_dwconv() -> None:
    model = make([conv("dw", "x", "y", "W", stride=2, group=4)], {"x": [1, 4, 8, 8]}, ["y"], {"W": zeros(4, 1, 3, 3)})
    [kernel] = onnx_kernels(model, NONE)
    assert kernel.type == "dwconv"
    f = kernel.features
    assert (f["cin"], f["cout"], f["groups"], f["kernel"], f["stride"]) == (4, 4, 4, 3, 2)
    assert (f["flops"], f["params"], f["bytes_out"]) == (2 * 4 * 4 * 4 * 9, 36, 4 * 64)


@pytest.mark.parametrize(("cout", "group"), [(8, 2), (8, 4)])  # plain groups; depth multiplier 2
def test_grouped_conv_stays_conv_with_groups(cout: int, group: int) -> None:
    model = make(
        [conv("g", "x", "y", "W", group=group)], {"x": [1, 4, 8, 8]}, ["y"], {"W": zeros(cout, 4 // group, 3, 3)}
    )
    [kernel] = onnx_kernels(model, NONE)
    assert kernel.type == "conv"
    assert kernel.features["groups"] == group
    assert kernel.features["flops"] == 2 * cout * 64 * (4 // group) * 9


def test_branching_output_never_fuses() -> None:
    model = make(
        [
            conv("conv", "x", "c", "W"),
            helper.make_node("Relu", ["c"], ["r"], name="relu"),
            helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
        ],
        {"x": [1, 4, 8, 8]},
        ["r", "s"],
        {"W": zeros(4, 4, 3, 3)},
    )
    assert types(onnx_kernels(model, rules(("conv", "relu"), ("conv", "sigmoid")))) == ["conv", "relu", "sigmoid"]


def test_graph_output_never_fuses() -> None:
    model = conv_relu()
    model.graph.output.append(helper.make_tensor_value_info("c", TensorProto.FLOAT, None))
    assert types(onnx_kernels(model, rules(("conv", "relu")))) == ["conv", "relu"]


def residual() -> onnx.ModelProto:
    """x -> Conv -> Add(conv, x) -> Relu: the residual x is an extra input of the fused kernel."""
    return make(
        [
            conv("conv", "x", "c", "W"),
            helper.make_node("Add", ["c", "x"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W": zeros(4, 4, 3, 3)},
    )


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("conv", "add"), ("add", "relu")], ["conv+add+relu"]),  # (previous, next) fuses
        ([("conv", "add"), ("conv", "relu")], ["conv+add+relu"]),  # (primary, next) fuses
        ([("conv", "add")], ["conv+add", "relu"]),
        ([("add", "relu")], ["conv", "add+relu"]),
        ([("conv", "relu")], ["conv", "add", "relu"]),  # conv+add never formed, so conv is not add's primary
    ],
)
def test_chain_rule_accepts_previous_or_primary_pair(pairs: list[tuple[str, str]], expected: list[str]) -> None:
    assert types(onnx_kernels(residual(), rules(*pairs))) == expected


def test_residual_kernel_reads_its_shared_input_once() -> None:
    [kernel] = onnx_kernels(residual(), rules(("conv", "add"), ("add", "relu")))
    assert kernel.nodes == ("conv", "add", "relu")
    assert kernel.features["bytes_in"] == 4 * 256  # x feeds both conv and add: read once
    assert kernel.features["flops"] == 2 * 256 * 36 + 256 + 256


@pytest.mark.parametrize(
    ("pairs", "expected"),
    [
        ([("conv", "bn"), ("conv", "relu")], ["conv+bn+relu"]),
        ([("conv", "bn"), ("bn", "relu")], ["conv+bn+relu"]),
        ([("conv", "bn")], ["conv+bn", "relu"]),
    ],
)
def test_conv_bn_relu_chain(pairs: list[tuple[str, str]], expected: list[str]) -> None:
    bn = helper.make_node("BatchNormalization", ["c", "s", "b", "m", "v"], ["n"], name="bn")
    model = make(
        [conv("conv", "x", "c", "W"), bn, helper.make_node("Relu", ["n"], ["y"], name="relu")],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W": zeros(4, 4, 3, 3), **{k: zeros(4) for k in "sbmv"}},
    )
    kernels = onnx_kernels(model, rules(*pairs))
    assert types(kernels) == expected
    assert kernels[0].features["params"] == 144 + 16  # conv weight and the four bn vectors


def test_kernels_are_listed_in_execution_order() -> None:
    """conv1 absorbs the add, which needs conv2 first: conv2's kernel comes first."""
    model = make(
        [
            conv("conv1", "x", "c1", "W"),
            conv("conv2", "x", "c2", "W"),
            helper.make_node("Add", ["c1", "c2"], ["y"], name="add"),
        ],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W": zeros(4, 4, 3, 3)},
    )
    kernels = onnx_kernels(model, rules(("conv", "add")))
    assert [k.nodes for k in kernels] == [("conv2",), ("conv1", "add")]
    assert kernels[1].features["bytes_in"] == 2 * 4 * 256  # x and c2
    assert kernels[1].features["params"] == 144  # shared W counted once


def test_gemm_relu_is_fc_relu() -> None:
    model = make(
        [
            helper.make_node("Gemm", ["x", "W", "B"], ["g"], name="fc", transB=1),
            helper.make_node("Relu", ["g"], ["y"], name="relu"),
        ],
        {"x": [1, 32]},
        ["y"],
        {"W": zeros(10, 32), "B": zeros(10)},
    )
    [kernel] = onnx_kernels(model, rules(("fc", "relu")))
    assert kernel.type == "fc+relu"
    f = kernel.features
    assert (f["h"], f["w"], f["cin"], f["cout"], f["kernel"], f["stride"], f["groups"]) == (1, 1, 32, 10, 0, 0, 0)
    assert (f["flops"], f["params"], f["bytes_in"], f["bytes_out"]) == (2 * 320 + 10, 330, 128, 40)


def test_matmul_with_constant_2d_weight_is_fc() -> None:
    model = make([helper.make_node("MatMul", ["x", "W"], ["y"], name="mm")], {"x": [1, 16]}, ["y"], {"W": zeros(16, 8)})
    [kernel] = onnx_kernels(model, NONE)
    assert (kernel.type, kernel.features["cin"], kernel.features["cout"], kernel.features["flops"]) == (
        "fc",
        16,
        8,
        256,
    )


def test_matmul_of_two_activations_is_its_own_kernel() -> None:
    model = make([helper.make_node("MatMul", ["a", "b"], ["y"], name="mm")], {"a": [1, 4], "b": [4, 4]}, ["y"])
    (kernel,) = onnx_kernels(model, NONE)
    assert kernel.type == "matmul" and (kernel.features["cin"], kernel.features["cout"]) == (4, 4)
    assert kernel.features["flops"] == 2 * 4 * 4


def test_constant_and_shape_feeding_reshape_are_not_kernels() -> None:
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"], name="shape"),
        helper.make_node("Constant", [], ["zero"], name="zero", value=numpy_helper.from_array(np.array(0, np.int64))),
        helper.make_node("Gather", ["shape", "zero"], ["batch"], name="batch", axis=0),
        helper.make_node("Unsqueeze", ["batch", "axes"], ["batch1"], name="unsq"),
        helper.make_node("Constant", [], ["rest"], name="rest", value_ints=[-1]),
        helper.make_node("Concat", ["batch1", "rest"], ["target"], name="cat", axis=0),
        helper.make_node("Reshape", ["x", "target"], ["y"], name="reshape"),
    ]
    model = make(nodes, {"x": [1, 4, 8, 8]}, ["y"], {"axes": np.array([0], np.int64)})
    [kernel] = onnx_kernels(model, NONE)
    assert (kernel.type, kernel.nodes) == ("reshape", ("reshape",))
    assert (kernel.features["params"], kernel.features["bytes_in"], kernel.features["bytes_out"]) == (0, 1024, 1024)


def test_identity_is_not_a_kernel_and_does_not_block_fusion() -> None:
    model = make(
        [
            conv("conv", "x", "c", "W"),
            helper.make_node("Identity", ["c"], ["i"], name="id"),
            helper.make_node("Relu", ["i"], ["r"], name="relu"),
            helper.make_node("Identity", ["r"], ["y"], name="id_out"),
        ],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W": zeros(4, 4, 3, 3)},
    )
    [kernel] = onnx_kernels(model, rules(("conv", "relu")))
    assert (kernel.type, kernel.nodes, kernel.features["bytes_out"]) == ("conv+relu", ("conv", "relu"), 1024)


def test_unknown_op_is_an_error_naming_type_node_and_fix() -> None:
    model = make(
        [
            conv("conv", "x", "c", "W"),
            helper.make_node("LRN", ["c"], ["l"], name="lrn", size=3),
            helper.make_node("Erf", ["l"], ["y"], name="erf"),
        ],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W": zeros(4, 4, 3, 3)},
    )
    with pytest.raises(UnknownOpError) as caught:
        onnx_kernels(model, NONE)
    message = str(caught.value)
    assert "LRN (node 'lrn')" in message and "Erf (node 'erf')" in message
    assert "allow_unknown=True" in message and "--allow-unknown" in message and "profile" in message
    assert caught.value.nodes == {"LRN": ("lrn",), "Erf": ("erf",)}
    assert isinstance(caught.value, HwlabError)

    kernels = onnx_kernels(model, rules(("conv", "relu")), allow_unknown=True)
    assert types(kernels) == ["conv", "unknown:LRN", "unknown:Erf"]
    assert kernels[1].features["bytes_in"] == kernels[1].features["bytes_out"] == 1024


def test_symbolic_batch_is_one_and_input_model_is_left_alone() -> None:
    model = conv_relu()
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    [kernel] = onnx_kernels(model, rules(("conv", "relu")))
    assert kernel.features["bytes_in"] == 4 * 3 * 64
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "N"


def test_symbolic_spatial_size_is_an_error() -> None:
    model = conv_relu()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "H"
    with pytest.raises(GraphError, match="no static shape") as caught:
        onnx_kernels(model, NONE)
    assert "fixed input shapes" in str(caught.value)


def test_file_paths_and_unsorted_nodes(tmp_path: Path) -> None:
    model = conv_relu()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend(reversed(nodes))  # invalid order in the file; kernels must not care
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    assert types(onnx_kernels(path, rules(("conv", "relu")))) == ["conv+relu"]
    assert types(onnx_kernels(str(path), NONE)) == ["conv", "relu"]


@pytest.mark.parametrize(
    ("content", "said"), [(b"not a model", "is not an ONNX model"), (b"", "is empty"), (None, "cannot read")]
)
def test_unreadable_files_are_graph_errors(tmp_path: Path, content: bytes | None, said: str) -> None:
    path = tmp_path / "bad.onnx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(GraphError, match=said):
        onnx_kernels(path, NONE)


def test_a_tflite_file_is_checked_and_predict_says_it_reads_onnx(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hwlab.cli import main

    monkeypatch.setenv("COLUMNS", "1000")  # one print, one line
    from hwlab.tflitefile import check_tflite

    good = tmp_path / "model.tflite"
    good.write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(64))  # a FlatBuffer's root offset, then the identifier
    assert check_tflite(good) == good
    for name, content in (
        ("empty.tflite", b""),
        ("onnx.tflite", b"\x08\x07\x12\x07pytorch"),
        ("html.tflite", b"<html>"),
    ):
        (tmp_path / name).write_bytes(content)
        with pytest.raises(GraphError, match="is not a TFLite model"):
            check_tflite(tmp_path / name)
    with pytest.raises(GraphError, match="cannot read"):
        check_tflite(tmp_path / "missing.tflite")
    assert main(["predict", str(good), "--predictors-dir", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "is a TFLite model; hwlab predicts from ONNX graphs" in err and "fix:" in err


def test_an_absurd_input_size_is_refused_before_shape_inference(tmp_path: Path) -> None:
    model = make([helper.make_node("Relu", ["x"], ["y"], name="r")], {"x": [1, 3, 100000, 100000]}, ["y"])
    path = tmp_path / "huge.onnx"
    onnx.save(model, str(path))
    with pytest.raises(GraphError, match="refused as absurd"):
        onnx_kernels(path, NONE)


def test_external_data_outside_the_models_folder_is_refused(tmp_path: Path) -> None:
    weights = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), name="w")
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weights],
    )  # fmt: skip
    model = helper.make_model(graph)
    (tmp_path / "models").mkdir()
    path = tmp_path / "models" / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, location="w.bin", size_threshold=0)
    (tmp_path / "secret.bin").write_bytes((tmp_path / "models" / "w.bin").read_bytes())
    saved = onnx.load(str(path), load_external_data=False)
    for entry in saved.graph.initializer[0].external_data:  # a hostile file: its data lives outside its folder
        if entry.key == "location":
            entry.value = "../secret.bin"
    path.write_bytes(saved.SerializeToString())
    with pytest.raises(GraphError, match="not a file beside the model"):
        onnx_kernels(path, NONE)


def test_unnamed_nodes_get_type_and_index_names() -> None:
    model = make([helper.make_node("Relu", ["x"], ["y"])], {"x": [1, 4]}, ["y"])
    assert onnx_kernels(model, NONE)[0].nodes == ("Relu_0",)


def test_mapping_tables_only_use_known_categories() -> None:
    assert set(CATEGORY_OF_ONNX.values()) | set(PATTERNS.values()) <= set(CATEGORIES)


def test_kernel_summary_counts_types_in_order() -> None:
    kernels = [Kernel(t, (), {}) for t in ("conv+relu", "maxpool", "conv+relu", "fc")]
    assert kernel_summary(kernels) == {"conv+relu": 2, "maxpool": 1, "fc": 1}
    assert list(kernel_summary(kernels)) == ["conv+relu", "maxpool", "fc"]


def test_exported_torch_model(tmp_path: Path) -> None:
    with seeded_rng(0):
        module = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, stride=2, padding=1),
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 10),
            nn.ReLU(),
            nn.Linear(10, 5),
        )
    kernels = module_kernels(
        module, random_input((1, 3, 16, 16)), rules(("conv", "relu"), ("fc", "relu")), cache_dir=tmp_path
    )
    assert types(kernels) == ["conv+relu", "maxpool", "conv", "flatten", "fc+relu", "fc"]  # BN folded by export
    first = kernels[0].features
    assert (first["h"], first["cin"], first["cout"], first["kernel"], first["stride"]) == (16, 3, 8, 3, 1)
    assert first["flops"] == 2 * 8 * 256 * 27 + 8 * 256
    assert first["params"] == 8 * 27 + 8
    pool = kernels[1].features
    assert (pool["kernel"], pool["stride"], pool["flops"], pool["bytes_out"]) == (2, 2, 8 * 64 * 4, 4 * 8 * 64)
    assert kernels[2].features["stride"] == 2 and kernels[2].features["cout"] == 16
    assert (kernels[4].features["cin"], kernels[4].features["cout"]) == (256, 10)


def test_dropout_is_an_alias_and_constant_only_nodes_are_folded() -> None:
    """Dropout runs as identity at inference; a node fed only by constants is computed before the run."""
    model = make(
        [
            helper.make_node("Transpose", ["W0"], ["W"], name="prep", perm=[1, 0, 2, 3]),  # folded: constant input
            conv("conv", "x", "c", "W"),
            helper.make_node("Dropout", ["c"], ["d"], name="drop"),
            helper.make_node("Relu", ["d"], ["y"], name="relu"),
        ],
        {"x": [1, 4, 8, 8]},
        ["y"],
        {"W0": zeros(4, 4, 3, 3)},
    )
    [kernel] = onnx_kernels(model, rules(("conv", "relu")))
    assert (kernel.type, kernel.nodes, kernel.features["params"]) == ("conv+relu", ("conv", "relu"), 144)


def test_custom_domain_op_is_unknown_even_with_a_known_name() -> None:
    node = helper.make_node("Relu", ["x"], ["y"], name="custom", domain="com.example")
    model = make([node], {"x": [1, 4]}, ["y"])
    model.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnknownOpError, match="Relu \\(node 'custom': custom domain 'com.example'\\)"):
        onnx_kernels(model, NONE)
    [kernel] = onnx_kernels(model, NONE, allow_unknown=True)
    assert kernel.type == "unknown:Relu"
    assert kernel.features["bytes_in"] == 16  # known input shape; the unknown output shape counts 0

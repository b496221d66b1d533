"""Each block's deploy form computes its train form's function (random weights, non-trivial BN statistics)."""

from __future__ import annotations

import onnx
import pytest
import torch
from torch import nn

from hwlab.errors import ReparamError
from hwlab.export import export_module
from hwlab.reparam import (
    ACBlock,
    CondConv,
    ConvBNBlock,
    FReLU,
    RepVGGBlock,
    SEConv,
    WeightNetConv,
    check_equivalence,
    reparam,
    reparam_with_report,
)
from hwlab.reparam.nets import BlockSpec, PlainNet, randomise_bn, repvgg_a0

# What the conversions reach on these shapes: fp32 rounding, orders below the tolerance (1e-4).
EXACT = 1e-5


def _train(module: nn.Module, seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return randomise_bn(module, seed).eval()


@pytest.mark.parametrize(
    ("block", "shape"),
    [
        (lambda: RepVGGBlock(8, 8, 1), (2, 8, 9, 9)),  # identity branch
        (lambda: RepVGGBlock(8, 16, 2), (2, 8, 9, 9)),  # stride 2, no identity
        (lambda: RepVGGBlock(8, 8, 1, groups=4), (2, 8, 9, 9)),  # grouped, identity per group
        (lambda: RepVGGBlock(8, 8, 1, act="frelu"), (2, 8, 7, 7)),
        (lambda: ACBlock(8, 8, 3, 1), (2, 8, 9, 9)),
        (lambda: ACBlock(8, 12, 5, 2, groups=4), (2, 8, 11, 11)),
        (lambda: ConvBNBlock(8, 8, 3, 2, act="relu6"), (2, 8, 10, 10)),
        (lambda: FReLU(8), (2, 8, 7, 7)),
    ],
)
def test_each_conversion_is_exact(block, shape) -> None:  # type: ignore[no-untyped-def]
    train = _train(block())
    deployed = reparam(train)
    result = check_equivalence(train, deployed, shape, trials=3)
    assert result.ok and result.max_rel < EXACT
    # The BN statistics were not the identity: a conversion ignoring them would be far off.
    assert any(
        float(bn.running_var.sub(1).abs().max()) > 0.1 for bn in train.modules() if isinstance(bn, nn.BatchNorm2d)
    )


def test_a_deploy_form_is_one_conv_with_bias() -> None:
    deployed = reparam(_train(RepVGGBlock(8, 8, 1)))
    convs = [m for m in deployed.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 and convs[0].kernel_size == (3, 3) and convs[0].bias is not None
    assert not [m for m in deployed.modules() if isinstance(m, nn.BatchNorm2d)]


def test_the_trained_model_is_left_as_it_was() -> None:
    train = _train(RepVGGBlock(8, 8, 1))
    before = {k: v.clone() for k, v in train.state_dict().items()}
    reparam(train)
    assert all(torch.equal(before[k], v) for k, v in train.state_dict().items())
    assert isinstance(train, RepVGGBlock)


def test_a_block_that_cannot_be_converted_is_named() -> None:
    net = PlainNet(3, [BlockSpec("conv", "relu", 8, 1), BlockSpec("repvgg", "relu", 8, 1)], 10, 16)
    net.blocks[1].pointwise[1] = nn.BatchNorm2d(8, track_running_stats=False)
    with pytest.raises(ReparamError, match=r"blocks\.1 \(RepVGGBlock\)\.pointwise.*no running statistics"):
        reparam(net)


def test_a_non_finite_variance_is_refused() -> None:
    block = _train(FReLU(4))
    block.bn.running_var[0] = float("nan")
    with pytest.raises(ReparamError, match="running variance"):
        reparam(block)


def test_an_even_acnet_kernel_is_refused() -> None:
    with pytest.raises(ReparamError, match="odd kernel"):
        ACBlock(4, 4, 4)


def test_a_wrong_deploy_form_fails_the_check() -> None:
    train = _train(RepVGGBlock(8, 8, 1))
    deployed = reparam(train)
    with torch.no_grad():
        deployed[0].weight[0, 0, 0, 0] += 0.5
    with pytest.raises(ReparamError, match="above the tolerance"):
        check_equivalence(train, deployed, (1, 8, 8, 8))
    assert not check_equivalence(train, deployed, (1, 8, 8, 8), strict=False).ok


def _onnx_ops(module: nn.Module, shape: tuple[int, ...], cache) -> list[str]:  # type: ignore[no-untyped-def]
    path = export_module(module, torch.randn(shape), "onnx", cache_dir=cache).path
    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_the_deploy_graph_holds_one_conv_per_block(tmp_path) -> None:  # type: ignore[no-untyped-def]
    train = _train(repvgg_a0(num_classes=10, input_size=64))
    deployed, conversion = reparam_with_report(train)
    assert conversion.count == 22
    ops = _onnx_ops(deployed, (1, 3, 64, 64), tmp_path)
    assert ops.count("Conv") == 22 and ops.count("Relu") == 22
    assert "BatchNormalization" not in ops and "Add" not in ops
    train_ops = _onnx_ops(train, (1, 3, 64, 64), tmp_path)
    assert train_ops.count("Conv") == 44 and train_ops.count("Add") > 22  # 3x3 and 1x1 per block, summed
    frelu = reparam(_train(repvgg_a0("repvgg", "frelu", 10, 64)))
    ops = _onnx_ops(frelu, (1, 3, 64, 64), tmp_path)
    assert ops.count("Conv") == 44 and ops.count("Max") == 22 and "BatchNormalization" not in ops


def test_weightnet_extremes_are_se_and_condconv() -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 8, 10, 10)
    se = SEConv(8, 16, 3, 2)
    assert torch.allclose(WeightNetConv.from_se(se)(x), se(x), atol=1e-5)
    cond = CondConv(8, 16, 3, 1, experts=4)
    assert torch.allclose(WeightNetConv.from_condconv(cond)(x), cond(x), atol=1e-5)
    # Per-sample weights: each sample's output is what it gets alone.
    net = WeightNetConv(8, 16, 3, 1, m=2, g=4)
    assert torch.allclose(net(x)[1:2], net(x[1:2]), atol=1e-5)


def test_weightnet_groups_must_divide_cout() -> None:
    with pytest.raises(ReparamError, match="G=3 must divide cout=16"):
        WeightNetConv(8, 16, g=3)

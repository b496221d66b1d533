"""Re-parameterisable blocks: trained with several branches, deployed as one convolution.

* :class:`RepVGGBlock` (Ding et al., CVPR 2021): 3x3 conv-BN + 1x1 conv-BN (+ a BN identity branch when
  input and output shapes agree), summed, then the activation. Deploy form: one 3x3 conv with a bias.
* :class:`ACBlock` (ACNet, Ding et al., ICCV 2019): kxk, 1xk and kx1 conv-BN branches summed. Deploy
  form: one kxk conv (the 1xk and kx1 kernels added into its centre row and column).
* :class:`ConvBNBlock`: a plain kxk conv-BN (the baseline choice of a search); deploy form: conv + bias.
* :class:`FReLU` (Ma et al., ECCV 2020): ``max(x, BN(DWConv3x3(x)))``; deploy form: the BN folded into the
  depthwise conv, so the graph holds a depthwise conv with a bias and a Max.

Every block says how to build its deploy form (``deploy_form``); ``hwlab.reparam.reparam`` walks a
model and swaps them. The activation of a block is a name (``relu``, ``relu6``, ``hswish``, ``frelu`` or
``none``), so a search can choose it and the deploy form keeps it.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable

import torch
from torch import nn

from hwlab.errors import ReparamError
from hwlab.reparam.fold import check_foldable, deploy_conv, fold_bn, identity_kernel, pad_to

BLOCK_ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "hswish", "frelu", "none")


class RepBlock(nn.Module):
    """A block with a deploy form: ``deploy_form(where)`` returns the module that computes the same function
    in inference mode, or raises :class:`ReparamError` naming ``where`` (the block's path in its model)."""

    def deploy_form(self, where: str) -> nn.Module:
        raise NotImplementedError


class FReLU(RepBlock):
    """Funnel activation: the larger of x and a BN'd 3x3 depthwise conv of x (a spatial condition)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(x, self.bn(self.conv(x)))

    def deploy_form(self, where: str) -> nn.Module:
        check_foldable(self.bn, where)
        weight, bias = fold_bn(self.conv.weight, None, self.bn)
        return FReLUDeploy(deploy_conv(self.conv, weight, bias))


class FReLUDeploy(nn.Module):
    """FReLU after folding: ``max(x, DWConv3x3(x) + b)``."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(x, self.conv(x))


def activation(name: str, channels: int) -> nn.Module:
    """The activation called ``name`` for ``channels`` channels (FReLU has weights; the rest none)."""
    makers: dict[str, Callable[[], nn.Module]] = {
        "relu": nn.ReLU,
        "relu6": nn.ReLU6,
        "hswish": nn.Hardswish,
        "frelu": lambda: FReLU(channels),
        "none": nn.Identity,
    }
    if name not in makers:
        raise ReparamError(f"unknown activation {name!r}", hint=f"use one of: {', '.join(BLOCK_ACTIVATIONS)}")
    return makers[name]()


def _conv_bn(cin: int, cout: int, kernel: tuple[int, int], stride: int, groups: int) -> nn.Sequential:
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, padding, groups=groups, bias=False),
                         nn.BatchNorm2d(cout))  # fmt: skip


def _folded(branch: nn.Sequential, where: str) -> tuple[torch.Tensor, torch.Tensor]:
    conv, bn = branch
    check_foldable(bn, where)
    return fold_bn(conv.weight, conv.bias, bn)


class _MultiBranch(RepBlock):
    """Branches that all read the block input, summed, then the activation."""

    act_name: str
    act: nn.Module

    def branches(self) -> list[nn.Module]:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = [branch(x) for branch in self.branches()]
        return self.act(functools.reduce(operator.add, outputs))  # no constant 0 in the graph

    def _deploy_act(self, where: str) -> nn.Module:
        return self.act.deploy_form(f"{where}.act") if isinstance(self.act, RepBlock) else self.act

    def _deployed(self, like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor, where: str) -> nn.Sequential:
        return nn.Sequential(deploy_conv(like, weight, bias), self._deploy_act(where))


class RepVGGBlock(_MultiBranch):
    """3x3 conv-BN + 1x1 conv-BN (+ identity BN when ``cin == cout`` and stride 1), then the activation."""

    def __init__(self, cin: int, cout: int, stride: int = 1, groups: int = 1, act: str = "relu") -> None:
        super().__init__()
        self.cin, self.cout, self.stride, self.groups, self.act_name = cin, cout, stride, groups, act
        self.dense = _conv_bn(cin, cout, (3, 3), stride, groups)
        self.pointwise = _conv_bn(cin, cout, (1, 1), stride, groups)
        self.identity = nn.BatchNorm2d(cin) if cin == cout and stride == 1 else None
        self.act = activation(act, cout)

    def branches(self) -> list[nn.Module]:
        return [self.dense, self.pointwise] + ([self.identity] if self.identity is not None else [])

    def deploy_form(self, where: str) -> nn.Module:
        weight, bias = _folded(self.dense, f"{where}.dense")
        w1, b1 = _folded(self.pointwise, f"{where}.pointwise")
        weight, bias = weight + pad_to(w1, 3, 3), bias + b1
        if self.identity is not None:
            check_foldable(self.identity, f"{where}.identity")
            wi, bi = fold_bn(identity_kernel(self.cin, self.groups, 3, weight), None, self.identity)
            weight, bias = weight + wi, bias + bi
        return self._deployed(self.dense[0], weight, bias, where)


class ACBlock(_MultiBranch):
    """kxk, 1xk and kx1 conv-BN branches (asymmetric convolutions), summed, then the activation."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str = "relu"
    ) -> None:
        super().__init__()
        if kernel < 3 or kernel % 2 == 0:
            raise ReparamError(f"an ACNet block needs an odd kernel >= 3, got {kernel}",
                               hint="the 1xk and kx1 branches are added into the kxk kernel's centre")  # fmt: skip
        self.kernel, self.act_name = kernel, act
        self.square = _conv_bn(cin, cout, (kernel, kernel), stride, groups)
        self.horizontal = _conv_bn(cin, cout, (1, kernel), stride, groups)
        self.vertical = _conv_bn(cin, cout, (kernel, 1), stride, groups)
        self.act = activation(act, cout)

    def branches(self) -> list[nn.Module]:
        return [self.square, self.horizontal, self.vertical]

    def deploy_form(self, where: str) -> nn.Module:
        k = self.kernel
        weight, bias = _folded(self.square, f"{where}.square")
        for name in ("horizontal", "vertical"):
            w, b = _folded(getattr(self, name), f"{where}.{name}")
            weight, bias = weight + pad_to(w, k, k), bias + b
        return self._deployed(self.square[0], weight, bias, where)


class ConvBNBlock(_MultiBranch):
    """A plain kxk conv-BN, then the activation: the single-branch baseline."""

    def __init__(
        self, cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1, act: str = "relu"
    ) -> None:
        super().__init__()
        self.act_name = act
        self.conv = _conv_bn(cin, cout, (kernel, kernel), stride, groups)
        self.act = activation(act, cout)

    def branches(self) -> list[nn.Module]:
        return [self.conv]

    def deploy_form(self, where: str) -> nn.Module:
        weight, bias = _folded(self.conv, f"{where}.conv")
        return self._deployed(self.conv[0], weight, bias, where)


BLOCK_TYPES: dict[str, type[_MultiBranch]] = {"repvgg": RepVGGBlock, "acb": ACBlock, "conv": ConvBNBlock}


def make_block(kind: str, cin: int, cout: int, stride: int, act: str) -> _MultiBranch:
    """One 3x3 block of ``kind`` (``repvgg``, ``acb`` or ``conv``): the choices of ``--space repvgg``."""
    if kind == "repvgg":
        return RepVGGBlock(cin, cout, stride, act=act)
    if kind in BLOCK_TYPES:
        return BLOCK_TYPES[kind](cin, cout, 3, stride, act=act)  # type: ignore[call-arg]
    raise ReparamError(f"unknown block {kind!r}", hint=f"use one of: {', '.join(BLOCK_TYPES)}")

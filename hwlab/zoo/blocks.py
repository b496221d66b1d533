"""Layers shared by the random families: conv-norm-act, inverted residual, basic block, head."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional

NUM_CLASSES = 1000


class _ConstantPad(torch.autograd.Function):
    """Zero padding whose ONNX form is one Pad node with constant pads (torch's own pad exports its pads
    as a chain of ops that ONNX shape inference cannot follow)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, pad: int) -> torch.Tensor:  # type: ignore[override]
        return functional.pad(x, (pad, pad, pad, pad))

    @staticmethod
    def symbolic(g: Any, x: Any, pad: int) -> Any:
        pads = g.op("Constant", value_t=torch.tensor([0, 0, pad, pad, 0, 0, pad, pad], dtype=torch.int64))
        return g.op("Pad", x, pads, mode_s="constant")


class ZeroPad(nn.Module):
    """``pad`` zeros on each side of H and W, exported as one Pad with constant pads."""

    def __init__(self, pad: int) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _ConstantPad.apply(x, self.pad)


def out_size(size: int, stride: int) -> int:
    """Side after a same-padded odd-kernel conv or pool of `stride`: ceil(size / stride)."""
    return -(-size // stride)


def conv_norm_act(
    cin: int,
    cout: int,
    kernel: int,
    stride: int = 1,
    groups: int = 1,
    act: type[nn.Module] | None = nn.ReLU,
    norm: bool = True,
) -> nn.Sequential:
    """Same-padded conv (bias only without BN), then BN if `norm`, then `act` if given."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=not norm)]
    if norm:
        layers.append(nn.BatchNorm2d(cout))
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """MobileNetV2 block: expand 1x1 + BN + ReLU6 (absent at expansion 1), depthwise kxk + BN + ReLU6,
    project 1x1 + BN; the input is added back when stride is 1 and cin == cout."""

    def __init__(self, cin: int, cout: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(conv_norm_act(cin, hidden, 1, act=nn.ReLU6))
        layers.append(conv_norm_act(hidden, hidden, kernel, stride, groups=hidden, act=nn.ReLU6))
        layers.append(conv_norm_act(hidden, cout, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


class BasicBlock(nn.Module):
    """ResNet basic block: 3x3 conv + BN + ReLU, 3x3 conv + BN, add the shortcut, ReLU.

    The shortcut is the identity, or a strided 1x1 conv + BN when the shape changes.
    """

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_norm_act(cin, cout, 3, stride), conv_norm_act(cout, cout, 3, act=None))
        self.shortcut = conv_norm_act(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else nn.Identity()
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.body(x) + self.shortcut(x))


def classifier(cin: int) -> nn.Sequential:
    """Global average pool, flatten, Linear to NUM_CLASSES."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(cin, NUM_CLASSES))

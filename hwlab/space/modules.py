"""Torch modules for the ops that torch.nn lacks: two-input ops, shuffles, SPOS blocks.

The SPOS blocks follow the Single Path One-Shot ShuffleNetV2 supernet
(Guo et al., ECCV 2020) layer for layer, so the exported graph holds the same
convolutions, BatchNorms, reshapes and transposes the real network runs:

* stride 1: the input (C channels) is split by the channel-pair shuffle into two
  halves; one passes through, the main branch works on the other, and the
  results are concatenated (C channels out).
* stride 2: the whole input feeds both the main branch and a projection branch
  (dw kxk stride 2 + BN + pw + BN + ReLU), concatenated to cout channels.

BatchNorm layers use the default affine=True: the supernet's affine=False is a
training detail, and at inference either form folds into the preceding conv.
"""

from __future__ import annotations

import torch
from torch import nn


class Add(nn.Module):
    """Elementwise sum of two tensors."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Concat(nn.Module):
    """Channel concatenation of two NCHW tensors."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat((a, b), dim=1)


class ChannelShuffle(nn.Module):
    """ShuffleNet channel shuffle: interleave `groups` channel groups."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        grouped = x.reshape(n, self.groups, c // self.groups, h, w)
        return grouped.transpose(1, 2).reshape(n, c, h, w)


def split_shuffle(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Split channels into even and odd halves the way the SPOS blocks do.

    Channel pairs (2i, 2i+1) are separated with a reshape and a transpose, which is
    what the exported graph of the real network contains.
    """
    n, c, h, w = x.shape
    pairs = x.reshape(n * c // 2, 2, h * w)
    halves = pairs.transpose(0, 1).reshape(2, n, c // 2, h, w)
    return halves[0], halves[1]


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    """Bias-free conv with same padding, then BN, then ReLU if asked."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    return layers


class _SposBlock(nn.Module):
    """Split/concat skeleton shared by the two SPOS choice blocks."""

    def __init__(self, cin: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.branch_proj: nn.Module | None = None
        if stride == 2:
            self.branch_proj = nn.Sequential(
                *conv_bn(cin, cin, kernel, stride, groups=cin, relu=False),
                *conv_bn(cin, cin, 1),
            )

    branch_main: nn.Module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.branch_proj is None:
            passed, x = split_shuffle(x)
            return torch.cat((passed, self.branch_main(x)), dim=1)
        return torch.cat((self.branch_proj(x), self.branch_main(x)), dim=1)


class SposShuffleBlock(_SposBlock):
    """ShuffleNetV2 unit: pw + BN + ReLU, dw kxk + BN, pw + BN + ReLU on the main branch.

    cin is the block's full input channel count (the split happens inside).
    """

    def __init__(self, cin: int, cout: int, mid: int, kernel: int, stride: int) -> None:
        super().__init__(cin, kernel, stride)
        branch_in = cin // 2 if stride == 1 else cin
        self.branch_main = nn.Sequential(
            *conv_bn(branch_in, mid, 1),
            *conv_bn(mid, mid, kernel, stride, groups=mid, relu=False),
            *conv_bn(mid, cout - branch_in, 1),
        )


class SposXceptionBlock(_SposBlock):
    """Shuffle-Xception unit: three (dw 3x3 + BN, pw + BN + ReLU) pairs on the main branch.

    Only the first depthwise conv carries the stride.
    """

    def __init__(self, cin: int, cout: int, mid: int, stride: int) -> None:
        super().__init__(cin, 3, stride)
        branch_in = cin // 2 if stride == 1 else cin
        self.branch_main = nn.Sequential(
            *conv_bn(branch_in, branch_in, 3, stride, groups=branch_in, relu=False),
            *conv_bn(branch_in, mid, 1),
            *conv_bn(mid, mid, 3, groups=mid, relu=False),
            *conv_bn(mid, mid, 1),
            *conv_bn(mid, mid, 3, groups=mid, relu=False),
            *conv_bn(mid, cout - branch_in, 1),
        )

"""Whole networks built from the re-parameterisable blocks, in train form (``reparam`` gives deploy form).

* :func:`repvgg_a0`: RepVGG-A0's layout (Ding et al., 2021): widths 48, 48, 96, 192, 1280 and depths
  1, 2, 4, 14, 1, every stage opening with a stride-2 block, global pooling and a classifier; the first
  block of a stage has no identity branch (its shape changes), the others do.
* :func:`acnet_resnet18`: ResNet-18 with every square convolution an ACNet block (the stem's 7x7 too)
  and the 1x1 shortcut projections conv-BN blocks, as ACNet's ResNet experiments replace them.
* :class:`PlainNet`: a stem and a list of blocks given one by one, so ``--space repvgg`` candidates
  (each block repvgg/acb/conv with relu/frelu) are the same class.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hwlab.reparam.blocks import ACBlock, ConvBNBlock, make_block


@dataclass(frozen=True)
class BlockSpec:
    """One 3x3 block of a plain network: its type, activation, output channels and stride."""

    kind: str  # repvgg | acb | conv
    act: str  # relu | frelu | ...
    cout: int
    stride: int


class PlainNet(nn.Module):
    """A VGG-style plain network: blocks in sequence, global average pooling, a linear classifier."""

    def __init__(self, in_channels: int, blocks: Sequence[BlockSpec], num_classes: int, input_size: int) -> None:
        super().__init__()
        self.input_shape = (1, in_channels, input_size, input_size)
        layers, cin = [], in_channels
        for spec in blocks:
            layers.append(make_block(spec.kind, cin, spec.cout, spec.stride, spec.act))
            cin = spec.cout
        self.blocks = nn.Sequential(*layers)
        self.classifier = nn.Linear(cin, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(nn.functional.adaptive_avg_pool2d(self.blocks(x), 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


REPVGG_A0_WIDTHS = (48, 48, 96, 192, 1280)
REPVGG_A0_DEPTHS = (1, 2, 4, 14, 1)


def repvgg_a0(kind: str = "repvgg", act: str = "relu", num_classes: int = 1000, input_size: int = 224) -> PlainNet:
    """RepVGG-A0's layout with every block of ``kind`` and ``act`` (``conv`` gives its plain VGG twin)."""
    blocks = [
        BlockSpec(kind, act, width, 2 if i == 0 else 1)
        for width, depth in zip(REPVGG_A0_WIDTHS, REPVGG_A0_DEPTHS, strict=True)
        for i in range(depth)
    ]
    return PlainNet(3, blocks, num_classes, input_size)


class _BasicBlock(nn.Module):
    """ResNet's basic block with ACNet blocks for its two 3x3 convolutions."""

    def __init__(self, cin: int, cout: int, stride: int, act: str) -> None:
        super().__init__()
        self.body = nn.Sequential(ACBlock(cin, cout, 3, stride, act=act), ACBlock(cout, cout, 3, 1, act="none"))
        self.shortcut = ConvBNBlock(cin, cout, 1, stride, act="none") if stride != 1 or cin != cout else None
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = x if self.shortcut is None else self.shortcut(x)
        return self.act(self.body(x) + skip)


class ACNetResNet(nn.Module):
    """ResNet-18 (2, 2, 2, 2 basic blocks, 64..512 channels) built from ACNet blocks."""

    def __init__(self, num_classes: int = 1000, input_size: int = 224, act: str = "relu") -> None:
        super().__init__()
        self.input_shape = (1, 3, input_size, input_size)
        self.stem = nn.Sequential(ACBlock(3, 64, 7, 2, act=act), nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for i, width in enumerate((64, 128, 256, 512)):
            for j in range(2):
                layers.append(_BasicBlock(cin, width, 2 if i > 0 and j == 0 else 1, act))
                cin = width
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(self.layers(self.stem(x)), 1)
        return self.classifier(torch.flatten(x, 1))


def acnet_resnet18(num_classes: int = 1000, input_size: int = 224) -> ACNetResNet:
    return ACNetResNet(num_classes, input_size)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BN statistics and affine parameters (seeded), so a conversion check tests the folding."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, nn.BatchNorm2d):
                c = bn.num_features
                bn.running_mean.copy_(torch.rand(c, generator=generator) - 0.5)
                bn.running_var.copy_(torch.rand(c, generator=generator) + 0.5)
                if bn.affine:
                    bn.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                    bn.bias.copy_(torch.rand(c, generator=generator) - 0.5)
    return model

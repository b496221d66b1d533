"""The ``--space repvgg`` supernet: every block choice of every slot in train form, one path per step.

Weights are nested as in the SPOS supernet's default (``hwlab.search.supernet``): within a slot the three
block kinds share one 3x3 kernel (the RepVGG block adds its 1x1 and identity branches to it, the ACNet
block its 1x3 and 3x1 ones, the plain block runs it alone), and FReLU's depthwise kernel is shared by all
kinds; each kind keeps its own BNs. Widths are searched by slicing: a narrower candidate runs the leading
channels of every weight and BN.

A plain network has no residual path, so drawing another depth, kind or activation for a step replaces what
the next layer reads, and uniform path training stays near chance. So every path starts as the same
function: the extra branches (1x1, identity, 1x3, 3x1) and FReLU's condition start with BN scale 0 (each
kind starts as the plain conv, FReLU as ReLU), and a stage's later blocks start with an identity 3x3 kernel
(skipping one barely changes the path). Measured on the default space and the digits, 8 epochs of uniform
paths (``hwlab search --space repvgg --epochs 8``): training accuracy 18% with He initialisation everywhere,
97% with this one. BN statistics depend on the path, so a candidate's are recalibrated
before it is scored (``hwlab.search.bn.recalibrate``), and :func:`standalone` copies the path's weights
and statistics into the candidate's own train-form network, which ``hwlab.reparam.reparam`` deploys.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.reparam.blocks import ACBlock, ConvBNBlock, FReLU, RepVGGBlock
from hwlab.reparam.nets import PlainNet
from hwlab.reparam.space import RepArch, RepSpace
from hwlab.search.supernet import SlimBatchNorm


class SlimAffineBN(SlimBatchNorm):
    """BatchNorm with affine parameters over the first C channels (weights and statistics sliced)."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels)
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def affine(self, channels: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        return self.weight[:channels], self.bias[:channels]

    def copy_to(self, bn: nn.BatchNorm2d) -> None:
        c = bn.num_features
        bn.weight.copy_(self.weight[:c])
        bn.bias.copy_(self.bias[:c])
        bn.running_mean.copy_(self.running_mean[:c])
        bn.running_var.copy_(self.running_var[:c])
        bn.eps = self.eps


class SlimKernel(nn.Module):
    """A bias-free conv kernel at the widest channels; a path runs ``[:cout, :cin]`` of it."""

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int], stride: int) -> None:
        super().__init__()
        self.stride, self.padding = stride, (kernel[0] // 2, kernel[1] // 2)
        self.weight = nn.Parameter(torch.empty(cout, cin, *kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor, cout: int) -> torch.Tensor:
        return F.conv2d(x, self.weight[:cout, : x.shape[1]], None, self.stride, self.padding)

    def copy_to(self, conv: nn.Conv2d) -> None:
        conv.weight.copy_(self.weight[: conv.out_channels, : conv.in_channels])


class SlimFReLU(nn.Module):
    """FReLU at the widest channels; a path runs its first C."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(channels, 1, 3, 3))
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")
        self.bn = SlimAffineBN(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        return torch.max(x, self.bn(F.conv2d(x, self.weight[:c], None, 1, 1, groups=c)))

    def copy_to(self, frelu: FReLU) -> None:
        frelu.conv.weight.copy_(self.weight[: frelu.conv.out_channels])
        self.bn.copy_to(frelu.bn)


class ChoiceSlot(nn.Module):
    """One block position: the three kinds' branches (sharing the 3x3 kernel) and FReLU."""

    def __init__(self, cin: int, cout: int, stride: int, identity: bool) -> None:
        super().__init__()
        self.square = SlimKernel(cin, cout, (3, 3), stride)
        self.pointwise = SlimKernel(cin, cout, (1, 1), stride)
        self.horizontal = SlimKernel(cin, cout, (1, 3), stride)
        self.vertical = SlimKernel(cin, cout, (3, 1), stride)
        self.bns = nn.ModuleDict({
            "repvgg_dense": SlimAffineBN(cout), "repvgg_pointwise": SlimAffineBN(cout),
            "acb_square": SlimAffineBN(cout), "acb_horizontal": SlimAffineBN(cout), "acb_vertical": SlimAffineBN(cout),
            "conv": SlimAffineBN(cout),
        })  # fmt: skip
        self.identity = SlimAffineBN(cout) if identity else None
        self.frelu = SlimFReLU(cout)
        self._start_as_plain_conv(later=identity)

    @torch.no_grad()
    def _start_as_plain_conv(self, later: bool) -> None:
        """Every kind and activation starts as conv-BN-ReLU; a later block of a stage as (nearly) the identity."""
        extra = [self.bns[n] for n in ("repvgg_pointwise", "acb_horizontal", "acb_vertical")] + [self.frelu.bn]
        for bn in extra + ([self.identity] if self.identity is not None else []):
            bn.weight.zero_()
        if later:  # cin == cout: a dirac kernel
            weight = self.square.weight
            weight.zero_()
            n = min(weight.shape[:2])
            weight[range(n), range(n), 1, 1] = 1.0

    def forward(self, x: torch.Tensor, kind: str, act: str, cout: int) -> torch.Tensor:
        b = self.bns
        if kind == "repvgg":
            y = b["repvgg_dense"](self.square(x, cout)) + b["repvgg_pointwise"](self.pointwise(x, cout))
            if self.identity is not None and x.shape[1] == cout:
                y = y + self.identity(x)
        elif kind == "acb":
            y = b["acb_square"](self.square(x, cout)) + b["acb_horizontal"](self.horizontal(x, cout))
            y = y + b["acb_vertical"](self.vertical(x, cout))
        else:
            y = b["conv"](self.square(x, cout))
        return self.frelu(y) if act == "frelu" else F.relu(y)

    def copy_to(self, block: nn.Module, kind: str, act: str) -> None:
        """The path's weights and statistics into a standalone block of ``kind``."""
        b = self.bns
        if kind == "repvgg":
            assert isinstance(block, RepVGGBlock)
            pairs = [(self.square, "repvgg_dense", block.dense), (self.pointwise, "repvgg_pointwise", block.pointwise)]
            if block.identity is not None:
                assert self.identity is not None
                self.identity.copy_to(block.identity)
        elif kind == "acb":
            assert isinstance(block, ACBlock)
            pairs = [(self.square, "acb_square", block.square), (self.horizontal, "acb_horizontal", block.horizontal),
                     (self.vertical, "acb_vertical", block.vertical)]  # fmt: skip
        else:
            assert isinstance(block, ConvBNBlock)
            pairs = [(self.square, "conv", block.conv)]
        for kernel, bn_name, (conv, bn) in pairs:
            kernel.copy_to(conv)
            b[bn_name].copy_to(bn)
        if act == "frelu":
            assert isinstance(block.act, FReLU)
            self.frelu.copy_to(block.act)


class RepSupernet(nn.Module):
    """All paths of a :class:`RepSpace`; ``forward(x, arch)`` runs one."""

    def __init__(self, space: RepSpace) -> None:
        super().__init__()
        self.space = space
        self.stem = ConvBNBlock(3, space.stem_width, 3, 1, act="relu")
        slots, cin = [], space.stem_width
        for widths in space.stage_widths:
            cout = max(widths)
            for j in range(space.max_depth):
                slots.append(ChoiceSlot(cin if j == 0 else cout, cout, 2 if j == 0 else 1, identity=j > 0))
            cin = cout
        self.slots = nn.ModuleList(slots)
        self.classifier = nn.Linear(cin, space.num_classes)

    def _path(self, arch: RepArch) -> list[tuple[ChoiceSlot, str, str, int]]:
        d, path = self.space.max_depth, []
        for s, (depth, width) in enumerate(zip(arch.depths, arch.widths, strict=True)):
            for j in range(depth):
                kind, act = arch.genes[s * d + j]
                path.append((self.slots[s * d + j], kind, act, width))
        return path

    def forward(self, x: torch.Tensor, arch: RepArch) -> torch.Tensor:
        x = self.stem(x)
        for slot, kind, act, width in self._path(arch):
            x = slot(x, kind, act, width)
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)


@torch.no_grad()
def standalone(supernet: RepSupernet, arch: RepArch) -> PlainNet:
    """The candidate's train-form network carrying the path's weights and BN statistics (eval mode)."""
    space = supernet.space
    net = space.network(space.check(arch))
    stem, *blocks = net.blocks
    stem.load_state_dict(supernet.stem.state_dict())
    for block, (slot, kind, act, _width) in zip(blocks, supernet._path(arch), strict=True):
        slot.copy_to(block, kind, act)
    width = net.classifier.in_features
    net.classifier.weight.copy_(supernet.classifier.weight[:, :width])
    net.classifier.bias.copy_(supernet.classifier.bias)
    return net.eval()

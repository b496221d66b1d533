"""The SPOS supernet: every choice block of every layer, one path run per step, weights shared by slicing.

Layer for layer it is the ShuffleNetV2 supernet of Single Path One-Shot (Guo et al., ECCV 2020): a stem, 20
choice layers of four blocks each (ShuffleNetV2 unit 3x3/5x5/7x7, Shuffle-Xception), the last 1x1 conv, global
pooling and a classifier. BatchNorm inside choice blocks has ``affine=False``, as in the paper: a block's
statistics depend on the path that feeds it, so they are recalibrated per candidate (``recalibrate_bn``)
rather than learned. With channel search a block's convolutions are built at the widest middle width and a
narrower candidate uses the first ``mid`` channels (weights, and BN statistics, shared by slicing).

``standalone(supernet, arch)`` copies one path's weights into the zoo's ``SposNet`` (the network that is
exported, profiled and retrained), so the path and the standalone network compute the same function.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.search.space import Arch, SearchSpace
from hwlab.space import SPOS_CHOICES, SposLayer, spos_mid_channels
from hwlab.space.modules import conv_bn, split_shuffle


class SlimBatchNorm(nn.Module):
    """BatchNorm without affine parameters over the first C channels of its statistics.

    ``momentum=None`` gives a cumulative average, which BN recalibration uses.
    """

    def __init__(self, channels: int, momentum: float | None = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def reset_running_stats(self) -> None:
        self.running_mean.zero_()
        self.running_var.fill_(1.0)
        self.num_batches_tracked.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training:
            self.num_batches_tracked += 1
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], None, None, self.training, factor, self.eps)


class SlimConv(nn.Module):
    """A bias-free conv built at its widest; runs on the first channels its input has.

    ``role`` says which width varies: ``"expand"`` (output = the middle width asked), ``"depthwise"``
    (output = input channels) or ``"project"`` (fixed output, input = whatever comes in).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, role: str) -> None:
        super().__init__()
        self.role, self.stride, self.padding = role, stride, kernel // 2
        shape = (cout, 1, kernel, kernel) if role == "depthwise" else (cout, cin, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        # He initialisation over each output's true fan-in (k*k for a depthwise kernel).
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        c = x.shape[1]
        if self.role == "depthwise":
            return F.conv2d(x, self.weight[:c], None, self.stride, self.padding, groups=c)
        out = mid if self.role == "expand" else self.weight.shape[0]
        return F.conv2d(x, self.weight[:out, :c], None, self.stride, self.padding)


class _Step(nn.Module):
    """conv, affine-free BN, optional ReLU."""

    def __init__(self, conv: SlimConv, channels: int, relu: bool) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = conv, SlimBatchNorm(channels), relu

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        x = self.bn(self.conv(x, mid))
        return F.relu(x) if self.relu else x


class ChoiceBlock(nn.Module):
    """One candidate block of one layer at its widest middle width: projection branch (stride 2), main branch."""

    def __init__(self, layer: SposLayer, choice: int, max_mid: int) -> None:
        super().__init__()
        cin, cout, stride = layer.cin, layer.cout, layer.stride
        self.stride = stride
        self.proj: nn.ModuleList | None = None
        if stride == 2:  # registered first: the standalone block lists branch_proj before branch_main
            self.proj = nn.ModuleList([
                _Step(SlimConv(cin, cin, _kernel(choice), 2, "depthwise"), cin, relu=False),
                _Step(SlimConv(cin, cin, 1, 1, "project"), cin, relu=True),
            ])  # fmt: skip
        branch_in = cin // 2 if stride == 1 else cin
        out = cout - branch_in
        m = max_mid
        if SPOS_CHOICES[choice].startswith("xception"):
            steps = [
                _Step(SlimConv(branch_in, branch_in, 3, stride, "depthwise"), branch_in, relu=False),
                _Step(SlimConv(branch_in, m, 1, 1, "expand"), m, relu=True),
                _Step(SlimConv(m, m, 3, 1, "depthwise"), m, relu=False),
                _Step(SlimConv(m, m, 1, 1, "expand"), m, relu=True),
                _Step(SlimConv(m, m, 3, 1, "depthwise"), m, relu=False),
                _Step(SlimConv(m, out, 1, 1, "project"), out, relu=True),
            ]
        else:
            k = _kernel(choice)
            steps = [
                _Step(SlimConv(branch_in, m, 1, 1, "expand"), m, relu=True),
                _Step(SlimConv(m, m, k, stride, "depthwise"), m, relu=False),
                _Step(SlimConv(m, out, 1, 1, "project"), out, relu=True),
            ]
        self.main = nn.ModuleList(steps)

    def forward(self, x: torch.Tensor, mid: int) -> torch.Tensor:
        if self.proj is None:
            passed, x = split_shuffle(x)
        else:
            passed = x
            for step in self.proj:
                passed = step(passed, mid)
        for step in self.main:
            x = step(x, mid)
        return torch.cat((passed, x), dim=1)


def _kernel(choice: int) -> int:
    return int(SPOS_CHOICES[choice][-1])


class Supernet(nn.Module):
    """All paths of a search space; ``forward(x, arch)`` runs one."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        config = space.config
        stem, *_, stage_out, last = config.channels
        self.stem = nn.Sequential(*conv_bn(3, stem, 3, config.stem_stride))
        widest = max(space.scales)
        self.layers = nn.ModuleList(
            nn.ModuleList(
                ChoiceBlock(layer, c, spos_mid_channels(layer.cout, widest)) for c in range(len(SPOS_CHOICES))
            )
            for layer in config.layers()
        )
        self.last = nn.Sequential(*conv_bn(stage_out, last, 1))
        self.classifier = nn.Linear(last, config.num_classes)

    def mids(self, arch: Arch) -> list[int]:
        layers = self.space.config.layers()
        return [spos_mid_channels(layer.cout, s) for layer, s in zip(layers, arch.scales, strict=True)]

    def features(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for blocks, choice, mid in zip(self.layers, arch.choices, self.mids(arch), strict=True):
            x = blocks[choice](x, mid)
        return torch.flatten(F.adaptive_avg_pool2d(self.last(x), 1), 1)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.classifier(self.features(x, arch))

    def path_modules(self, arch: Arch) -> Iterator[nn.Module]:
        """The blocks one architecture runs (for BN recalibration and weight copies)."""
        for blocks, choice in zip(self.layers, arch.choices, strict=True):
            yield blocks[choice]


def standalone(supernet: Supernet, arch: Arch) -> nn.Module:
    """The zoo's SposNet of ``arch`` carrying the supernet path's weights and BN statistics (eval mode).

    Convolution weights are the leading slices of the widest ones; affine-free BNs become affine BNs with
    weight 1 and bias 0, so the standalone network computes what the path computes.
    """
    from hwlab.zoo import SposNet

    supernet.space.check(arch)
    net = SposNet(supernet.space.config, arch.choices, arch.scales)
    stem, *blocks, last, _gap, fc = net.ops
    with torch.no_grad():
        stem.load_state_dict(supernet.stem.state_dict())
        last.load_state_dict(supernet.last.state_dict())
        fc.load_state_dict(supernet.classifier.state_dict())
        for target, source in zip(blocks, supernet.path_modules(arch), strict=True):
            _copy_block(target, source)
    return net.eval()


def _copy_block(target: nn.Module, source: ChoiceBlock) -> None:
    convs = [m for m in target.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in target.modules() if isinstance(m, nn.BatchNorm2d)]
    steps = [*(source.proj or []), *source.main]
    if len(convs) != len(steps) or len(bns) != len(steps):
        raise RuntimeError(f"block layouts differ: {len(convs)} convs in the network, {len(steps)} in the supernet")
    for conv, bn, step in zip(convs, bns, steps, strict=True):
        out, cin = conv.weight.shape[:2]
        conv.weight.copy_(step.conv.weight[:out, :cin])
        c = bn.num_features
        bn.running_mean.copy_(step.bn.running_mean[:c])
        bn.running_var.copy_(step.bn.running_var[:c])
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.eps = step.bn.eps

"""The SPOS supernet: every choice block of every layer, one path run per step, weights shared by slicing.

Layer for layer it is the ShuffleNetV2 supernet of Single Path One-Shot (Guo et al., ECCV 2020): a stem, 20
choice layers of four blocks each (ShuffleNetV2 unit 3x3/5x5/7x7, Shuffle-Xception), the last 1x1 conv, global
pooling and a classifier. BatchNorm inside choice blocks has ``affine=False``, as in the paper: a block's
statistics depend on the path that feeds it, so they are recalibrated per candidate (``recalibrate_bn``)
rather than learned. With channel search a block's convolutions are built at the widest middle width and a
narrower candidate uses the first ``mid`` channels (weights, and BN statistics, shared by slicing).

The paper gives each of a layer's four blocks its own weights (``sharing="separate"``). The default,
``sharing="nested"``, shares them within a layer (kernels nested, see ``ChoiceLayer``): the space, its
blocks and their standalone networks are the same, but the supernet trains on a small data set in minutes,
where the separate one stays at chance.

``standalone(supernet, arch)`` copies one path's weights into the zoo's ``SposNet`` (the network that is
exported, profiled and retrained), so the path and the standalone network compute the same function.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.errors import SpaceError
from hwlab.search.space import Arch, SearchSpace
from hwlab.space import SPOS_CHOICES, SposLayer, spos_mid_channels
from hwlab.space.modules import conv_bn, split_shuffle

SHARING = ("nested", "separate")  # how choice blocks of one layer share weights (see ChoiceLayer)


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

    def affine(self, channels: int) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Scale and shift of the first ``channels`` (none here; ``hwlab.reparam.supernet`` adds them)."""
        return None, None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        factor = 0.0
        if self.training:
            self.num_batches_tracked += 1
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        weight, bias = self.affine(c)
        return F.batch_norm(x, self.running_mean[:c], self.running_var[:c], weight, bias, self.training, factor,
                            self.eps)  # fmt: skip


class SlimConv(nn.Module):
    """A bias-free conv built at its widest; runs on the first channels its input has.

    ``role`` says which width varies: ``"expand"`` (output = the middle width asked), ``"depthwise"``
    (output = input channels, and a smaller kernel is the centre of this one) or ``"project"`` (fixed output,
    input = whatever comes in).
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, role: str) -> None:
        super().__init__()
        self.role, self.stride = role, stride
        shape = (cout, 1, kernel, kernel) if role == "depthwise" else (cout, cin, kernel, kernel)
        self.weight = nn.Parameter(torch.empty(shape))
        # He initialisation over each output's true fan-in (k*k for a depthwise kernel).
        nn.init.kaiming_normal_(self.weight, mode="fan_in", nonlinearity="relu")

    def weight_for(self, cin: int, mid: int, kernel: int | None = None) -> torch.Tensor:
        """The slice a path runs: ``cin`` input channels, ``mid`` middle channels, a centred ``kernel``."""
        if self.role == "depthwise":
            w = self.weight[:cin]
            crop = (w.shape[-1] - (kernel or w.shape[-1])) // 2
            return w[:, :, crop : w.shape[-1] - crop, crop : w.shape[-1] - crop] if crop else w
        out = mid if self.role == "expand" else self.weight.shape[0]
        return self.weight[:out, :cin]

    def forward(self, x: torch.Tensor, mid: int, kernel: int | None = None, stride: int | None = None) -> torch.Tensor:
        c = x.shape[1]
        w = self.weight_for(c, mid, kernel)
        groups = c if self.role == "depthwise" else 1
        return F.conv2d(x, w, None, stride or self.stride, w.shape[-1] // 2, groups=groups)

    def init_identity(self) -> None:
        """A depthwise kernel that passes each channel through, or a square 1x1 that is the identity."""
        with torch.no_grad():
            self.weight.zero_()
            k = self.weight.shape[-1] // 2
            if self.role == "depthwise":
                self.weight[:, 0, k, k] = 1.0
            else:
                n = min(self.weight.shape[:2])
                self.weight[range(n), range(n), k, k] = 1.0


class _Step(nn.Module):
    """conv, affine-free BN, optional ReLU."""

    def __init__(self, conv: SlimConv, channels: int, relu: bool) -> None:
        super().__init__()
        self.conv, self.bn, self.relu = conv, SlimBatchNorm(channels), relu

    def forward(self, x: torch.Tensor, mid: int, kernel: int | None = None, stride: int | None = None) -> torch.Tensor:
        x = self.bn(self.conv(x, mid, kernel, stride))
        return F.relu(x) if self.relu else x


@dataclass(frozen=True)
class _Call:
    """One step of a choice block: which shared step runs, with which kernel (centre crop) and stride."""

    step: str
    kernel: int | None = None
    stride: int | None = None


class ChoiceLayer(nn.Module):
    """The four candidate blocks of one layer: a pool of steps and, per choice, the calls that make its block.

    ``sharing="separate"`` is the paper's supernet: every choice owns its weights. ``sharing="nested"``
    shares them within the layer so that changing a choice perturbs a path instead of replacing it:
    the three ShuffleNet units use one pair of 1x1 convs and one 7x7 depthwise kernel whose centre is the
    5x5 and 3x3 one; the Shuffle-Xception unit reuses the units' 1x1 convs and the 3x3 centre for its last
    pair and starts its own extra depthwise and 1x1 convs as identities. A narrow, deep supernet starts
    chaotic (a path's features change completely when one early choice changes); with nested sharing every
    step trains weights all paths run and training orders it, with separate weights uniform single-path
    training stays at chance at small scale (``bench/supernet_sharing.py``).
    """

    def __init__(self, layer: SposLayer, max_mid: int, sharing: str) -> None:
        super().__init__()
        if sharing not in SHARING:
            raise SpaceError(f"weight sharing {sharing!r} is not one of {', '.join(SHARING)}",
                             hint="nested (trains at small scale) or separate (the paper's supernet)")  # fmt: skip
        cin, stride = layer.cin, layer.stride
        branch_in = cin // 2 if stride == 1 else cin
        out, m = layer.cout - branch_in, max_mid
        steps: dict[str, _Step] = {}

        def step(name: str, c_in: int, c_out: int, kernel: int, stride_: int, role: str, relu: bool) -> str:
            steps[name] = _Step(SlimConv(c_in, c_out, kernel, stride_, role), c_out, relu)
            return name

        def proj_branch(prefix: str, kernel: int) -> list[_Call]:
            if stride == 1:
                return []
            return [_Call(step(f"{prefix}proj_dw", cin, cin, kernel, 2, "depthwise", False)),
                    _Call(step(f"{prefix}proj_pw", cin, cin, 1, 1, "project", True))]  # fmt: skip

        def unit(prefix: str, kernel: int) -> list[_Call]:
            return [_Call(step(f"{prefix}expand", branch_in, m, 1, 1, "expand", True)),
                    _Call(step(f"{prefix}dw", m, m, kernel, stride, "depthwise", False)),
                    _Call(step(f"{prefix}project", m, out, 1, 1, "project", True))]  # fmt: skip

        def xception(prefix: str, shared: list[_Call] | None) -> list[_Call]:
            """Its main branch; with ``shared`` (a unit's calls) it reuses their 1x1s and the 3x3 centre."""
            dw1 = step(f"{prefix}dw1", branch_in, branch_in, 3, stride, "depthwise", False)
            dw2 = step(f"{prefix}dw2", m, m, 3, 1, "depthwise", False)
            pw2 = step(f"{prefix}pw2", m, m, 1, 1, "expand", True)
            if shared is None:
                return [_Call(dw1), _Call(step(f"{prefix}pw1", branch_in, m, 1, 1, "expand", True)),
                        _Call(dw2), _Call(pw2), _Call(step(f"{prefix}dw3", m, m, 3, 1, "depthwise", False)),
                        _Call(step(f"{prefix}pw3", m, out, 1, 1, "project", True))]  # fmt: skip
            for name in (dw1, dw2, pw2):
                steps[name].conv.init_identity()
            expand, dw, project = shared
            return [_Call(dw1), expand, _Call(dw2), _Call(pw2), _Call(dw.step, 3, 1), project]

        recipes: list[tuple[list[_Call], list[_Call]]] = []
        if sharing == "separate":
            for c, name in enumerate(SPOS_CHOICES):
                prefix = f"c{c}_"
                main = xception(prefix, None) if name.startswith("xception") else unit(prefix, _kernel(c))
                recipes.append((proj_branch(prefix, _kernel(c)), main))
        else:
            widest = max(_kernel(c) for c in range(len(SPOS_CHOICES)))
            proj, main = proj_branch("", widest), unit("", widest)
            for c, name in enumerate(SPOS_CHOICES):
                k = _kernel(c)
                cropped = [_Call(proj[0].step, k), proj[1]] if proj else []
                if name.startswith("xception"):
                    recipes.append((cropped, xception("x_", main)))
                else:
                    recipes.append((cropped, [main[0], _Call(main[1].step, k), main[2]]))
        self.steps = nn.ModuleDict(steps)
        self.recipes = recipes

    def calls(self, choice: int) -> list[tuple[_Step, _Call]]:
        """The steps a choice runs, projection branch first (the standalone block's order)."""
        proj, main = self.recipes[choice]
        return [(self.steps[c.step], c) for c in (*proj, *main)]

    def forward(self, x: torch.Tensor, choice: int, mid: int) -> torch.Tensor:
        proj, main = self.recipes[choice]
        if proj:
            passed = x
            for call in proj:
                passed = self.steps[call.step](passed, mid, call.kernel, call.stride)
        else:
            passed, x = split_shuffle(x)
        for call in main:
            x = self.steps[call.step](x, mid, call.kernel, call.stride)
        return torch.cat((passed, x), dim=1)


def _kernel(choice: int) -> int:
    return int(SPOS_CHOICES[choice][-1])


class Supernet(nn.Module):
    """All paths of a search space; ``forward(x, arch)`` runs one."""

    def __init__(self, space: SearchSpace, sharing: str = "nested") -> None:
        super().__init__()
        self.space = space
        config = space.config
        stem, *_, stage_out, last = config.channels
        self.stem = nn.Sequential(*conv_bn(3, stem, 3, config.stem_stride))
        widest = max(space.scales)
        self.layers = nn.ModuleList(
            ChoiceLayer(layer, spos_mid_channels(layer.cout, widest), sharing) for layer in config.layers()
        )
        self.last = nn.Sequential(*conv_bn(stage_out, last, 1))
        self.classifier = nn.Linear(last, config.num_classes)

    def mids(self, arch: Arch) -> list[int]:
        layers = self.space.config.layers()
        return [spos_mid_channels(layer.cout, s) for layer, s in zip(layers, arch.scales, strict=True)]

    def features(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        x = self.stem(x)
        for layer, choice, mid in zip(self.layers, arch.choices, self.mids(arch), strict=True):
            x = layer(x, choice, mid)
        return torch.flatten(F.adaptive_avg_pool2d(self.last(x), 1), 1)

    def forward(self, x: torch.Tensor, arch: Arch) -> torch.Tensor:
        return self.classifier(self.features(x, arch))


def standalone(supernet: Supernet, arch: Arch) -> nn.Module:
    """The zoo's SposNet of ``arch`` carrying the supernet path's weights and BN statistics (eval mode).

    Convolution weights are the slices the path runs (leading channels, centred kernels); affine-free BNs
    become affine BNs with weight 1 and bias 0, so the standalone network computes what the path computes.
    """
    from hwlab.zoo import SposNet

    supernet.space.check(arch)
    net = SposNet(supernet.space.config, arch.choices, arch.scales)
    stem, *blocks, last, _gap, fc = net.ops
    with torch.no_grad():
        stem.load_state_dict(supernet.stem.state_dict())
        last.load_state_dict(supernet.last.state_dict())
        fc.load_state_dict(supernet.classifier.state_dict())
        for target, layer, choice in zip(blocks, supernet.layers, arch.choices, strict=True):
            _copy_block(target, layer.calls(choice))
    return net.eval()


def _copy_block(target: nn.Module, calls: list[tuple[_Step, _Call]]) -> None:
    convs = [m for m in target.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in target.modules() if isinstance(m, nn.BatchNorm2d)]
    if len(convs) != len(calls) or len(bns) != len(calls):
        raise RuntimeError(f"block layouts differ: {len(convs)} convs in the network, {len(calls)} in the supernet")
    for conv, bn, (step, call) in zip(convs, bns, calls, strict=True):
        depthwise = step.conv.role == "depthwise"
        weight = step.conv.weight_for(conv.out_channels if depthwise else conv.in_channels, conv.out_channels,
                                      call.kernel)  # fmt: skip
        if weight.shape != conv.weight.shape:
            raise RuntimeError(f"weight shapes differ: {tuple(conv.weight.shape)} vs {tuple(weight.shape)}")
        conv.weight.copy_(weight)
        c = bn.num_features
        bn.running_mean.copy_(step.bn.running_mean[:c])
        bn.running_var.copy_(step.bn.running_var[:c])
        bn.weight.fill_(1.0)
        bn.bias.zero_()
        bn.eps = step.bn.eps

"""Kernel type + features -> a small torch module that runs that one kernel; configurations near a kernel's.

Adaptive sampling (nn-Meter's fine-grained sampler) retrains a kernel type's regressor on extra samples
near the configurations it predicts badly. Each sample must be a model whose split holds a kernel of
that type with the wanted features, and ideally nothing else, so its measured latency is that kernel's.

A kernel type is its categories joined by '+'; the module applies one step per category, in order, to
the running tensor. The first step reads the model input: (1, cin, h, w), or (1, cin) for fc. Kernel
size and stride go to the first conv or pool; a later pool in the same kernel uses 3x3 stride 2.

- conv: Conv2d(cin -> cout, kernel, stride, padding kernel // 2, groups, bias). Groups that do not
  divide both channel counts shrink to their gcd; groups == cin == cout would be a dwconv, so 1.
- dwconv: the same with groups == channels (needs at least 2 channels).
- dynconv: a conv (groups 1, no bias) whose weight (cout, cin, kernel, kernel) is an extra model input, so
  the Conv's weight is not an initializer, as in WeightNet or CondConv where the graph computes it.
- conv/dwconv followed by bn: torch.onnx folds an eval-mode BatchNorm into the conv before it, so
  conv -> bn exports as a single Conv and never yields a `conv+bn` kernel. The conv therefore reads
  its weight as `weight * 1.0`: the exporter's fold only matches a conv whose weight is a parameter,
  and constant folding then turns the product back into a plain initializer, leaving Conv ->
  BatchNormalization as other exporters write it. Such convs have no bias, as before any BN.
- fc: Linear(cin -> cout) on (1, cin), exported as Gemm. bn: BatchNorm2d (BatchNorm1d on 2-D), with
  randomised weights and running statistics so the export is not an identity.
- relu, relu6, hswish, sigmoid, swish: nn.ReLU, ReLU6 (Clip 0..6), Hardswish, Sigmoid, SiLU (Sigmoid x Mul).
- add, mul, concat: the second operand is an extra model input, so nothing but the op runs: add takes
  a same-shape tensor, mul an SE-style (1, c, 1, 1) scale, concat (1, cout - c, h, w) on channels.
- maxpool, avgpool: kernel, stride, padding (kernel - 1) // 2, floor mode (avgpool excludes padding).
- gap: AdaptiveAvgPool2d(1), exported as GlobalAveragePool.
- reshape: to (1, cout, rest) when cout divides the element count (the first reshape of a channel
  shuffle has cout 2), else (1, c, rest).
- transpose: swaps channels with the axis whose size is cout (h, then w); cout == cin swaps h and w.
  Any other cout is a transpose of a leading axis, as in the SPOS channel split: the input is
  (cout, cin, h, w) and axes 0 and 1 swap.
- gather: index 0 of a (2, cin, h, w) input along axis 0 -- one half of the SPOS channel split
  (reshape, transpose, reshape, then x[0] and x[1]), whose gather has cout == h. When cout == cin
  instead, index 0 along h of a (1, cin, h, w) input.
- slice: the first cout channels when cout < cin, else the first half of h.
- flatten: nn.Flatten (cout is then cin * h * w, whatever was asked).
- pad: one zero on each side of h and w. torch's own pad exports its pads as a chain of ops that
  ONNX shape inference cannot follow, so this step emits a Pad with constant pads itself.
- split: the channels as [cout, cin - cout] (halves when that is empty), explicit sizes so the Split
  has constant sizes; it must end the kernel, since it has two outputs.

Other categories (and unknown ops) are not built: `kernel_module` returns None and the caller lists them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from hwlab.predictors.graph import module_kernels
from hwlab.predictors.kernels import FusionRules, Kernel
from hwlab.space.build import seed_of, seeded_rng
from hwlab.zoo.blocks import ZeroPad

# The features a generated module is built from; derived ones (flops, params, bytes) follow from them.
STRUCTURAL = ("h", "w", "cin", "cout", "kernel", "stride", "groups")
SCALE = (0.75, 1.33)
SECOND_WINDOW = (3, 2)  # (kernel, stride) of a pool that is not a kernel's first windowed op
WINDOWED = frozenset({"conv", "dwconv", "dynconv", "maxpool", "avgpool"})
TRIES_PER_NEIGHBOUR = 20

Shape = tuple[int, ...]
Item = tuple[str, nn.Module, tuple[torch.Tensor, ...]]


@dataclass(frozen=True)
class _Spec:
    """The wanted structural features, as integers with defaults for a windowed op that lacks them."""

    h: int
    w: int
    cin: int
    cout: int
    kernel: int
    stride: int
    groups: int

    @classmethod
    def of(cls, features: dict[str, float]) -> _Spec | None:
        def get(name: str, default: int) -> int:
            value = round(float(features.get(name, 0) or 0))
            return value if value > 0 else default

        h, w, cin = get("h", 0), get("w", 0), get("cin", 0)
        if min(h, w, cin) < 1:
            return None
        return cls(h, w, cin, get("cout", cin), get("kernel", 3), get("stride", 1), get("groups", 1))


@dataclass(frozen=True)
class _Place:
    """What a step takes from its position in the kernel."""

    window: tuple[int, int]  # (kernel, stride) for a conv or pool
    before_bn: bool  # a conv followed by bn keeps the BN unfolded
    last: bool


@dataclass
class _Built:
    step: nn.Module
    operands: tuple[Shape, ...] = ()  # shapes of the extra model inputs the step reads


class _UnfoldedConv(nn.Conv2d):
    """A conv whose weight is an expression, so torch.onnx does not fold the following BN into it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(x, self.weight * 1.0, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _Binary(nn.Module):
    """x op operand, the operand being an extra model input."""

    def __init__(self, op: str) -> None:
        super().__init__()
        self.op = op

    def extra_repr(self) -> str:  # the export cache tells modules apart by repr
        return self.op

    def forward(self, x: torch.Tensor, operand: torch.Tensor) -> torch.Tensor:
        if self.op == "add":
            return x + operand
        if self.op == "mul":
            return x * operand
        return torch.cat((x, operand), dim=1)


class _Layout(nn.Module):
    """Reshape, transpose, gather, slice or split with every size fixed when the module is built."""

    def __init__(self, op: str, args: tuple[int, ...]) -> None:
        super().__init__()
        self.op, self.args = op, args

    def extra_repr(self) -> str:  # the export cache tells modules apart by repr
        return f"{self.op}{self.args}"

    def forward(self, x: torch.Tensor) -> Any:
        if self.op == "reshape":
            return x.reshape(self.args)
        if self.op == "transpose":
            return x.permute(self.args)
        if self.op == "gather":
            return x.select(self.args[0], 0)
        if self.op == "slice":
            return x.narrow(self.args[0], 0, self.args[1])
        return torch.split(x, list(self.args), dim=1)


class KernelModule(nn.Module):
    """The steps of one kernel in order; a step with an operand reads the next extra input."""

    def __init__(self, steps: list[nn.Module], operand_counts: list[int]) -> None:
        super().__init__()
        self.steps = nn.ModuleList(steps)
        self.operand_counts = operand_counts

    def extra_repr(self) -> str:
        return f"operand_counts={self.operand_counts}"

    def forward(self, x: torch.Tensor, *operands: torch.Tensor) -> Any:
        rest = iter(operands)
        for step, count in zip(self.steps, self.operand_counts, strict=True):
            x = step(x, *(next(rest) for _ in range(count)))
        return x


def _conv(shape: Shape, spec: _Spec, place: _Place, depthwise: bool) -> _Built | None:
    if len(shape) != 4 or (depthwise and shape[1] < 2):
        return None
    c = shape[1]
    kernel, stride = place.window
    cout, groups = (c, c) if depthwise else (spec.cout, math.gcd(c, spec.cout, spec.groups))
    if not depthwise and groups > 1 and groups == c == cout:
        groups = 1
    cls = _UnfoldedConv if place.before_bn else nn.Conv2d
    return _Built(cls(c, cout, kernel, stride, kernel // 2, groups=groups, bias=not place.before_bn))


class _DynamicConv(nn.Module):
    """A conv of the weight it is given: exported, its weight is a graph input (a dynconv)."""

    def __init__(self, stride: int, padding: int) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding

    def extra_repr(self) -> str:  # the export cache tells modules apart by repr
        return f"stride={self.stride}, padding={self.padding}"

    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return functional.conv2d(x, weight, None, self.stride, self.padding)


def _dynconv(shape: Shape, spec: _Spec, place: _Place) -> _Built | None:
    if len(shape) != 4:
        return None
    kernel, stride = place.window
    return _Built(_DynamicConv(stride, kernel // 2), ((spec.cout, shape[1], kernel, kernel),))


def _pool(shape: Shape, place: _Place, average: bool) -> _Built | None:
    if len(shape) != 4:
        return None
    kernel, stride = place.window
    if average:
        return _Built(nn.AvgPool2d(kernel, stride, (kernel - 1) // 2, count_include_pad=False))
    return _Built(nn.MaxPool2d(kernel, stride, (kernel - 1) // 2))


def _binary(shape: Shape, spec: _Spec, op: str) -> _Built | None:
    if op == "concat":
        if len(shape) != 4:
            return None
        return _Built(_Binary(op), ((shape[0], max(1, spec.cout - shape[1]), *shape[2:]),))
    if op == "mul" and len(shape) == 4:
        return _Built(_Binary(op), ((1, shape[1], 1, 1),))
    return _Built(_Binary(op), (shape,))


def _reshape(shape: Shape, spec: _Spec) -> _Built:
    count = math.prod(shape)
    channels = spec.cout if count % spec.cout == 0 else shape[1]
    return _Built(_Layout("reshape", (1, channels, count // channels)))


def _transpose(shape: Shape, spec: _Spec) -> _Built | None:
    if len(shape) != 4:
        return None
    axis = next((a for a in (2, 3, 1, 0) if shape[a] == spec.cout and (a != 0 or shape[0] > 1)), 1)
    perm = [0, 1, 2, 3]
    if axis == 1:
        perm[2], perm[3] = 3, 2
    else:
        perm[1], perm[axis] = axis, 1
    return _Built(_Layout("transpose", tuple(perm)))


def _gather(shape: Shape, spec: _Spec) -> _Built | None:
    if len(shape) < 3:
        return None
    axis = 0 if shape[0] > 1 else 2 if spec.cout == shape[1] else 1
    return _Built(_Layout("gather", (axis,)))


def _slice(shape: Shape, spec: _Spec) -> _Built | None:
    if len(shape) != 4:
        return None
    if spec.cout < shape[1]:
        return _Built(_Layout("slice", (1, spec.cout)))
    return _Built(_Layout("slice", (2, max(1, shape[2] // 2))))


def _split(shape: Shape, spec: _Spec, place: _Place) -> _Built | None:
    if len(shape) < 2 or shape[1] < 2 or not place.last:
        return None
    first = spec.cout if spec.cout < shape[1] else shape[1] // 2
    return _Built(_Layout("split", (first, shape[1] - first)))


def _norm(shape: Shape) -> _Built | None:
    if len(shape) not in (2, 4):
        return None
    return _Built(nn.BatchNorm2d(shape[1]) if len(shape) == 4 else nn.BatchNorm1d(shape[1]))


Builder = Callable[[Shape, _Spec, _Place], _Built | None]

BUILDERS: dict[str, Builder] = {
    "conv": lambda shape, spec, place: _conv(shape, spec, place, depthwise=False),
    "dwconv": lambda shape, spec, place: _conv(shape, spec, place, depthwise=True),
    "dynconv": _dynconv,
    "fc": lambda shape, spec, place: _Built(nn.Linear(shape[1], spec.cout)) if len(shape) == 2 else None,
    "bn": lambda shape, spec, place: _norm(shape),
    "relu": lambda shape, spec, place: _Built(nn.ReLU()),
    "relu6": lambda shape, spec, place: _Built(nn.ReLU6()),
    "hswish": lambda shape, spec, place: _Built(nn.Hardswish()),
    "sigmoid": lambda shape, spec, place: _Built(nn.Sigmoid()),
    "swish": lambda shape, spec, place: _Built(nn.SiLU()),
    "add": lambda shape, spec, place: _binary(shape, spec, "add"),
    "mul": lambda shape, spec, place: _binary(shape, spec, "mul"),
    "concat": lambda shape, spec, place: _binary(shape, spec, "concat"),
    "maxpool": lambda shape, spec, place: _pool(shape, place, average=False),
    "avgpool": lambda shape, spec, place: _pool(shape, place, average=True),
    "gap": lambda shape, spec, place: _Built(nn.AdaptiveAvgPool2d(1)) if len(shape) == 4 else None,
    "reshape": lambda shape, spec, place: _reshape(shape, spec),
    "transpose": lambda shape, spec, place: _transpose(shape, spec),
    "flatten": lambda shape, spec, place: _Built(nn.Flatten()) if len(shape) > 2 else None,
    "slice": lambda shape, spec, place: _slice(shape, spec),
    "gather": lambda shape, spec, place: _gather(shape, spec),
    "pad": lambda shape, spec, place: _Built(ZeroPad(1)) if len(shape) == 4 else None,
    "split": _split,
}

SUPPORTED = frozenset(BUILDERS)


def _input_shape(first: str, spec: _Spec) -> Shape:
    """The model input: NCHW, NC for fc, and the leading axis some layout ops act on (see module doc)."""
    if first == "fc":
        return (1, spec.cin)
    if first == "gather" and not (spec.cout == spec.cin and spec.cout != spec.h):
        return (2, spec.cin, spec.h, spec.w)
    if first == "transpose" and spec.cout not in (spec.h, spec.w, spec.cin):
        return (spec.cout, spec.cin, spec.h, spec.w)
    return (1, spec.cin, spec.h, spec.w)


def _randomise_batchnorm(module: nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm1d | nn.BatchNorm2d):
            with torch.no_grad():
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 1.5)
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.uniform_(-0.5, 0.5)


def _output_shape(built: _Built, shape: Shape) -> Shape | None:
    """Run the step on zeros: the exact output shape, or None when the input is too small for it."""
    try:
        with torch.no_grad():
            out = built.step(torch.zeros(shape), *(torch.zeros(s) for s in built.operands))
    except RuntimeError:
        return None
    first = out[0] if isinstance(out, tuple | list) else out
    return tuple(first.shape) if all(side >= 1 for side in first.shape) else None


def _steps(categories: list[str], spec: _Spec, shape: Shape) -> list[_Built] | None:
    steps: list[_Built] = []
    window_used = False
    for position, category in enumerate(categories):
        builder = BUILDERS.get(category)
        if builder is None:
            return None
        window = SECOND_WINDOW if window_used else (spec.kernel, spec.stride)
        window_used = window_used or category in WINDOWED
        after = categories[position + 1] if position + 1 < len(categories) else None
        place = _Place(window, before_bn=after == "bn", last=after is None)
        built = builder(shape, spec, place)
        next_shape = None if built is None else _output_shape(built, shape)
        if built is None or next_shape is None:
            return None
        steps.append(built)
        shape = next_shape
    return steps


def kernel_module(kernel_type: str, features: dict[str, float]) -> tuple[nn.Module, tuple[torch.Tensor, ...]] | None:
    """A seeded eval-mode module (and inputs) whose split holds a `kernel_type` kernel with `features`.

    None when some category of the type is not built here, or the features do not fit it (a dwconv of
    one channel, a window larger than the padded input). Features that cannot all hold at once (a
    flatten's cout) are followed as far as the op allows; `kernel_of` tells what was built.
    """
    spec = _Spec.of(features)
    categories = kernel_type.split("+")
    if spec is None or not kernel_type or not set(categories) <= SUPPORTED:
        return None
    shape = _input_shape(categories[0], spec)
    seed = seed_of(f"kernelgen:{kernel_type}:{spec}")
    with seeded_rng(seed):
        steps = _steps(categories, spec, shape)
        if steps is None:
            return None
        module = KernelModule([b.step for b in steps], [len(b.operands) for b in steps])
        _randomise_batchnorm(module)
    generator = torch.Generator().manual_seed(seed)
    shapes = [shape, *(s for b in steps for s in b.operands)]
    return module.eval(), tuple(torch.randn(s, generator=generator) for s in shapes)


def kernel_of(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    rules: FusionRules,
    kernel_type: str,
    *,
    cache_dir: Path | None = None,
) -> Kernel | None:
    """The first `kernel_type` kernel of the module's split under `rules`, to confirm what was generated."""
    return next((k for k in module_kernels(module, inputs, rules, cache_dir=cache_dir) if k.type == kernel_type), None)


def _scaled(value: int, factor: float, multiple: int) -> int:
    """value * factor rounded to a multiple (at least one multiple)."""
    return max(multiple, round(value * factor / multiple) * multiple)


def _neighbour(base: dict[str, int], rng: random.Random) -> dict[str, int]:
    """One perturbed configuration; the draws happen in a fixed order so a seed fixes the result."""
    found = dict(base)
    h, w = base.get("h", 0), base.get("w", 0)
    fh = rng.uniform(*SCALE)
    fw = fh if h == w else rng.uniform(*SCALE)
    for name, factor in (("h", fh), ("w", fw)):
        if base.get(name, 0) > 0:
            found[name] = _scaled(base[name], factor, 1)
    cin, cout, groups = base.get("cin", 0), base.get("cout", 0), base.get("groups", 0)
    depthwise = groups > 1 and groups == cin
    fin = rng.uniform(*SCALE)
    fout = fin if cin == cout else rng.uniform(*SCALE)
    for name, factor in (("cin", fin), ("cout", fout)):
        value = base.get(name, 0)
        if value > 0:
            multiple = 8 if value % 8 == 0 else 1
            if groups > 1 and not depthwise:
                multiple = math.lcm(multiple, groups)  # a grouped conv stays buildable
            found[name] = _scaled(value, factor, multiple)
    if depthwise:
        found["groups"] = found["cin"]
    return found


def neighbour_features(features: dict[str, float], rng: random.Random, count: int) -> list[dict[str, float]]:
    """Up to `count` distinct configurations near `features`, none equal to it, deterministic for the rng.

    h and w scale by a factor in [0.75, 1.33] (one factor when square), cin and cout likewise (one factor
    when equal), channels that were multiples of 8 stay so, a depthwise conv's groups follow its channels;
    kernel and stride are kept. Only structural features are returned: flops, params and bytes would
    be stale, and the generated kernel's own features give them.
    """
    base = {name: round(float(features[name])) for name in STRUCTURAL if name in features}
    seen = {tuple(sorted(base.items()))}
    found: list[dict[str, float]] = []
    for _ in range(count * TRIES_PER_NEIGHBOUR):
        if len(found) >= count:
            break
        candidate = _neighbour(base, rng)
        key = tuple(sorted(candidate.items()))
        if key not in seen:
            seen.add(key)
            found.append({name: float(value) for name, value in candidate.items()})
    return found


def _name(kernel_type: str, features: dict[str, float]) -> str:
    f = {name: int(features.get(name, 0)) for name in STRUCTURAL}
    return (
        f"kernel-{kernel_type}-{f['h']}x{f['w']}x{f['cin']}-cout{f['cout']}"
        f"-k{f['kernel']}-s{f['stride']}-g{f['groups']}"
    )


def neighbour_items(
    kernel: Kernel, rules: FusionRules, rng: random.Random, count: int, *, cache_dir: Path | None = None
) -> list[Item]:
    """(name, module, inputs) for the neighbours of `kernel` whose split really holds its type.

    Each module is exported and split to confirm it; names come from the built kernel's features,
    so neighbours that build the same kernel, or the original one, are dropped.
    """
    seen = {_name(kernel.type, kernel.features)}
    items: list[Item] = []
    for features in neighbour_features(kernel.features, rng, count):
        built = kernel_module(kernel.type, features)
        found = None if built is None else kernel_of(*built, rules, kernel.type, cache_dir=cache_dir)
        if built is None or found is None or (name := _name(kernel.type, found.features)) in seen:
            continue
        seen.add(name)
        items.append((name, *built))
    return items

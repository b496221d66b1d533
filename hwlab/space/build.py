"""OpSpec -> torch module in eval mode, with weights fixed by the spec's key.

Weights are seeded from a hash of the key, so the same spec always exports to the
same bytes (the export cache and content-addressed deploys rely on that), and
BatchNorm statistics are randomised too so numeric checks of an export are not
trivially passed by identity BNs. The global torch RNG is left as it was.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import nn

from hwlab.space.modules import (
    Add,
    ChannelShuffle,
    Concat,
    SposShuffleBlock,
    SposXceptionBlock,
    conv_bn,
)
from hwlab.space.opspec import OpSpec

_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "relu6": nn.ReLU6,
    "hswish": nn.Hardswish,
    "sigmoid": nn.Sigmoid,
    "swish": nn.SiLU,
}


def _conv(s: OpSpec) -> nn.Module:
    return nn.Conv2d(s.cin, s.cout, s.kernel, s.stride, s.kernel // 2, groups=s.groups, bias=True)


def _deploy(train: nn.Module) -> nn.Module:
    """The deploy form of a re-parameterisable block, converted from a train form with random BN statistics."""
    from hwlab.reparam import reparam

    _randomise_batchnorm(train)
    return reparam(train)


def _reparam_builders() -> dict[str, Callable[[OpSpec], nn.Module]]:
    from hwlab.reparam import ACBlock, CondConv, ConvBNBlock, FReLU, RepVGGBlock, SEConv, WeightNetConv

    return {
        "repvgg_block": lambda s: RepVGGBlock(s.cin, s.cout, s.stride, act=s.act),
        "acnet_block": lambda s: ACBlock(s.cin, s.cout, s.kernel, s.stride, act=s.act),
        "conv_act": lambda s: _deploy(ConvBNBlock(s.cin, s.cout, s.kernel, s.stride, act=s.act)),
        "frelu_train": lambda s: FReLU(s.cin),
        "frelu": lambda s: _deploy(FReLU(s.cin)),
        "weightnet": lambda s: WeightNetConv(s.cin, s.cout, s.kernel, s.stride, m=s.mid, g=s.groups),
        "se_conv": lambda s: SEConv(s.cin, s.cout, s.kernel, s.stride),
        "condconv": lambda s: CondConv(s.cin, s.cout, s.kernel, s.stride, experts=s.mid),
    }


BUILDERS: dict[str, Callable[[OpSpec], nn.Module]] = {
    "conv": _conv,
    "dwconv": _conv,
    "pwconv": _conv,
    "fc": lambda s: nn.Linear(s.cin, s.cout),
    "maxpool": lambda s: nn.MaxPool2d(s.kernel, s.stride, s.kernel // 2),
    "avgpool": lambda s: nn.AvgPool2d(s.kernel, s.stride, s.kernel // 2, count_include_pad=False),
    "gap": lambda s: nn.AdaptiveAvgPool2d(1),
    "add": lambda s: Add(),
    "concat": lambda s: Concat(),
    "act": lambda s: _ACTIVATIONS[s.act](),
    "bn": lambda s: nn.BatchNorm2d(s.cin),
    "channel_shuffle": lambda s: ChannelShuffle(s.groups),
    "spos_shufflenet": lambda s: SposShuffleBlock(s.cin, s.cout, s.mid, s.kernel, s.stride),
    "spos_xception": lambda s: SposXceptionBlock(s.cin, s.cout, s.mid, s.stride),
    "spos_stem": lambda s: nn.Sequential(*conv_bn(s.cin, s.cout, 3, s.stride)),
    "spos_last": lambda s: nn.Sequential(*conv_bn(s.cin, s.cout, 1)),
}


def seed_of(key: str) -> int:
    """A stable 63-bit seed from a key (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little") >> 1


def _randomise_batchnorm(module: nn.Module) -> None:
    for bn in module.modules():
        if isinstance(bn, nn.BatchNorm2d):
            with torch.no_grad():
                bn.running_mean.uniform_(-0.5, 0.5)
                bn.running_var.uniform_(0.5, 1.5)
                if bn.affine:
                    bn.weight.uniform_(0.5, 1.5)
                    bn.bias.uniform_(-0.5, 0.5)


@contextlib.contextmanager
def seeded_rng(seed: int) -> Iterator[None]:
    """Torch's global RNG seeded for the block only (module initialisers draw from it and take no
    generator); the caller's RNG state is restored after, so nothing outside sees the seed."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def build_module(spec: OpSpec) -> nn.Module:
    """A module that computes `spec` on `spec.input_shapes()`, in eval mode, seeded by its key."""
    with seeded_rng(seed_of(spec.key)):
        builder = BUILDERS.get(spec.op) or _reparam_builders()[spec.op]
        module = builder(spec)
        _randomise_batchnorm(module)
    return module.eval()


def random_input(shape: Sequence[int], seed: int = 0) -> torch.Tensor:
    """A seeded random tensor, e.g. the example input an export traces with (only its shape matters)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def example_inputs(spec: OpSpec, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Seeded random inputs of the spec's input shapes."""
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=generator) for shape in spec.input_shapes())

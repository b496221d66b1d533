"""SposNet: the standalone network of one SPOS architecture, op for op as `spos_arch_ops` lists it.

Each child op module is made by the same builder the lookup tables are profiled
with (`hwlab.space.build.BUILDERS`), so a table's sum over `op_specs()` and a
timing of the whole network describe the same graph: stem (3x3 conv + BN + ReLU),
20 chosen blocks, last 1x1 conv + BN + ReLU, global pool and classifier.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from hwlab.space.build import BUILDERS
from hwlab.space.opspec import OpSpec
from hwlab.space.spos import SPOS_CHOICES, SPOS_NUM_LAYERS, SposConfig, spos_arch_ops
from hwlab.zoo.model import ZooModel
from hwlab.zoo.seeding import init_weights, seeded


def random_spos_arch(rng: random.Random, config: SposConfig) -> tuple[list[int], list[float]]:
    """Uniform choices (0..3) and scales (from config.channel_scales), one per layer."""
    choices = [rng.randrange(len(SPOS_CHOICES)) for _ in range(SPOS_NUM_LAYERS)]
    scales = [rng.choice(config.channel_scales) for _ in range(SPOS_NUM_LAYERS)]
    return choices, scales


def spos_arch_name(config: SposConfig, choices: Sequence[int], scales: Sequence[float] | None = None) -> str:
    """Readable id of an architecture, e.g. ``spos-r224-w1-ss2-n1000-c0123...[-x1_0.6_...]``."""
    name = (
        f"spos-r{config.input_size}-w{config.width:g}-ss{config.stem_stride}-n{config.num_classes}"
        f"-c{''.join(str(int(c)) for c in choices)}"
    )
    if scales is not None and any(s != 1.0 for s in scales):
        name += "-x" + "_".join(f"{s:g}" for s in scales)
    return name


class SposNet(nn.Module):
    """One SPOS architecture as a plain network; `ops[i]` computes `op_specs()[i]`.

    Weights are seeded from `name` and BN statistics randomised, as for every zoo
    model; the module is left in eval mode.
    """

    def __init__(self, config: SposConfig, choices: Sequence[int], scales: Sequence[float] | None = None) -> None:
        super().__init__()
        self.config = config
        self._specs = tuple(spos_arch_ops(config, choices, scales))  # validates choices and scales
        self.name = spos_arch_name(config, choices, scales)
        with seeded(self.name):
            self.ops = nn.ModuleList(BUILDERS[spec.op](spec) for spec in self._specs)
            init_weights(self.ops)
        self.eval()

    def op_specs(self) -> list[OpSpec]:
        """The ops of this network in order: equal to `spos_arch_ops(config, choices, scales)`."""
        return list(self._specs)

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        """(1, 3, H, W) of the config's input size."""
        return (1, 3, self.config.input_size, self.config.input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for spec, op in zip(self._specs, self.ops, strict=True):
            if spec.op == "fc":
                x = torch.flatten(x, 1)
            x = op(x)
        return x


def spos_model(config: SposConfig, choices: Sequence[int], scales: Sequence[float] | None = None) -> ZooModel:
    """A SPOS architecture as a ZooModel (family "spos"), next to the random families."""
    ops = spos_arch_ops(config, choices, scales)
    choices, scales = list(choices), None if scales is None else list(scales)
    size = config.input_size
    return ZooModel(
        name=spos_arch_name(config, choices, scales),
        family="spos",
        input_shape=(1, 3, size, size),
        macs=sum(op.macs for op in ops),
        config={
            "input_size": size,
            "width": config.width,
            "stem_stride": config.stem_stride,
            "num_classes": config.num_classes,
            "channel_scales": list(config.channel_scales),
            "choices": choices,
            "scales": scales,
        },
        factory=lambda: SposNet(config, choices, scales),
    )

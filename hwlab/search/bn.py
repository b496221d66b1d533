"""BatchNorm recalibration: a candidate's statistics from its own path, before it is scored.

In a supernet every block sees inputs from whichever path fed it during training, so its running statistics
are a blend that fits no single architecture. SPOS therefore resets them and re-estimates them for the
candidate from a few training batches (cumulative average, train-mode forward, no gradient) before
measuring its accuracy.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn

from hwlab.search.space import Arch
from hwlab.search.supernet import SlimBatchNorm, Supernet

_NORMS = (nn.BatchNorm2d, SlimBatchNorm)


@torch.no_grad()
def recalibrate_bn(supernet: Supernet, arch: Arch, batches: Iterable[torch.Tensor], count: int) -> int:
    """Reset every BN's statistics, then average them over ``count`` batches of ``batches`` run through
    ``arch``'s path in train mode. Returns the batches used; the supernet is left in eval mode."""
    return recalibrate(supernet, lambda x: supernet(x, arch), batches, count)


@torch.no_grad()
def recalibrate(model: nn.Module, run: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor],
                count: int) -> int:  # fmt: skip
    """``recalibrate_bn`` for any path-conditioned model: ``run(x)`` runs the path whose statistics are wanted
    (a precision assignment of the quantisation-aware supernet too)."""
    momenta: dict[nn.Module, float | None] = {}
    for module in model.modules():
        if isinstance(module, _NORMS):
            module.reset_running_stats()
            momenta[module] = module.momentum
            module.momentum = None  # cumulative average over the recalibration batches
    model.train()
    used = 0
    try:
        for x in batches:
            if used >= count:
                break
            run(x)
            used += 1
    finally:
        for module, momentum in momenta.items():
            module.momentum = momentum
        model.eval()
    return used

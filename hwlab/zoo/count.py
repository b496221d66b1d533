"""MACs and parameters of a whole module, counted by running it once with hooks.

The FLOPs-linear baseline predictor needs these for any network, including ones
no OpSpec describes. MACs follow `hwlab.space.cost`: the multiply-accumulates of
Conv2d and Linear layers only (bias adds, BN, pooling and activations count 0),
so for a network built from op specs the two agree exactly. Params are every
learnable parameter (BN affine weights included, running statistics not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = conv.kernel_size
    return output.numel() * (conv.in_channels // conv.groups) * kh * kw


def _linear_macs(linear: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * linear.in_features


def count_macs_params(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(MACs, params) of one forward pass of `module` on a zero tensor of `input_shape`.

    Runs in eval mode under no_grad, so BN statistics are not touched, and gives the
    module back in the mode it had. A module called twice is counted twice.
    """
    total = 0

    def hook(layer: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        total += _conv_macs(layer, output) if isinstance(layer, nn.Conv2d) else _linear_macs(layer, output)

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    first = next(module.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            module(torch.zeros(tuple(input_shape), device=device))
    finally:
        module.train(was_training)
        for handle in handles:
            handle.remove()
    params = sum(p.numel() for p in module.parameters())
    return total, params

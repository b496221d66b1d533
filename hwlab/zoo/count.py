"""MACs and parameters of a whole module, counted by running it once with hooks.

The FLOPs-linear baseline predictor needs these for any network, including ones
no OpSpec describes. MACs follow `hwlab.space.cost`: the multiply-accumulates of
Conv2d and Linear layers only (bias adds, BN, pooling and activations count 0),
so for a network built from op specs the two agree exactly. A conv whose weight
is computed (WeightNet, CondConv in hwlab.reparam.dynamic) runs as a function,
which no Conv2d hook sees: its module adds its conv's MACs, and CondConv the
mixing of its experts. Params are every learnable parameter (BN affine weights
included, running statistics not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwlab.reparam.dynamic import CondConv, WeightNetConv


def _conv_macs(conv: nn.Conv2d, output: torch.Tensor) -> int:
    kh, kw = conv.kernel_size
    return output.numel() * (conv.in_channels // conv.groups) * kh * kw


def _linear_macs(linear: nn.Linear, output: torch.Tensor) -> int:
    return output.numel() * linear.in_features


def _dynamic_macs(layer: WeightNetConv | CondConv, output: torch.Tensor) -> int:
    """The functional conv (and CondConv's expert mixing, a matmul per sample): what hwlab.space.cost counts
    beyond the Conv2d layers that compute the weight, which their own hooks count."""
    if isinstance(layer, WeightNetConv):
        return output.numel() * layer.cin * layer.kernel**2
    experts = layer.experts
    weights = experts[0].numel()
    return output.numel() * experts.shape[2] * experts.shape[3] ** 2 + output.shape[0] * experts.shape[0] * weights


def count_macs_params(module: nn.Module, input_shape: Sequence[int]) -> tuple[int, int]:
    """(MACs, params) of one forward pass of `module` on a zero tensor of `input_shape`.

    Runs in eval mode under no_grad, so BN statistics are not touched, and gives the
    module back in the mode it had. A module called twice is counted twice.
    """
    total = 0

    def hook(layer: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(layer, WeightNetConv | CondConv):
            total += _dynamic_macs(layer, output)
        else:
            total += _conv_macs(layer, output) if isinstance(layer, nn.Conv2d) else _linear_macs(layer, output)

    counted = nn.Conv2d | nn.Linear | WeightNetConv | CondConv
    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, counted)]
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

"""Kernel algebra of re-parameterisation: BN folded into a conv, small kernels padded into a big one.

Everything here is exact in real arithmetic: a conv followed by an inference-mode BN is one conv with a
bias, and convolutions of one input at aligned centres add up to one convolution whose kernel is the sum
of theirs (each padded to the largest size). Only fp32 rounding separates a deploy form from its train form.
"""

from __future__ import annotations

import torch
from torch import nn

from hwlab.errors import ReparamError


def check_foldable(bn: nn.BatchNorm2d, where: str) -> None:
    """A BN can be folded only with running statistics (the statistics an inference graph uses)."""
    if bn.running_mean is None or bn.running_var is None:
        raise ReparamError(
            f"{where}: its BatchNorm has no running statistics (track_running_stats=False), so it has no "
            "inference form to fold",
            hint="build the block with track_running_stats=True and train or recalibrate it",
        )
    if not bool(torch.isfinite(bn.running_var).all()) or bool((bn.running_var + bn.eps <= 0).any()):
        raise ReparamError(f"{where}: its BatchNorm's running variance is not finite and positive",
                           hint="recalibrate BN on training data before converting")  # fmt: skip


def fold_bn(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight, bias) of the conv that computes ``bn(conv(x))`` (BN in inference mode)."""
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.affine else torch.ones_like(std)
    beta = bn.bias if bn.affine else torch.zeros_like(std)
    scale = gamma / std
    base = bias if bias is not None else torch.zeros_like(std)
    return weight * scale.reshape(-1, 1, 1, 1), beta + (base - bn.running_mean) * scale


def identity_kernel(channels: int, groups: int, kernel: int, like: torch.Tensor) -> torch.Tensor:
    """The ``kernel``x``kernel`` grouped conv weight that passes every channel through unchanged."""
    per_group = channels // groups
    weight = torch.zeros(channels, per_group, kernel, kernel, dtype=like.dtype, device=like.device)
    centre = kernel // 2
    for c in range(channels):
        weight[c, c % per_group, centre, centre] = 1.0
    return weight


def pad_to(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A kernel zero-padded around its centre to ``height`` x ``width`` (both differences even)."""
    dh, dw = height - weight.shape[-2], width - weight.shape[-1]
    if dh < 0 or dw < 0 or dh % 2 or dw % 2:
        raise ValueError(f"cannot centre a {tuple(weight.shape[-2:])} kernel in {height}x{width}")
    return nn.functional.pad(weight, (dw // 2, dw // 2, dh // 2, dh // 2))


def deploy_conv(like: nn.Conv2d, weight: torch.Tensor, bias: torch.Tensor) -> nn.Conv2d:
    """A conv with ``like``'s geometry (stride, groups; same padding for ``weight``'s size) and a bias."""
    k_h, k_w = weight.shape[-2:]
    conv = nn.Conv2d(like.in_channels, like.out_channels, (k_h, k_w), like.stride, (k_h // 2, k_w // 2),
                     groups=like.groups, bias=True)  # fmt: skip
    with torch.no_grad():
        conv.weight.copy_(weight)
        conv.bias.copy_(bias)
    return conv

"""Dynamic-weight convolutions: WeightNet and its two extremes, SE and CondConv.

WeightNet (Ma et al., ECCV 2020) computes a conv's weights per sample from the input: global pooling, a
1x1 conv (an FC) with a sigmoid giving an attention vector, then a *grouped* 1x1 conv mapping it to the
weights, which the main convolution applies (one group per sample, so a batch is one grouped conv). Here
the attention vector has ``M x G`` entries and the grouped FC has ``G`` groups, each mapping its ``M``
entries to the weights of ``cout / G`` output channels. Its two extremes are exactly:

* ``G = 1``: ``W = sum_m alpha_m W_m``, CondConv (Yang et al., NeurIPS 2019) with ``M`` experts and
  sigmoid routing (:class:`CondConv`);
* ``M = 1, G = cout``: ``W_o = alpha_o W_o``, one gate per output channel, which is SE (Hu et al., CVPR
  2018) in WeightNet's analysis: the gate is computed from the block input by one FC and scales the conv's
  output channels (:class:`SEConv`; a classic SE block adds a reduction FC and reads the conv's output).

``WeightNetConv.from_se`` and ``from_condconv`` copy their weights, and the tests check the outputs agree.
The exported graph holds the computed weight as a tensor feeding a Conv (not an initializer): what the
predictor must cost as a conv with a dynamic weight.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.errors import ReparamError


def _gap(x: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(x, 1)


class WeightNetConv(nn.Module):
    """A kxk conv whose weights a grouped FC computes per sample from the pooled input."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, m: int = 2, g: int = 2) -> None:
        super().__init__()
        if g < 1 or cout % g:
            raise ReparamError(f"WeightNet groups G={g} must divide cout={cout}", hint="pick G from cout's divisors")
        if m < 1:
            raise ReparamError(f"WeightNet needs M >= 1 attention entries per group, got {m}", hint="e.g. M=2")
        self.cin, self.cout, self.kernel, self.stride, self.m, self.g = cin, cout, kernel, stride, m, g
        self.attention = nn.Conv2d(cin, m * g, 1, bias=True)
        per_group = cout // g * cin * kernel * kernel
        self.generate = nn.Conv2d(m * g, g * per_group, 1, groups=g, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        alpha = torch.sigmoid(self.attention(_gap(x)))
        weight = self.generate(alpha).reshape(n * self.cout, self.cin, self.kernel, self.kernel)
        out = F.conv2d(x.reshape(1, n * self.cin, h, w), weight, None, self.stride, self.kernel // 2, groups=n)
        return out.reshape(n, self.cout, out.shape[-2], out.shape[-1])

    @classmethod
    def from_se(cls, se: SEConv) -> WeightNetConv:
        """The WeightNet with ``M = 1, G = cout`` that computes ``se``."""
        net = cls(se.conv.in_channels, se.conv.out_channels, se.conv.kernel_size[0], se.conv.stride[0], 1,
                  se.conv.out_channels)  # fmt: skip
        with torch.no_grad():
            net.attention.load_state_dict(se.gate.state_dict())
            net.generate.weight.copy_(se.conv.weight.reshape(net.generate.weight.shape))
        return net

    @classmethod
    def from_condconv(cls, cond: CondConv) -> WeightNetConv:
        """The WeightNet with ``G = 1, M = experts`` that computes ``cond``."""
        e, cout, cin, k, _ = cond.experts.shape
        net = cls(cin, cout, k, cond.stride, e, 1)
        with torch.no_grad():
            net.attention.load_state_dict(cond.routing.state_dict())
            net.generate.weight.copy_(cond.experts.reshape(e, -1).t().reshape(net.generate.weight.shape))
        return net


class SEConv(nn.Module):
    """A kxk conv whose output channels are scaled by ``sigmoid(FC(GAP(x)))`` of the block input."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.gate = nn.Conv2d(cin, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * torch.sigmoid(self.gate(_gap(x)))


class CondConv(nn.Module):
    """A kxk conv whose weight is a sigmoid-routed mixture of ``experts`` kernels, per sample."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1, experts: int = 4) -> None:
        super().__init__()
        self.stride = stride
        self.routing = nn.Conv2d(cin, experts, 1, bias=True)
        self.experts = nn.Parameter(torch.empty(experts, cout, cin, kernel, kernel))
        for expert in self.experts:
            nn.init.kaiming_uniform_(expert, a=5**0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, cin, h, w = x.shape
        e, cout, _, k, _ = self.experts.shape
        alpha = torch.sigmoid(self.routing(_gap(x))).reshape(n, e)
        weight = (alpha @ self.experts.reshape(e, -1)).reshape(n * cout, cin, k, k)
        out = F.conv2d(x.reshape(1, n * cin, h, w), weight, None, self.stride, k // 2, groups=n)
        return out.reshape(n, cout, out.shape[-2], out.shape[-1])

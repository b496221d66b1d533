"""count_macs_params on a network small enough to count by hand."""

from __future__ import annotations

import torch
from torch import nn

from hwlab.zoo import count_macs_params


def _tiny() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),  # 10x10 -> 5x5
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False),
        nn.Conv2d(8, 16, 1, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(16, 4),
    )


def test_exact_counts() -> None:
    macs, params = count_macs_params(_tiny(), (1, 3, 10, 10))
    conv = 5 * 5 * 8 * 3 * 9
    depthwise = 5 * 5 * 8 * 9
    pointwise = 5 * 5 * 16 * 8
    linear = 16 * 4
    assert macs == conv + depthwise + pointwise + linear == 5400 + 1800 + 3200 + 64
    assert params == (8 * 27 + 8) + 2 * 8 + 8 * 9 + 16 * 8 + (16 * 4 + 4) == 508


def test_batch_scales_macs_not_params() -> None:
    one = count_macs_params(_tiny(), (1, 3, 10, 10))
    three = count_macs_params(_tiny(), (3, 3, 10, 10))
    assert three == (3 * one[0], one[1])


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.fc(x))


def test_shared_layer_counts_per_call() -> None:
    assert count_macs_params(_Twice(), (1, 6)) == (2 * 36, 42)


def test_leaves_mode_and_batchnorm_stats_alone() -> None:
    net = _tiny().train()
    bn = net[1]
    before = bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked)
    count_macs_params(net, (1, 3, 10, 10))
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2]


def test_convs_of_computed_weights_count_as_hwlab_space_cost_does() -> None:
    """A WeightNet or CondConv runs its conv as a function (no Conv2d hook sees it); it counts all the same."""
    from hwlab.reparam import CondConv, WeightNetConv

    conv = 14 * 14 * 24 * 16 * 9  # the 3x3 conv, 16 -> 24 channels at 14x14
    weights = 24 * 16 * 9
    weightnet = count_macs_params(WeightNetConv(16, 24, 3, 1, m=2, g=2), (1, 16, 14, 14))[0]
    assert weightnet == 16 * 2 * 2 + 2 * weights + conv  # attention FC, grouped FC generating the weight, conv
    condconv = count_macs_params(CondConv(16, 24, 3, 1, experts=4), (1, 16, 14, 14))[0]
    assert condconv == 16 * 4 + 4 * weights + conv  # routing FC, mixing the 4 experts, conv

"""The supernet: a path equals its standalone network, BN recalibration, affine-free choice BNs, slicing."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from hwlab.search.bn import recalibrate_bn
from hwlab.search.space import Arch, SearchSpace
from hwlab.search.supernet import SlimBatchNorm, Supernet, standalone


def _trained(space: SearchSpace, steps: int = 6) -> Supernet:
    """A supernet after a few SGD steps on random paths, so weights and BN statistics are not at their init."""
    torch.manual_seed(0)
    net = Supernet(space)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    rng = random.Random(0)
    net.train()
    for _ in range(steps):
        x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
        loss = nn.functional.cross_entropy(net(x, space.sample(rng)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.parametrize("channel_search", [False, True])
def test_standalone_network_computes_the_supernet_path(channel_search: bool) -> None:
    space = SearchSpace.of(input_size=16, channel_search=channel_search)
    net = _trained(space)
    x = torch.randn(4, 3, 16, 16)
    rng = random.Random(5)
    archs = [space.sample(rng) for _ in range(3)] + [Arch((3,) * 20, (max(space.scales),) * 20)]
    with torch.no_grad():
        for arch in archs:
            path = net(x, arch)
            alone = standalone(net, arch)(x)
            assert alone.shape == path.shape == (4, 10)
            torch.testing.assert_close(alone, path, rtol=1e-4, atol=1e-5)
    # A different architecture computes something else (the comparison can fail).
    other = Arch(tuple((c + 1) % 4 for c in archs[0].choices), archs[0].scales)
    with torch.no_grad():
        assert not torch.allclose(standalone(net, other)(x), net(x, archs[0]), atol=1e-3)


def test_choice_block_batchnorms_have_no_affine_parameters() -> None:
    net = Supernet(SearchSpace.of(input_size=16))
    block_bns = [m for m in net.layers.modules() if isinstance(m, (nn.BatchNorm2d, SlimBatchNorm))]
    assert block_bns and all(isinstance(m, SlimBatchNorm) for m in block_bns)
    assert not any("bn" in name for name, _ in net.layers.named_parameters())
    assert all(m.affine for m in net.stem.modules() if isinstance(m, nn.BatchNorm2d))


def test_narrow_paths_train_the_leading_slice_of_shared_weights() -> None:
    space = SearchSpace.of(input_size=16, channel_search=True)
    net = Supernet(space)
    narrow = Arch((0,) * 20, (0.2,) * 20)
    net(torch.randn(2, 3, 16, 16), narrow).sum().backward()
    expand = net.layers[1][0].main[0].conv.weight  # layer 1, choice 0, first 1x1 conv: (max_mid, cin, 1, 1)
    mid = net.mids(narrow)[1]
    assert expand.grad[:mid].abs().sum() > 0
    assert expand.grad[mid:].abs().sum() == 0


def test_recalibration_replaces_running_statistics_with_the_path_average() -> None:
    space = SearchSpace.of(input_size=16)
    net = _trained(space)
    arch = space.sample(random.Random(7))
    batches = [torch.randn(16, 3, 16, 16) * 2 + 1 for _ in range(3)]
    stem_bn = net.stem[1]
    block_bn = net.layers[0][arch.choices[0]].main[0].bn
    before = block_bn.running_mean.clone()
    assert recalibrate_bn(net, arch, iter(batches + batches), count=3) == 3
    # The stem BN's mean is now the average of the three batch means of the stem conv output.
    with torch.no_grad():
        expected = torch.stack([net.stem[0](b).mean(dim=(0, 2, 3)) for b in batches]).mean(0)
    torch.testing.assert_close(stem_bn.running_mean, expected, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(block_bn.running_mean, before)
    assert int(block_bn.num_batches_tracked) == 3
    # Momenta are back to what training uses, and the network is left in eval mode.
    assert stem_bn.momentum == 0.1 and block_bn.momentum == 0.1 and not net.training
    # Blocks off the path are reset (statistics of an identity), not left with stale values.
    off_path = net.layers[0][(arch.choices[0] + 1) % 4].main[0].bn
    assert torch.equal(off_path.running_mean, torch.zeros_like(off_path.running_mean))

"""The supernet: a path equals its standalone network, BN recalibration, affine-free choice BNs, slicing."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from hwlab.errors import SpaceError
from hwlab.search.bn import recalibrate_bn
from hwlab.search.space import Arch, SearchSpace
from hwlab.search.supernet import SlimBatchNorm, Supernet, standalone
from hwlab.space.build import random_input, seeded_rng


def _trained(space: SearchSpace, steps: int = 6, sharing: str = "nested") -> Supernet:
    """A supernet after a few SGD steps on random paths, so weights and BN statistics are not at their init."""
    with seeded_rng(0):
        net = Supernet(space, sharing)
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


@pytest.mark.parametrize(("channel_search", "sharing"), [(False, "nested"), (True, "nested"), (True, "separate")])
def test_standalone_network_computes_the_supernet_path(channel_search: bool, sharing: str) -> None:
    space = SearchSpace.of(input_size=16, channel_search=channel_search)
    net = _trained(space, sharing=sharing)
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
    expand = net.layers[1].steps["expand"].conv.weight  # layer 1, the units' first 1x1: (max_mid, cin, 1, 1)
    mid = net.mids(narrow)[1]
    assert expand.grad[:mid].abs().sum() > 0
    assert expand.grad[mid:].abs().sum() == 0


def test_recalibration_replaces_running_statistics_with_the_path_average() -> None:
    space = SearchSpace.of(input_size=16)
    net = _trained(space)
    arch = space.sample(random.Random(7))
    batches = [torch.randn(16, 3, 16, 16) * 2 + 1 for _ in range(3)]
    stem_bn = net.stem[1]
    block_bn = net.layers[0].calls(arch.choices[0])[-1][0].bn  # the path's last step in layer 0
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
    # Steps off the path are reset (statistics of an identity), not left with stale values.
    on_path = {id(step) for layer, c in zip(net.layers, arch.choices, strict=True) for step, _ in layer.calls(c)}
    off_path = next(s.bn for s in net.layers[0].steps.values() if id(s) not in on_path)
    assert torch.equal(off_path.running_mean, torch.zeros_like(off_path.running_mean))


def test_nested_sharing_runs_one_kernel_per_layer_and_starts_xception_extras_as_identities() -> None:
    space = SearchSpace.of(input_size=16)
    layer = Supernet(space, "nested").layers[5]  # a stride-1 layer
    k3, k5, k7, xception = (layer.calls(c) for c in range(4))
    assert [s for s, _ in k3] == [s for s, _ in k5] == [s for s, _ in k7]  # the very same modules
    assert [c.kernel for _, c in k3] == [None, 3, None] and [c.kernel for _, c in k5] == [None, 5, None]
    assert xception[1][0] is k7[0][0] and xception[4][0] is k7[1][0] and xception[5][0] is k7[2][0]
    assert (xception[4][1].kernel, xception[4][1].stride) == (3, 1)
    dw1, _, dw2, pw2, _, _ = (s.conv.weight.detach() for s, _ in xception)
    assert torch.equal(dw1[:, 0, 1, 1], torch.ones(len(dw1))) and float(dw1.abs().sum()) == len(dw1)
    assert torch.equal(pw2[:, :, 0, 0], torch.eye(len(pw2))) and float(dw2.abs().sum()) == len(dw2)
    # A 3x3 path trains only the centre of the shared 7x7 kernel.
    with seeded_rng(0):
        net = Supernet(space, "nested")
    net(random_input((2, 3, 16, 16)), Arch((0,) * 20, (1.0,) * 20)).sum().backward()
    grad = net.layers[5].steps["dw"].conv.weight.grad
    outside = torch.ones_like(grad, dtype=torch.bool)
    outside[:, :, 2:5, 2:5] = False
    assert grad[:, :, 2:5, 2:5].abs().sum() > 0 and not grad[outside].any()


def test_separate_sharing_gives_every_choice_its_own_weights() -> None:
    layer = Supernet(SearchSpace.of(input_size=16), "separate").layers[0]  # a stride-2 layer
    owned = [{id(s) for s, _ in layer.calls(c)} for c in range(4)]
    assert all(not (owned[a] & owned[b]) for a in range(4) for b in range(a + 1, 4))
    assert sum(map(len, owned)) == len(layer.steps) == 3 * 5 + 8


def test_unknown_sharing_is_refused() -> None:
    with pytest.raises(SpaceError, match="nested"):
        Supernet(SearchSpace.of(input_size=16), "some")

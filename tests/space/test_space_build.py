"""build_module: shapes, determinism, faithfulness of the SPOS blocks, analytic counts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from hwlab.space import OpSpec, build_module, example_inputs, example_specs, spos_space
from hwlab.space.modules import split_shuffle
from hwlab.zoo.count import count_macs_params

SPOS_224 = spos_space(input_size=224)
SPOS_32 = spos_space(input_size=32, channel_scales=(0.2, 1.6))


@pytest.mark.parametrize("spec", example_specs() + SPOS_224 + SPOS_32, ids=lambda s: s.key)
def test_module_output_shape_and_counts(spec: OpSpec) -> None:
    module = build_module(spec)
    assert not module.training
    inputs = example_inputs(spec)
    with torch.no_grad():
        out = module(*inputs)
    assert tuple(out.shape) == spec.output_shape()
    assert spec.params == sum(p.numel() for p in module.parameters())
    # Two-input ops (add, concat) have no MACs; the rest are counted by running the module.
    assert spec.macs == (count_macs_params(module, spec.input_shapes()[0])[0] if len(inputs) == 1 else 0)


def test_weights_are_seeded_by_key_and_leave_global_rng_alone() -> None:
    spec = OpSpec("spos_shufflenet", 14, 14, 32, 32, kernel=3, mid=16)
    state = torch.get_rng_state()
    first, second = build_module(spec).state_dict(), build_module(spec).state_dict()
    assert torch.equal(state, torch.get_rng_state())
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    other = build_module(OpSpec("spos_shufflenet", 14, 14, 32, 32, kernel=3, mid=17)).state_dict()
    w = "branch_main.0.weight"
    assert not torch.equal(first[w][:16], other[w][:16])


def test_batchnorm_statistics_are_not_identity() -> None:
    bn = build_module(OpSpec("bn", 7, 7, 8, 8))
    assert not torch.allclose(bn.running_var, torch.ones(8))
    assert not torch.allclose(bn.running_mean, torch.zeros(8))


def test_split_shuffle_takes_even_then_odd_channels() -> None:
    x = torch.arange(2 * 8 * 3 * 3, dtype=torch.float32).reshape(2, 8, 3, 3)
    even, odd = split_shuffle(x)
    assert torch.equal(even, x[:, 0::2])
    assert torch.equal(odd, x[:, 1::2])


@pytest.mark.parametrize("op", ["spos_shufflenet", "spos_xception"])
def test_stride1_block_passes_half_the_channels_through(op: str) -> None:
    kernel = {"spos_shufflenet": 5}.get(op, 0)
    spec = OpSpec(op, 14, 14, 32, 32, kernel=kernel, mid=12)
    (x,) = example_inputs(spec)
    with torch.no_grad():
        out = build_module(spec)(x)
    assert torch.equal(out[:, :16], x[:, 0::2])
    assert (out[:, 16:] >= 0).all()  # the main branch ends in a ReLU


def test_stride2_block_has_projection_branch() -> None:
    block = build_module(OpSpec("spos_shufflenet", 28, 28, 64, 160, kernel=7, stride=2, mid=80))
    convs = [m for m in block.branch_proj.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.stride, c.groups) for c in convs] == [
        (64, 64, (7, 7), (2, 2), 64),
        (64, 64, (1, 1), (1, 1), 1),
    ]
    main = [m for m in block.branch_main.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in main] == [(64, 80), (80, 80), (80, 96)]

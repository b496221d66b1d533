"""``--space repvgg``: candidates, their deploy ops, the supernet's paths and the standalone networks."""

from __future__ import annotations

import random

import pytest
import torch

from hwlab.errors import SpaceError
from hwlab.reparam import check_equivalence, reparam
from hwlab.reparam.space import KINDS, RepArch, RepSpace
from hwlab.reparam.supernet import RepSupernet, standalone
from hwlab.search.bn import recalibrate
from hwlab.space import OpSpec, build_module, get_space
from hwlab.space.build import example_inputs

SMALL = RepSpace(16, 10, 8, ((8, 16), (16, 24)), (1, 2))


def test_variation_stays_in_the_space() -> None:
    rng = random.Random(0)
    a, b = SMALL.sample(rng), SMALL.sample(rng)
    for _ in range(200):
        SMALL.check(SMALL.mutate(a, rng, 0.3))
        child = SMALL.check(SMALL.crossover(a, b, rng))
        for s in range(2):  # a stage comes whole from one parent
            genes = child.genes[s * 2 : s * 2 + 2]
            assert (child.depths[s], child.widths[s], genes) in (
                (a.depths[s], a.widths[s], a.genes[s * 2 : s * 2 + 2]),
                (b.depths[s], b.widths[s], b.genes[s * 2 : s * 2 + 2]),
            )
    with pytest.raises(SpaceError, match="stage 1: depth 1 / width 32"):
        SMALL.check(RepArch((1, 1), (8, 32), a.genes))


def test_the_deployed_cost_ignores_the_block_kinds() -> None:
    arch = SMALL.sample(random.Random(1))
    for kind in KINDS:
        same = RepArch(arch.depths, arch.widths, tuple((kind, act) for _, act in arch.genes))
        assert [op.key for op in SMALL.deploy_ops(same)] == [op.key for op in SMALL.deploy_ops(arch)]
    frelu = RepArch(arch.depths, arch.widths, tuple((k, "frelu") for k, _ in arch.genes))
    assert (
        SMALL.cost(frelu)[0]
        > SMALL.cost(RepArch(arch.depths, arch.widths, tuple((k, "relu") for k, _ in arch.genes)))[0]
    )


def test_the_profiled_space_holds_every_candidates_ops() -> None:
    held = {op.key for op in SMALL.all_deploy_ops()}
    rng = random.Random(2)
    for _ in range(300):
        assert {op.key for op in SMALL.deploy_ops(SMALL.sample(rng))} <= held
    assert {op.key for op in get_space("repvgg", input_size=16)} == {op.key for op in RepSpace(16).all_deploy_ops()}


def test_the_key_names_only_what_runs() -> None:
    a = RepArch((1, 1), (8, 16), (("repvgg", "relu"), ("acb", "frelu"), ("conv", "relu"), ("acb", "relu")))
    b = RepArch((1, 1), (8, 16), (("repvgg", "relu"), ("conv", "relu"), ("conv", "relu"), ("repvgg", "frelu")))
    assert SMALL.key(a) == SMALL.key(b)
    assert SMALL.arch_from_json(a.to_json()).to_json() == a.to_json()


def test_a_path_and_its_standalone_network_agree_and_deploy_exactly() -> None:
    torch.manual_seed(0)
    supernet = RepSupernet(SMALL)
    rng = random.Random(3)
    batches = [torch.randn(16, 3, 16, 16) for _ in range(2)]
    x = torch.randn(4, 3, 16, 16)
    for _ in range(4):
        arch = SMALL.sample(rng)
        recalibrate(supernet, lambda t, a=arch: supernet(t, a), batches, 2)
        with torch.no_grad():
            path = supernet(x, arch)
            net = standalone(supernet, arch)
            assert torch.allclose(net(x), path, atol=1e-5)
        assert check_equivalence(net, reparam(net), (2, 3, 16, 16)).max_rel < 1e-5


@pytest.mark.parametrize("space_input", [32])
def test_every_block_space_op_builds_at_its_shape(space_input: int) -> None:
    ops = get_space("blocks", input_size=space_input)
    kinds = {op.op for op in ops}
    assert {"repvgg_block", "acnet_block", "conv_act", "frelu_train", "frelu", "weightnet", "se_conv", "condconv",
            "act", "conv"} <= kinds  # fmt: skip
    for op in ops:
        module = build_module(op)
        assert tuple(module(*example_inputs(op)).shape) == op.output_shape()
        assert sum(p.numel() for p in module.parameters()) == op.params
        assert OpSpec.from_key(op.key) == op


def test_the_block_space_refuses_an_odd_size() -> None:
    with pytest.raises(SpaceError, match="multiple of 32"):
        get_space("blocks", input_size=100)

"""Generated kernel modules: each exports to a kernel of exactly the wanted type and features; neighbours."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import torch
from torch import nn

from hwlab.predictors.graph import module_kernels
from hwlab.predictors.kernelgen import STRUCTURAL, kernel_module, kernel_of, neighbour_features, neighbour_items
from hwlab.predictors.kernels import FusionRules, Kernel
from hwlab.space.modules import split_shuffle

# What onnxruntime's CPU provider was measured to fuse.
RULES = FusionRules(
    frozenset(
        {
            ("conv", "bn"),
            ("conv", "relu"),
            ("dwconv", "bn"),
            ("dwconv", "relu"),
            ("conv", "maxpool"),
            ("dwconv", "maxpool"),
            ("dwconv", "avgpool"),
        }
    )
)


def feats(h: int, w: int, cin: int, cout: int, kernel: int = 0, stride: int = 0, groups: int = 0) -> dict[str, float]:
    """Structural features as a real kernel reports them: 0 for what the kernel has no use for."""
    return dict(zip(STRUCTURAL, map(float, (h, w, cin, cout, kernel, stride, groups)), strict=True))


CASES: dict[str, dict[str, float]] = {
    "conv+relu": feats(28, 28, 16, 32, 3, 2, 1),
    "conv": feats(14, 14, 24, 48, 1, 1, 1),
    "dwconv+relu": feats(28, 28, 32, 32, 3, 1, 32),
    "dwconv": feats(28, 28, 32, 32, 5, 2, 32),
    "fc": feats(1, 1, 64, 10),
    "add": feats(14, 14, 16, 16),
    "relu6": feats(14, 14, 24, 24),
    "hswish": feats(7, 7, 40, 40),
    "maxpool": feats(56, 56, 64, 64, 3, 2),
    "gap": feats(7, 7, 96, 96),
    "concat": feats(14, 14, 16, 32),
    "reshape": feats(14, 14, 32, 2),  # the first reshape of a channel shuffle
    "transpose": feats(196, 1, 2, 16),  # the SPOS split's transpose of its leading axis
    "gather": feats(16, 196, 1, 16),  # one half of the SPOS split
    # Rarer types and categories, each built once.
    "conv+bn": feats(14, 14, 8, 16, 3, 1, 1),
    "dwconv+bn+relu": feats(14, 14, 16, 16, 3, 2, 16),
    "conv+relu+maxpool": feats(32, 32, 3, 16, 7, 2, 1),
    "dwconv+avgpool": feats(14, 14, 16, 16, 3, 1, 16),
    "bn": feats(14, 14, 8, 8),
    "swish": feats(14, 14, 8, 8),
    "sigmoid": feats(14, 14, 8, 8),
    "mul": feats(14, 14, 8, 8),
    "avgpool": feats(13, 13, 8, 8, 2, 2),
    "flatten": feats(7, 7, 8, 392),
    "slice": feats(14, 14, 16, 8),
    "pad": feats(14, 14, 8, 8),
    "split": feats(14, 14, 16, 8),
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def built_kernel(kernel_type: str, features: dict[str, float], cache: Path) -> Kernel:
    built = kernel_module(kernel_type, features)
    assert built is not None, kernel_type
    kernel = kernel_of(*built, RULES, kernel_type, cache_dir=cache)
    assert kernel is not None, kernel_type
    return kernel


def structural(kernel: Kernel) -> dict[str, float]:
    return {name: kernel.features[name] for name in STRUCTURAL}


@pytest.mark.parametrize("kernel_type", list(CASES))
def test_module_splits_into_the_wanted_kernel_with_the_wanted_features(kernel_type: str, cache: Path) -> None:
    module, inputs = kernel_module(kernel_type, CASES[kernel_type])  # type: ignore[misc]
    assert not module.training
    kernels = module_kernels(module, inputs, RULES, cache_dir=cache)
    assert [k.type for k in kernels] == [kernel_type]  # the module runs that kernel and nothing else
    assert structural(kernels[0]) == CASES[kernel_type]


def test_generation_is_seeded_by_type_and_features() -> None:
    first, again = kernel_module("conv+bn", CASES["conv+bn"]), kernel_module("conv+bn", CASES["conv+bn"])
    assert first is not None and again is not None
    assert all(torch.equal(a, b) for a, b in zip(first[1], again[1], strict=True))
    state, other = first[0].state_dict(), again[0].state_dict()
    assert all(torch.equal(state[name], other[name]) for name in state)
    bn = first[0].steps[1]
    assert not torch.equal(bn.running_var, torch.ones_like(bn.running_var))  # statistics randomised


def test_torch_folds_bn_into_the_conv_before_it_but_generated_conv_bn_stays(cache: Path) -> None:
    plain = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16)).eval()
    assert [k.type for k in module_kernels(plain, torch.zeros(1, 8, 14, 14), RULES, cache_dir=cache)] == ["conv"]
    kernel = built_kernel("conv+bn", CASES["conv+bn"], cache)
    assert kernel.features["params"] == 16 * 8 * 9 + 4 * 16  # bias-free conv, then the BN's four vectors


def test_channel_split_kernels_are_reproduced_feature_for_feature(cache: Path) -> None:
    class Split(nn.Module):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return split_shuffle(x)

    real = module_kernels(Split(), torch.zeros(1, 32, 14, 14), RULES, cache_dir=cache)
    assert [k.type for k in real] == ["reshape", "transpose", "reshape", "gather", "gather"]
    for kernel in (real[0], real[1], real[3]):  # the second reshape runs on a leading axis of 2: not reproduced
        generated = built_kernel(kernel.type, kernel.features, cache)
        assert generated.vector() == kernel.vector(), kernel.type


@pytest.mark.parametrize(
    ("kernel_type", "features"),
    [
        ("lstm", CASES["conv"]),
        ("conv+unknown:Einsum", CASES["conv"]),
        ("", CASES["conv"]),
        ("dwconv", feats(14, 14, 1, 1, 3, 1, 1)),  # one channel is a plain conv
        ("maxpool", feats(1, 1, 8, 8, 4, 1)),  # window larger than the padded input
        ("conv", feats(0, 14, 8, 8, 3, 1, 1)),
        ("split+relu", CASES["split"]),  # two outputs cannot feed one op
        ("fc+maxpool", CASES["fc"]),
    ],
)
def test_what_cannot_be_built_is_none(kernel_type: str, features: dict[str, float]) -> None:
    assert kernel_module(kernel_type, features) is None


def test_neighbours_are_near_unique_and_deterministic() -> None:
    base = {**CASES["conv+relu"], "flops": 1.0, "params": 2.0}
    found = neighbour_features(base, random.Random(7), 20)
    assert found == neighbour_features(base, random.Random(7), 20)
    assert found != neighbour_features(base, random.Random(8), 20)
    assert len(found) == 20
    keys = {tuple(f.items()) for f in found}
    assert len(keys) == 20 and tuple(CASES["conv+relu"].items()) not in keys
    for f in found:
        assert list(f) == list(STRUCTURAL)  # stale derived features dropped
        assert f["h"] == f["w"] and 21 <= f["h"] <= 37  # round(28 * 0.75) .. round(28 * 1.33)
        assert f["cin"] % 8 == 0 and 8 <= f["cin"] <= 24
        assert f["cout"] % 8 == 0 and 24 <= f["cout"] <= 40
        assert (f["kernel"], f["stride"], f["groups"]) == (3, 2, 1)


def test_depthwise_groups_follow_channels_and_odd_sides_stay_apart() -> None:
    for f in neighbour_features(feats(28, 20, 30, 30, 3, 1, 30), random.Random(1), 10):
        assert f["cin"] == f["cout"] == f["groups"]
        assert 22 <= f["cin"] <= 40  # 30 is no multiple of 8, so any integer
        assert 15 <= f["w"] <= 27 and 21 <= f["h"] <= 37
    ratios = {f["h"] / f["w"] for f in neighbour_features(feats(28, 20, 8, 8), random.Random(1), 5)}
    assert len(ratios) > 1  # h and w of a non-square input scale independently


def test_few_neighbours_exist_for_a_tiny_kernel() -> None:
    found = neighbour_features(feats(1, 1, 2, 2), random.Random(0), 10)
    assert sorted(f["cin"] for f in found) == [3]  # 2 x [0.75, 1.33] rounds to 2 (the original) or 3


def test_neighbour_items_build_confirmed_kernels_of_the_type(cache: Path) -> None:
    kernel = built_kernel("dwconv+relu", CASES["dwconv+relu"], cache)
    items = neighbour_items(kernel, RULES, random.Random(3), 4, cache_dir=cache)
    assert len(items) == 4 and len({name for name, _, _ in items}) == 4
    for name, module, inputs in items:
        found = kernel_of(module, inputs, RULES, "dwconv+relu", cache_dir=cache)
        assert found is not None and name.startswith("kernel-dwconv+relu-")
        assert found.features["cin"] == found.features["groups"] and found.features["kernel"] == 3

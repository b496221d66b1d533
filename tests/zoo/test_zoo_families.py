"""Random CNN families: seeded, in their MAC range, well formed, and exportable."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from hwlab.errors import SpaceError
from hwlab.export import export_module
from hwlab.zoo import (
    FAMILIES,
    MAX_MACS,
    MIN_MACS,
    ZooModel,
    count_macs_params,
    coverage_like,
    mobilenetv2_like,
    reparamnet_like,
    resnet_like,
    sample_family,
    vgg_like,
    zoo_model,
)
from hwlab.zoo.blocks import BasicBlock, InvertedResidual
from hwlab.zoo.families import INPUT_SIZES

GENERATORS = {"mobilenetv2": mobilenetv2_like, "resnet": resnet_like, "vgg": vgg_like, "coverage": coverage_like,
              "reparamnet": reparamnet_like}  # fmt: skip


def _run(module: nn.Module, model: ZooModel) -> torch.Tensor:
    x = torch.randn(model.input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return module(x)


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_models(family: str) -> None:
    first, again = sample_family(family, 3, seed=7), sample_family(family, 3, seed=7)
    assert [m.name for m in first] == [m.name for m in again]
    assert first == again
    assert torch.equal(_run(first[0].build(), first[0]), _run(again[0].build(), again[0]))


@pytest.mark.parametrize("family", FAMILIES)
def test_seeds_differ(family: str) -> None:
    names = {seed: {m.name for m in sample_family(family, 5, seed)} for seed in (1, 2)}
    assert names[1] != names[2]


@pytest.mark.parametrize("family", FAMILIES)
def test_fifty_samples_within_ranges(family: str) -> None:
    models = sample_family(family, 50, seed=0)
    assert len({m.name for m in models}) == 50
    assert all(m.family == family and m.name.startswith(f"{family}-") for m in models)
    assert all(MIN_MACS <= m.macs <= MAX_MACS for m in models)
    assert all(m.input_shape == (1, 3, m.config["input_size"], m.config["input_size"]) for m in models)
    assert {m.input_shape[2] for m in models} == set(INPUT_SIZES)
    for m in models:
        assert all(s["width"] % 8 == 0 and s["depth"] >= 1 for s in m.config.get("stages", [])), m.name


@pytest.mark.parametrize("family", FAMILIES)
def test_forward_and_counted_macs(family: str) -> None:
    rng = random.Random(3)
    for _ in range(2):
        model = GENERATORS[family](rng)
        module = model.build()
        assert not module.training
        out = _run(module, model)
        assert out.shape == (1, 1000) and torch.isfinite(out).all()
        assert count_macs_params(module, model.input_shape)[0] == model.macs


@pytest.mark.parametrize("family", FAMILIES)
def test_rebuilt_from_config(family: str) -> None:
    state = torch.get_rng_state()
    model = GENERATORS[family](random.Random(4))
    again = zoo_model(family, model.config)
    assert again == model
    assert torch.equal(_run(model.module, model), _run(again.build(), again))
    assert model.module is model.module
    assert torch.equal(torch.get_rng_state(), state)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_export_matches_torch(family: str, tmp_path: Path) -> None:
    model = min(sample_family(family, 4, seed=11), key=lambda m: m.macs)
    x = torch.randn(model.input_shape)
    exported = export_module(model.module, x, "onnx", tmp_path, name=model.name)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input0": x.numpy()})
    with torch.no_grad():
        expected = model.module(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-3)


def test_mobilenetv2_residuals_where_shapes_allow() -> None:
    model = mobilenetv2_like(random.Random(6))
    blocks = [m for m in model.build().modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == sum(s["depth"] for s in model.config["stages"])
    expected, cin = [], model.config["stem"]
    for s in model.config["stages"]:
        expected += [s["stride"] == 1 and cin == s["width"]] + [True] * (s["depth"] - 1)
        cin = s["width"]
    assert [b.residual for b in blocks] == expected


def test_resnet_projects_only_when_shape_changes() -> None:
    for model in sample_family("resnet", 5, seed=2):
        for block in (m for m in model.build().modules() if isinstance(m, BasicBlock)):
            conv = block.body[0][0]
            changes = conv.stride != (1, 1) or conv.in_channels != conv.out_channels
            assert isinstance(block.shortcut, nn.Identity) != changes, model.name


def test_vgg_with_and_without_batchnorm() -> None:
    models = sample_family("vgg", 20, seed=0)
    assert {m.config["batchnorm"] for m in models} == {True, False}
    for model in models[:4]:
        module = model.build()
        has_bn = any(isinstance(m, nn.BatchNorm2d) for m in module.modules())
        assert has_bn == model.config["batchnorm"] == ("-bn-" in model.name)
        assert all((c.bias is None) == has_bn for c in module.modules() if isinstance(c, nn.Conv2d))


def test_batchnorm_is_not_identity() -> None:
    model = resnet_like(random.Random(0))
    for bn in (m for m in model.build().modules() if isinstance(m, nn.BatchNorm2d)):
        assert not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean))
        assert not torch.allclose(bn.running_var, torch.ones_like(bn.running_var))


def test_bad_requests_are_refused() -> None:
    with pytest.raises(SpaceError, match="unknown model family"):
        sample_family("alexnet", 1, 0)
    with pytest.raises(SpaceError, match="count"):
        sample_family("vgg", -1, 0)
    assert sample_family("vgg", 0, 0) == []

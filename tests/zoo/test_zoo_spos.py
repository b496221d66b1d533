"""SposNet: the network of one SPOS architecture matches its op specs, shape for shape."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwlab.errors import SpaceError
from hwlab.export import export_module
from hwlab.space import SPOS_CHOICES, SPOS_NUM_LAYERS, SposConfig, spos_arch_ops
from hwlab.zoo import SposNet, count_macs_params, random_spos_arch, spos_model

SCALES = (0.6, 1.0)
ARCHS = [(32, 0), (64, 1), (32, 2)]  # (input size, arch seed)


def _arch(size: int, seed: int) -> tuple[SposConfig, list[int], list[float]]:
    config = SposConfig(input_size=size, channel_scales=SCALES)
    choices, scales = random_spos_arch(random.Random(seed), config)
    return config, choices, scales


@pytest.fixture(scope="module", params=ARCHS, ids=lambda a: f"r{a[0]}-seed{a[1]}")
def arch(request: pytest.FixtureRequest) -> tuple[SposConfig, list[int], list[float], SposNet]:
    config, choices, scales = _arch(*request.param)
    return config, choices, scales, SposNet(config, choices, scales)


def test_forward_gives_logits(arch) -> None:
    config, _, _, net = arch
    assert not net.training
    with torch.no_grad():
        out = net(torch.randn(net.input_shape))
    assert out.shape == (1, config.num_classes)
    assert torch.isfinite(out).all()


def test_op_specs_are_the_arch_ops(arch) -> None:
    config, choices, scales, net = arch
    assert net.op_specs() == spos_arch_ops(config, choices, scales)
    assert len(net.ops) == len(net.op_specs()) == SPOS_NUM_LAYERS + 4


def test_each_child_maps_its_spec_shapes(arch) -> None:
    _, _, _, net = arch
    x = torch.randn(net.input_shape)
    with torch.no_grad():
        for spec, op in zip(net.op_specs(), net.ops, strict=True):
            if spec.op == "fc":
                x = torch.flatten(x, 1)
            assert tuple(x.shape) == spec.input_shapes()[0], spec.key
            x = op(x)
            assert tuple(x.shape) == spec.output_shape(), spec.key


def test_counts_agree_with_op_specs(arch) -> None:
    _, _, _, net = arch
    macs, params = count_macs_params(net, net.input_shape)
    assert macs == sum(op.macs for op in net.op_specs())
    assert params == sum(op.params for op in net.op_specs())


def test_random_arch_is_uniform_over_choices_and_scales() -> None:
    config = SposConfig(channel_scales=SCALES)
    rng = random.Random(5)
    draws = [random_spos_arch(rng, config) for _ in range(50)]
    assert all(len(c) == len(s) == SPOS_NUM_LAYERS for c, s in draws)
    assert {x for c, _ in draws for x in c} == set(range(len(SPOS_CHOICES)))
    assert {x for _, s in draws for x in s} == set(SCALES)
    assert random_spos_arch(random.Random(5), config) == draws[0]
    assert random_spos_arch(random.Random(0), SposConfig())[1] == [1.0] * SPOS_NUM_LAYERS


def test_weights_follow_the_name_and_leave_global_rng_alone() -> None:
    config, choices, scales = _arch(32, 0)
    state = torch.get_rng_state()
    a, b = SposNet(config, choices, scales), SposNet(config, choices, scales)
    assert torch.equal(torch.get_rng_state(), state)
    assert a.name == b.name
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(x, y), name
    other = SposNet(config, [3 - c for c in choices], scales)
    assert other.name != a.name


def test_zoo_model_builds_the_same_net() -> None:
    config, choices, scales = _arch(32, 1)
    model = spos_model(config, choices, scales)
    net = SposNet(config, choices, scales)
    assert model.family == "spos" and model.name == net.name and model.input_shape == net.input_shape
    assert model.macs == count_macs_params(net, net.input_shape)[0]
    built = model.build()
    x = torch.randn(model.input_shape)
    with torch.no_grad():
        assert torch.equal(built(x), net(x))


def test_bad_arch_is_refused() -> None:
    config = SposConfig(channel_scales=SCALES)
    with pytest.raises(SpaceError, match="choice 4"):
        SposNet(config, [4] * SPOS_NUM_LAYERS)
    with pytest.raises(SpaceError, match="not in channel_scales"):
        SposNet(config, [0] * SPOS_NUM_LAYERS, [0.8] * SPOS_NUM_LAYERS)


def test_onnx_export_matches_torch(tmp_path: Path) -> None:
    config, choices, scales = _arch(32, 2)
    net = SposNet(config, choices, scales)
    x = torch.randn(net.input_shape)
    exported = export_module(net, x, "onnx", tmp_path, name=net.name)
    session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input0": x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-3)

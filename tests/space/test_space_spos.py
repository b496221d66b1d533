"""The SPOS ShuffleNetV2 space and the architecture encoding."""

from __future__ import annotations

import random

import pytest
import torch

from hwlab.errors import SpaceError
from hwlab.space import (
    SPOS_CHANNEL_SCALES,
    SPOS_NUM_LAYERS,
    OpSpec,
    SposConfig,
    build_module,
    spos_arch_ops,
    spos_mid_channels,
    spos_space,
)

# Stem + 4 stages x (4 stride-2 choices + 4 shared stride-1 choices) + last + gap + fc.
UNIQUE_OPS = 1 + 4 * (4 + 4) + 3


@pytest.mark.parametrize("input_size", [224, 32])
def test_unique_op_count(input_size: int) -> None:
    ops = spos_space(input_size=input_size)
    assert len(ops) == UNIQUE_OPS == 36
    assert len({op.key for op in ops}) == len(ops)


def test_unique_op_count_with_all_channel_scales() -> None:
    assert len(spos_space(channel_scales=SPOS_CHANNEL_SCALES)) == 1 + 4 * 2 * 4 * 8 + 3 == 260


def test_space_order_is_stable() -> None:
    ops = spos_space()
    assert [op.op for op in ops[:2]] == ["spos_stem", "spos_shufflenet"]
    assert [op.op for op in ops[-3:]] == ["spos_last", "gap", "fc"]
    assert ops == spos_space()


def _chain(ops: list[OpSpec]) -> None:
    for a, b in zip(ops, ops[1:], strict=False):
        assert (a.output_h, a.output_w, a.cout) == (b.input_h, b.input_w, b.cin), (a.key, b.key)


@pytest.mark.parametrize("input_size", [224, 32, 8])
def test_arch_ops_chain(input_size: int) -> None:
    config = SposConfig(input_size=input_size)
    ops = spos_arch_ops(config, [0, 1, 2, 3] * 5)
    assert len(ops) == SPOS_NUM_LAYERS + 4
    assert ops[0].op == "spos_stem"
    assert {op.op for op in ops[1:21]} == {"spos_shufflenet", "spos_xception"}
    assert [op.op for op in ops[21:]] == ["spos_last", "gap", "fc"]
    assert ops[-1].cout == 1000
    _chain(ops)


def test_arch_ops_layout_at_224() -> None:
    ops = spos_arch_ops(SposConfig(), [3] * 20)
    blocks = ops[1:21]
    assert [b.stride for b in blocks].count(2) == 4
    assert [(b.input_h, b.cin, b.cout) for b in blocks if b.stride == 2] == [
        (112, 16, 64),
        (56, 64, 160),
        (28, 160, 320),
        (14, 320, 640),
    ]
    assert (ops[-3].input_h, ops[-3].cin, ops[-3].cout) == (7, 640, 1024)


def test_small_inputs_shrink_to_one_and_stay() -> None:
    sizes = [layer.input_size for layer in SposConfig(input_size=32).layers() if layer.stride == 2]
    assert sizes == [16, 8, 4, 2]
    assert SposConfig(input_size=32).final_size() == 1
    assert SposConfig(input_size=4).final_size() == 1
    assert len(spos_space(input_size=4)) == UNIQUE_OPS


def test_every_arch_op_is_in_the_space() -> None:
    config = SposConfig(input_size=32, channel_scales=SPOS_CHANNEL_SCALES)
    keys = {op.key for op in spos_space(input_size=32, channel_scales=SPOS_CHANNEL_SCALES)}
    rng = random.Random(0)
    for _ in range(20):
        choices = [rng.randrange(4) for _ in range(20)]
        scales = [rng.choice(SPOS_CHANNEL_SCALES) for _ in range(20)]
        ops = spos_arch_ops(config, choices, scales)
        assert {op.key for op in ops} <= keys
        _chain(ops)


def test_arch_runs_end_to_end_at_32() -> None:
    ops = spos_arch_ops(SposConfig(input_size=32, num_classes=10), [0, 1, 2, 3] * 5)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        for op in ops:
            x = build_module(op)(x.flatten(1) if op.op == "fc" else x)
            assert tuple(x.shape) == op.output_shape()
    assert tuple(x.shape) == (1, 10)


def test_numpy_choices_are_accepted() -> None:
    np = pytest.importorskip("numpy")
    choices = np.array([0, 1, 2, 3] * 5)
    assert spos_arch_ops(SposConfig(), choices) == spos_arch_ops(SposConfig(), [0, 1, 2, 3] * 5)


def test_mid_channels() -> None:
    assert spos_mid_channels(64, 1.0) == 32
    assert spos_mid_channels(64, 0.2) == 6
    assert spos_mid_channels(160, 0.6) == 48
    assert spos_mid_channels(640, 1.6) == 512
    assert spos_mid_channels(10, sum([0.2] * 8)) == spos_mid_channels(10, 1.6) == 8
    ops = spos_arch_ops(SposConfig(channel_scales=(0.4, 1.0)), [0] * 20, [0.4] * 20)
    assert ops[1].mid == int(64 / 2 * 0.4)


def test_width_and_stem_stride() -> None:
    assert SposConfig(width=0.5).channels == (8, 32, 80, 160, 320, 1024)
    assert SposConfig(width=2.0).channels == (32, 128, 320, 640, 1280, 2048)
    ops = spos_arch_ops(SposConfig(input_size=32, stem_stride=1), [0] * 20)
    assert ops[0].output_h == 32
    assert ops[-3].input_h == 2
    _chain(spos_arch_ops(SposConfig(width=0.5), [3] * 20))


@pytest.mark.parametrize(
    ("choices", "scales", "fragment"),
    [
        ([0] * 19, None, "got 19 choices"),
        ([0] * 19 + [4], None, "choice 4 is not in 0..3"),
        ([0] * 19 + [1.0], None, "choice 1.0 is not in 0..3"),
        ([0] * 20, [1.0] * 19, "got 19 scales"),
        ([0] * 20, [1.2] * 20, "scale 1.2 is not in channel_scales"),
    ],
)
def test_bad_architectures(choices: list, scales: list | None, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        spos_arch_ops(SposConfig(), choices, scales)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"input_size": 0}, "input_size=0"),
        ({"width": 0}, "width=0"),
        ({"channel_scales": ()}, "channel_scales=()"),
        ({"channel_scales": (1.0, 1.0)}, "duplicates"),
        ({"stem_stride": 4}, "stem_stride=4"),
        ({"num_classes": 0}, "num_classes=0"),
    ],
)
def test_bad_configs(kwargs: dict, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        SposConfig(**kwargs)
    assert fragment in str(info.value)


def test_too_small_channel_scale_is_an_error() -> None:
    with pytest.raises(SpaceError, match="leaves 0 middle channels"):
        spos_space(width=0.1, channel_scales=(0.1,))

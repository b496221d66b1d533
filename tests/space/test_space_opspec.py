"""OpSpec: keys, parsing, validation and shapes."""

from __future__ import annotations

import dataclasses

import pytest

from hwlab.errors import SpaceError
from hwlab.space import OP_KINDS, OpSpec, example_specs, generic_space, key_template, spos_space

EXAMPLES = example_specs()


def test_examples_cover_every_op_type() -> None:
    assert sorted(s.op for s in EXAMPLES) == sorted(OP_KINDS)


@pytest.mark.parametrize(
    ("spec", "key"),
    [
        (
            OpSpec("conv", 56, 56, 24, 48, kernel=3),
            "conv-input:56x56x24-output:56x56x48-kernel:3-stride:1-groups:1",
        ),
        (
            OpSpec("spos_shufflenet", 28, 28, 64, 64, kernel=5, mid=32),
            "spos_shufflenet-input:28x28x64-output:28x28x64-mid:32-kernel:5-stride:1",
        ),
        (OpSpec("fc", 1, 1, 1024, 1000), "fc-input:1x1x1024-output:1x1x1000"),
        (
            OpSpec("dwconv", 7, 7, 96, 96, kernel=3, stride=2),
            "dwconv-input:7x7x96-output:4x4x96-kernel:3-stride:2",
        ),
        (OpSpec("pwconv", 28, 28, 32, 64), "pwconv-input:28x28x32-output:28x28x64-stride:1-groups:1"),
        (OpSpec("gap", 7, 7, 1024, 1024), "gap-input:7x7x1024-output:1x1x1024"),
        (OpSpec("concat", 14, 14, 16, 32), "concat-input:14x14x16-output:14x14x32"),
        (OpSpec("act", 14, 14, 16, 16, act="relu6"), "act-input:14x14x16-output:14x14x16-act:relu6"),
        (
            OpSpec("spos_xception", 56, 56, 64, 64, mid=32),
            "spos_xception-input:56x56x64-output:56x56x64-mid:32-stride:1",
        ),
        (
            OpSpec("spos_stem", 224, 224, 3, 16, stride=2),
            "spos_stem-input:224x224x3-output:112x112x16-stride:2",
        ),
        (
            OpSpec("channel_shuffle", 14, 14, 16, 16, groups=2),
            "channel_shuffle-input:14x14x16-output:14x14x16-groups:2",
        ),
    ],
)
def test_key_format(spec: OpSpec, key: str) -> None:
    assert spec.key == key
    assert str(spec) == key


@pytest.mark.parametrize("spec", EXAMPLES, ids=lambda s: s.op)
def test_key_round_trip_every_op_type(spec: OpSpec) -> None:
    parsed = OpSpec.from_key(spec.key)
    assert parsed == spec
    assert parsed.key == spec.key
    assert hash(parsed) == hash(spec)


def test_key_round_trip_whole_spaces() -> None:
    specs = spos_space(channel_scales=(0.2, 1.0, 1.6)) + spos_space(input_size=32) + generic_space(200, seed=3)
    for spec in specs:
        assert OpSpec.from_key(spec.key) == spec


def test_implied_fields_are_filled() -> None:
    assert OpSpec("pwconv", 7, 7, 8, 16).kernel == 1
    assert OpSpec("dwconv", 7, 7, 8, 8, kernel=3).groups == 8
    assert OpSpec("dwconv", 7, 7, 8, 8, kernel=3, groups=8) == OpSpec("dwconv", 7, 7, 8, 8, kernel=3)
    assert OpSpec("spos_xception", 7, 7, 8, 8, mid=4).kernel == 3
    assert OpSpec("spos_stem", 32, 32, 3, 16, stride=2).kernel == 3
    assert OpSpec("spos_last", 7, 7, 8, 16).kernel == 1


@pytest.mark.parametrize(
    ("args", "kwargs", "fragment"),
    [
        (("deconv", 7, 7, 8, 8), {}, "unknown op 'deconv'"),
        (("conv", 0, 7, 8, 8), {"kernel": 3}, "input_h=0 must be >= 1"),
        (("conv", 7, 7, 8, -1), {"kernel": 3}, "cout=-1 must be >= 1"),
        (("conv", 7.0, 7, 8, 8), {"kernel": 3}, "input_h must be an int"),
        (("conv", 7, 7, 8, 8), {}, "kernel=0 is not allowed"),
        (("conv", 7, 7, 8, 8), {"kernel": 2}, "kernel=2 is not allowed"),
        (("conv", 7, 7, 8, 12), {"kernel": 3, "groups": 3}, "groups=3 must divide cin=8 and cout=12"),
        (("conv", 7, 7, 8, 8), {"kernel": 3, "stride": 0}, "stride=0 is not allowed"),
        (("conv", 7, 7, 8, 8), {"kernel": 3, "mid": 4}, "conv does not use mid"),
        (("fc", 7, 7, 8, 8), {}, "fc takes a flattened 1x1 input"),
        (("fc", 1, 1, 8, 8), {"kernel": 3}, "fc does not use kernel"),
        (("pwconv", 7, 7, 8, 8), {"kernel": 3}, "pwconv fixes kernel=1"),
        (("dwconv", 7, 7, 8, 16), {"kernel": 3}, "cout=16 must equal cin=8"),
        (("dwconv", 7, 7, 8, 8), {"kernel": 3, "groups": 4}, "dwconv fixes groups=8"),
        (("concat", 7, 7, 8, 8), {}, "cout=8 must be 2 * cin=16"),
        (("act", 7, 7, 8, 8), {"act": "gelu"}, "unknown activation act='gelu'"),
        (("act", 7, 7, 8, 8), {}, "unknown activation act=''"),
        (("channel_shuffle", 7, 7, 8, 8), {}, "groups=1 must be >= 2"),
        (("channel_shuffle", 7, 7, 9, 9), {"groups": 2}, "divide cin=9"),
        (("spos_shufflenet", 7, 7, 8, 8), {"kernel": 9, "mid": 4}, "kernel=9 is not allowed"),
        (("spos_shufflenet", 7, 7, 8, 16), {"kernel": 3, "mid": 4}, "stride-1 SPOS block needs cin == cout"),
        (("spos_shufflenet", 7, 7, 9, 9), {"kernel": 3, "mid": 4}, "even channel count"),
        (("spos_xception", 7, 7, 16, 16), {"stride": 2, "mid": 4}, "needs cout > cin"),
        (("spos_xception", 7, 7, 16, 16), {"stride": 3, "mid": 4}, "stride=3 is not allowed"),
        (("spos_xception", 7, 7, 16, 16), {}, "mid=0 must be >= 1"),
    ],
)
def test_invalid_specs_say_what_to_fix(args: tuple, kwargs: dict, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        OpSpec(*args, **kwargs)
    assert fragment in str(info.value)
    assert "fix:" in str(info.value)


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        ("", "non-empty string"),
        ("deconv-input:7x7x8-output:7x7x8", "unknown op 'deconv'"),
        ("conv-input:56x56x24-output:56x56x48-kernel:3-stride:1", "4 fields after the op name, expected 5"),
        ("conv-input:56x56-output:56x56x48-kernel:3-stride:1-groups:1", "should be HxWxC"),
        ("conv-input:56x56x24-output:56x56x48-stride:1-kernel:3-groups:1", "should be kernel:<value>"),
        (
            "conv-input:56x56x24-output:56x56x48-kernel:three-stride:1-groups:1",
            "kernel='three' is not a whole",
        ),
        ("conv-input:56x56x24-output:28x28x48-kernel:3-stride:1-groups:1", "does not follow from the input"),
        ("conv-input:056x56x24-output:56x56x48-kernel:3-stride:1-groups:1", "not in canonical form"),
        ("concat-input:7x7x8-output:7x7x8", "must be 2 * cin"),
    ],
)
def test_malformed_keys(key: str, fragment: str) -> None:
    with pytest.raises(SpaceError) as info:
        OpSpec.from_key(key)
    assert fragment in str(info.value)


def test_malformed_key_hint_shows_layout() -> None:
    with pytest.raises(SpaceError) as info:
        OpSpec.from_key("spos_shufflenet-input:7x7x8-output:7x7x8")
    assert info.value.hint == "expected " + key_template("spos_shufflenet")
    layout = "spos_shufflenet-input:HxWxC-output:HxWxC-mid:M-kernel:K-stride:S[-prec:P]"
    assert key_template("spos_shufflenet") == layout


@pytest.mark.parametrize(
    ("spec", "out"),
    [
        (OpSpec("conv", 7, 7, 8, 8, kernel=3, stride=2), (4, 4)),
        (OpSpec("conv", 1, 1, 8, 8, kernel=7, stride=2), (1, 1)),
        (OpSpec("maxpool", 112, 56, 8, 8, kernel=3, stride=2), (56, 28)),
        (OpSpec("gap", 7, 5, 8, 8), (1, 1)),
        (OpSpec("add", 7, 5, 8, 8), (7, 5)),
    ],
)
def test_output_size(spec: OpSpec, out: tuple[int, int]) -> None:
    assert (spec.output_h, spec.output_w) == out


def test_shapes() -> None:
    assert OpSpec("fc", 1, 1, 64, 10).input_shapes() == [(1, 64)]
    assert OpSpec("fc", 1, 1, 64, 10).output_shape() == (1, 10)
    assert OpSpec("add", 7, 7, 8, 8).input_shapes() == [(1, 8, 7, 7), (1, 8, 7, 7)]
    assert OpSpec("concat", 7, 7, 8, 16).output_shape() == (1, 16, 7, 7)
    assert OpSpec("conv", 7, 7, 8, 4, kernel=3, stride=2).output_shape() == (1, 4, 4, 4)


def test_fields_and_frozen() -> None:
    spec = OpSpec("conv", 15, 15, 8, 16, kernel=3, stride=2)
    assert spec.fields() == {
        "op": "conv",
        "input_h": 15,
        "input_w": 15,
        "cin": 8,
        "cout": 16,
        "output_h": 8,
        "output_w": 8,
        "kernel": 3,
        "stride": 2,
        "groups": 1,
        "mid": 0,
        "act": "",
        "prec": "fp32",
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.cin = 4  # type: ignore[misc]
    assert len({spec, OpSpec.from_key(spec.key)}) == 1


def test_analytic_counts_of_simple_ops() -> None:
    conv = OpSpec("conv", 56, 56, 24, 48, kernel=3)
    assert conv.macs == 56 * 56 * 9 * 24 * 48
    assert conv.params == 9 * 24 * 48 + 48
    assert OpSpec("fc", 1, 1, 1024, 1000).macs == 1024 * 1000
    assert OpSpec("add", 7, 7, 8, 8).macs == 0
    assert OpSpec("bn", 7, 7, 8, 8).params == 16


def test_precision_ends_the_key_and_fp32_keeps_the_old_key() -> None:
    fp32 = OpSpec("conv", 14, 14, 8, 16, kernel=3)
    int8 = dataclasses.replace(fp32, prec="int8")
    assert fp32.key == "conv-input:14x14x8-output:14x14x16-kernel:3-stride:1-groups:1"
    assert int8.key == fp32.key + "-prec:int8"
    assert OpSpec.from_key(int8.key) == int8 and int8.fields()["prec"] == "int8"
    with pytest.raises(SpaceError, match="canonical"):
        OpSpec.from_key(fp32.key + "-prec:fp32")
    with pytest.raises(SpaceError, match="unknown precision prec='fp8'") as info:
        OpSpec("conv", 14, 14, 8, 16, kernel=3, prec="fp8")
    assert "int8" in info.value.hint

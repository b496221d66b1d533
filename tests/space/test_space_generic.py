"""The generic sampler and the space registry."""

from __future__ import annotations

import pytest

from hwlab.errors import SpaceError
from hwlab.space import SpaceContext, describe_spaces, generic_space, get_space, space_parameters
from hwlab.space.generic import CHANNELS_AT


def test_deterministic_for_a_seed() -> None:
    assert generic_space(100, seed=7) == generic_space(100, seed=7)
    assert [s.key for s in generic_space(100, seed=7)] == [s.key for s in generic_space(100, seed=7)]


def test_differs_across_seeds() -> None:
    assert {s.key for s in generic_space(100, seed=0)} != {s.key for s in generic_space(100, seed=1)}


def test_count_unique_and_realistic() -> None:
    specs = generic_space(300, seed=0)
    assert len(specs) == len({s.key for s in specs}) == 300
    assert {s.op for s in specs} >= {
        "conv",
        "dwconv",
        "pwconv",
        "fc",
        "maxpool",
        "avgpool",
        "gap",
        "add",
        "concat",
    }
    for s in specs:
        assert s.input_h in (*CHANNELS_AT, 1)
        assert s.stride in (1, 2)
        assert s.kernel in (0, 1, 3, 5, 7)


def test_prefix_is_stable() -> None:
    assert generic_space(30, seed=5) == generic_space(60, seed=5)[:30]


def test_bad_count() -> None:
    assert generic_space(0) == []
    with pytest.raises(SpaceError, match="count=-1"):
        generic_space(-1)
    with pytest.raises(SpaceError, match="distinct ops"):
        generic_space(10**7)


def test_registry() -> None:
    assert set(describe_spaces()) == {"spos", "generic", "blocks", "repvgg", "kernels"}
    assert all(describe_spaces().values())
    assert len(get_space("spos", input_size=32)) == 36
    assert get_space("generic", count=5, seed=1) == generic_space(5, seed=1)


def test_registry_errors_name_the_choices() -> None:
    with pytest.raises(SpaceError) as info:
        get_space("mbv3")
    assert "spos" in str(info.value) and "generic" in str(info.value)
    with pytest.raises(SpaceError) as info:
        get_space("spos", resolution=32)
    assert "resolution" in str(info.value) and "input_size" in str(info.value)


def test_a_space_built_from_measurements_needs_its_context(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SpaceError, match="built from measurements of one device and backend"):
        get_space("kernels", count=2)
    with pytest.raises(SpaceError, match="hwlab predictors rules --device d --backend onnxruntime"):
        get_space("kernels", SpaceContext(tmp_path, "d", "onnxruntime"), count=2)
    assert space_parameters("kernels") == ["count", "seed"]

"""One small valid spec per op type: smoke tests of builders, exporters and runtimes."""

from __future__ import annotations

from hwlab.space.opspec import OpSpec


def example_specs() -> list[OpSpec]:
    """A spec of every op type at small shapes (odd sides, to exercise ceil on stride 2)."""
    return [
        OpSpec("conv", 15, 15, 8, 16, kernel=3, stride=2, groups=2),
        OpSpec("dwconv", 14, 14, 16, 16, kernel=5, stride=1),
        OpSpec("pwconv", 14, 14, 16, 24),
        OpSpec("fc", 1, 1, 64, 10),
        OpSpec("maxpool", 15, 15, 8, 8, kernel=3, stride=2),
        OpSpec("avgpool", 15, 15, 8, 8, kernel=3, stride=2),
        OpSpec("gap", 7, 7, 32, 32),
        OpSpec("add", 14, 14, 16, 16),
        OpSpec("concat", 14, 14, 16, 32),
        OpSpec("act", 14, 14, 16, 16, act="hswish"),
        OpSpec("bn", 14, 14, 16, 16),
        OpSpec("channel_shuffle", 14, 14, 16, 16, groups=2),
        OpSpec("spos_shufflenet", 14, 14, 32, 32, kernel=7, stride=1, mid=16),
        OpSpec("spos_xception", 15, 15, 16, 48, stride=2, mid=24),
        OpSpec("spos_stem", 32, 32, 3, 16, stride=2),
        OpSpec("spos_last", 7, 7, 64, 128),
        OpSpec("repvgg_block", 15, 15, 8, 16, stride=2, act="relu"),
        OpSpec("acnet_block", 14, 14, 16, 16, kernel=3, stride=1, act="frelu"),
        OpSpec("conv_act", 15, 15, 8, 16, kernel=3, stride=2, act="frelu"),
        OpSpec("frelu_train", 14, 14, 16, 16),
        OpSpec("frelu", 14, 14, 16, 16),
        OpSpec("weightnet", 14, 14, 16, 16, kernel=3, stride=1, groups=2, mid=2),
        OpSpec("se_conv", 15, 15, 8, 16, kernel=3, stride=2),
        OpSpec("condconv", 14, 14, 16, 16, kernel=3, stride=1, mid=4),
    ]

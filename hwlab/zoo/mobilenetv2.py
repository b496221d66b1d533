"""MobileNetV2-like networks: stem 3x3 s2, inverted-residual stages, last 1x1 conv, pool, fc.

Config: input_size, stem (width), stages [{expand, kernel, width, depth, stride}],
last (width). A stage's stride applies to its first block.
"""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from hwlab.zoo._draw import sorted_widths, strides
from hwlab.zoo.blocks import NUM_CLASSES, InvertedResidual, classifier, conv_norm_act, out_size

FAMILY = "mobilenetv2"
STEM_WIDTHS = (8, 16, 24, 32)
STAGES = (3, 6)
WIDTHS = (16, 320)
DEPTHS = (1, 4)
EXPANSIONS = (1, 3, 4, 6)
KERNELS = (3, 5, 7)
LAST_WIDTHS = (256, 512, 768, 1024, 1280)


def sample_config(rng: random.Random, input_size: int) -> dict[str, Any]:
    """One unconstrained draw; the caller resamples when MACs fall outside the zoo's range."""
    count = rng.randint(*STAGES)
    stages = [
        {
            "expand": rng.choice(EXPANSIONS),
            "kernel": rng.choice(KERNELS),
            "width": width,
            "depth": rng.randint(*DEPTHS),
            "stride": stride,
        }
        for width, stride in zip(sorted_widths(rng, count, *WIDTHS), strides(rng, count, 0.6, 4), strict=True)
    ]
    return {
        "input_size": input_size,
        "stem": rng.choice(STEM_WIDTHS),
        "stages": stages,
        "last": rng.choice(LAST_WIDTHS),
    }


def config_name(config: dict[str, Any]) -> str:
    """e.g. ``mobilenetv2-r128-stem16-t1k3c16n1s1-t6k5c24n2s2-last1280`` (t, c, n, s as in the paper's table)."""
    stages = "-".join(f"t{s['expand']}k{s['kernel']}c{s['width']}n{s['depth']}s{s['stride']}" for s in config["stages"])
    return f"{FAMILY}-r{config['input_size']}-stem{config['stem']}-{stages}-last{config['last']}"


def _blocks(config: dict[str, Any]) -> list[tuple[int, int, int, int, int]]:
    """(cin, cout, expand, kernel, stride) of every block in order."""
    blocks = []
    cin = config["stem"]
    for s in config["stages"]:
        for i in range(s["depth"]):
            blocks.append((cin, s["width"], s["expand"], s["kernel"], s["stride"] if i == 0 else 1))
            cin = s["width"]
    return blocks


def config_macs(config: dict[str, Any]) -> int:
    """Conv and linear MACs, computed from the config alone (no module is built)."""
    size = out_size(config["input_size"], 2)
    macs = size * size * 3 * 9 * config["stem"]
    cin = config["stem"]
    for cin, cout, expand, kernel, stride in _blocks(config):
        hidden = cin * expand
        if expand != 1:
            macs += size * size * cin * hidden
        size = out_size(size, stride)
        macs += size * size * hidden * (kernel * kernel + cout)
        cin = cout
    return macs + size * size * cin * config["last"] + config["last"] * NUM_CLASSES


def build(config: dict[str, Any]) -> nn.Module:
    """The network of `config`, default-initialised (the zoo seeds it)."""
    blocks = _blocks(config)
    last_in = blocks[-1][1]
    return nn.Sequential(
        conv_norm_act(3, config["stem"], 3, 2, act=nn.ReLU6),
        *(InvertedResidual(*block) for block in blocks),
        conv_norm_act(last_in, config["last"], 1, act=nn.ReLU6),
        classifier(config["last"]),
    )

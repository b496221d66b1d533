"""VGG-like networks: stages of same-padded convs (+ BN) + ReLU, 2x2 max pool between stages, pool, fc.

Config: input_size, batchnorm (all convs or none; without BN convs carry a bias),
stages [{kernel, width, depth}]. Pools use ceil mode so a side never drops below 1.
"""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from hwlab.zoo._draw import sorted_widths
from hwlab.zoo.blocks import NUM_CLASSES, classifier, conv_norm_act, out_size

FAMILY = "vgg"
STAGES = (2, 5)
WIDTHS = (8, 512)
DEPTHS = (1, 3)
KERNELS = (3, 5)


def sample_config(rng: random.Random, input_size: int) -> dict[str, Any]:
    """One unconstrained draw; the caller resamples when MACs fall outside the zoo's range."""
    count = rng.randint(*STAGES)
    stages = [
        {"kernel": rng.choice(KERNELS), "width": width, "depth": rng.randint(*DEPTHS)}
        for width in sorted_widths(rng, count, *WIDTHS)
    ]
    return {"input_size": input_size, "batchnorm": rng.random() < 0.5, "stages": stages}


def config_name(config: dict[str, Any]) -> str:
    """e.g. ``vgg-r64-bn-k3c64n2-k5c128n2`` (``nobn`` without BatchNorm)."""
    stages = "-".join(f"k{s['kernel']}c{s['width']}n{s['depth']}" for s in config["stages"])
    return f"{FAMILY}-r{config['input_size']}-{'bn' if config['batchnorm'] else 'nobn'}-{stages}"


def config_macs(config: dict[str, Any]) -> int:
    """Conv and linear MACs, computed from the config alone (no module is built)."""
    size, cin, macs = config["input_size"], 3, 0
    for i, s in enumerate(config["stages"]):
        if i:
            size = out_size(size, 2)
        for _ in range(s["depth"]):
            macs += size * size * cin * s["width"] * s["kernel"] ** 2
            cin = s["width"]
    return macs + cin * NUM_CLASSES


def build(config: dict[str, Any]) -> nn.Module:
    """The network of `config`, default-initialised (the zoo seeds it)."""
    layers: list[nn.Module] = []
    cin = 3
    for i, s in enumerate(config["stages"]):
        if i:
            layers.append(nn.MaxPool2d(2, 2, ceil_mode=True))
        for _ in range(s["depth"]):
            layers.append(conv_norm_act(cin, s["width"], s["kernel"], norm=config["batchnorm"]))
            cin = s["width"]
    return nn.Sequential(*layers, classifier(cin))

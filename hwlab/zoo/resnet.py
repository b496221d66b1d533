"""ResNet-like networks: stem conv (7x7 s2 or 3x3 s1) + BN + ReLU (+ maxpool), basic-block stages, pool, fc.

Config: input_size, stem_kernel (7 means stride 2, 3 means stride 1), stem_width,
maxpool (3x3 s2 after the stem), stages [{width, depth, stride}]. A stage's stride
applies to its first block.
"""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from hwlab.zoo._draw import log_width, sorted_widths, strides
from hwlab.zoo.blocks import NUM_CLASSES, BasicBlock, classifier, conv_norm_act, out_size

FAMILY = "resnet"
STEM_KERNELS = {7: 2, 3: 1}  # kernel -> stride
STAGES = (2, 4)
WIDTHS = (16, 512)
DEPTHS = (1, 3)


def sample_config(rng: random.Random, input_size: int) -> dict[str, Any]:
    """One unconstrained draw; the caller resamples when MACs fall outside the zoo's range."""
    count = rng.randint(*STAGES)
    stages = [
        {"width": width, "depth": rng.randint(*DEPTHS), "stride": stride}
        for width, stride in zip(sorted_widths(rng, count, *WIDTHS), strides(rng, count, 0.6, 4), strict=True)
    ]
    return {
        "input_size": input_size,
        "stem_kernel": rng.choice(tuple(STEM_KERNELS)),
        "stem_width": log_width(rng, 16, 64),
        "maxpool": rng.random() < 0.5,
        "stages": stages,
    }


def config_name(config: dict[str, Any]) -> str:
    """e.g. ``resnet-r224-stem7c64-maxpool-c64n2s1-c128n2s2``."""
    stem = f"stem{config['stem_kernel']}c{config['stem_width']}" + ("-maxpool" if config["maxpool"] else "")
    stages = "-".join(f"c{s['width']}n{s['depth']}s{s['stride']}" for s in config["stages"])
    return f"{FAMILY}-r{config['input_size']}-{stem}-{stages}"


def _blocks(config: dict[str, Any]) -> list[tuple[int, int, int]]:
    """(cin, cout, stride) of every block in order."""
    blocks = []
    cin = config["stem_width"]
    for s in config["stages"]:
        for i in range(s["depth"]):
            blocks.append((cin, s["width"], s["stride"] if i == 0 else 1))
            cin = s["width"]
    return blocks


def config_macs(config: dict[str, Any]) -> int:
    """Conv and linear MACs, computed from the config alone (no module is built)."""
    kernel, width = config["stem_kernel"], config["stem_width"]
    size = out_size(config["input_size"], STEM_KERNELS[kernel])
    macs = size * size * 3 * kernel * kernel * width
    if config["maxpool"]:
        size = out_size(size, 2)
    for cin, cout, stride in _blocks(config):
        size = out_size(size, stride)
        macs += size * size * cout * 9 * (cin + cout)
        if stride != 1 or cin != cout:
            macs += size * size * cin * cout
    return macs + config["stages"][-1]["width"] * NUM_CLASSES


def build(config: dict[str, Any]) -> nn.Module:
    """The network of `config`, default-initialised (the zoo seeds it)."""
    kernel, width = config["stem_kernel"], config["stem_width"]
    stem: list[nn.Module] = [conv_norm_act(3, width, kernel, STEM_KERNELS[kernel])]
    if config["maxpool"]:
        stem.append(nn.MaxPool2d(3, 2, 1))
    return nn.Sequential(
        *stem,
        *(BasicBlock(*block) for block in _blocks(config)),
        classifier(config["stages"][-1]["width"]),
    )

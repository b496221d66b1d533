"""Plain RepVGG-style networks of re-parameterisable blocks, in train form or converted to deploy form.

Why: a predictor only predicts kernels its training models held. These networks hold what the blocks of
hwlab/reparam export to: multi-branch convs summed (3x3 + 1x1 conv, an identity BN, Adds; ACNet's 3x3, 1x3
and 3x1), the single conv with a bias they deploy as, FReLU's depthwise conv and Max, and convs whose weight
is computed in the graph (WeightNet, CondConv: global pool, small convs, sigmoid, grouped conv or MatMul,
Reshape, then a conv of that weight) beside SE's gated conv (sigmoid, Mul).

Config: input_size, form (``train``: the blocks as built; ``deploy``: every block converted by
``hwlab.reparam.reparam``), stages [{width, depth, stride, blocks [[kind, act]] (one per depth), dynamic}]:
a stage's stride applies to its first block (the first stage's is 2: the stem), and ``dynamic`` (weightnet,
se, condconv or None) adds that conv (width to width, 3x3, stride 1) and a ReLU after the stage's blocks.
In both forms the BN statistics are randomised after seeding (``hwlab.reparam.nets.randomise_bn``, seeded by
the name; ``finish``), so a deploy form folds non-trivial statistics, as after training. Torch's export folds
every BN that follows a conv, so a train form's graph keeps only the identity branches' BNs.
"""

from __future__ import annotations

import random
from typing import Any

from torch import nn

from hwlab.reparam import CondConv, SEConv, WeightNetConv, make_block, reparam
from hwlab.reparam.nets import randomise_bn
from hwlab.space.build import seed_of
from hwlab.zoo._draw import sorted_widths, strides
from hwlab.zoo.blocks import NUM_CLASSES, classifier, out_size

FAMILY = "reparamnet"
FORMS = ("train", "deploy")
STAGES = (3, 5)
WIDTHS = (8, 192)
DEPTHS = (1, 4)
KINDS = {"repvgg": "r", "acb": "a", "conv": "c"}  # block kind -> its letter in names
ACTS = {"relu": "", "frelu": "f"}  # activation -> its suffix in names
DYNAMIC = {"weightnet": "wn", "se": "se", "condconv": "cc"}
P_FRELU = 0.3
P_DYNAMIC = 0.4
WEIGHTNET_M, WEIGHTNET_G, CONDCONV_EXPERTS = 2, 2, 4  # as in ``--space blocks``
# Multiply-accumulates per output element and input channel of each block's branches (3x3 kernels).
TRAIN_TAPS = {"repvgg": 9 + 1, "acb": 9 + 3 + 3, "conv": 9}
DEPLOY_TAPS = 9


def sample_config(rng: random.Random, input_size: int) -> dict[str, Any]:
    """One unconstrained draw; the caller resamples when MACs fall outside the zoo's range."""
    count = rng.randint(*STAGES)
    widths = sorted_widths(rng, count, *WIDTHS)
    stage_strides = [2, *strides(rng, count - 1, 0.6, 3)]
    stages = []
    for width, stride in zip(widths, stage_strides, strict=True):
        depth = rng.randint(*DEPTHS)
        blocks = [[rng.choice(tuple(KINDS)), "frelu" if rng.random() < P_FRELU else "relu"] for _ in range(depth)]
        dynamic = rng.choice(tuple(DYNAMIC)) if rng.random() < P_DYNAMIC else None
        stages.append({"width": width, "depth": depth, "stride": stride, "blocks": blocks, "dynamic": dynamic})
    return {"input_size": input_size, "form": rng.choice(FORMS), "stages": stages}


def config_name(config: dict[str, Any]) -> str:
    """e.g. ``reparamnet-r64-deploy-c32s2_rf-c64s2_r_af_c_wn``: per stage width, stride, then each block's
    kind (r: RepVGG, a: ACNet, c: conv-BN) with ``f`` for FReLU, then the dynamic conv if any."""
    stages = []
    for s in config["stages"]:
        tokens = [KINDS[kind] + ACTS[act] for kind, act in s["blocks"]]
        tokens += [DYNAMIC[s["dynamic"]]] if s["dynamic"] else []
        stages.append(f"c{s['width']}s{s['stride']}_" + "_".join(tokens))
    return f"{FAMILY}-r{config['input_size']}-{config['form']}-" + "-".join(stages)


def _dynamic_macs(kind: str, width: int, side: int) -> int:
    """A dynamic conv's MACs as hwlab.space.cost counts them: the conv, plus what computes its weight."""
    weights = width * width * 9
    conv = side * side * weights
    if kind == "weightnet":
        return width * WEIGHTNET_M * WEIGHTNET_G + WEIGHTNET_M * weights + conv
    if kind == "se":
        return width * width + conv
    return width * CONDCONV_EXPERTS + CONDCONV_EXPERTS * weights + conv


def config_macs(config: dict[str, Any]) -> int:
    """Conv and linear MACs of the config's form, computed from the config alone (no module is built)."""
    size, cin, macs = config["input_size"], 3, 0
    for s in config["stages"]:
        width = s["width"]
        for i, (kind, act) in enumerate(s["blocks"]):
            size = out_size(size, s["stride"] if i == 0 else 1)
            taps = DEPLOY_TAPS if config["form"] == "deploy" else TRAIN_TAPS[kind]
            macs += size * size * width * (cin * taps + (9 if act == "frelu" else 0))
            cin = width
        if s["dynamic"]:
            macs += _dynamic_macs(s["dynamic"], width, size)
    return macs + cin * NUM_CLASSES


def _dynamic(kind: str, width: int) -> nn.Module:
    if kind == "weightnet":
        return WeightNetConv(width, width, 3, 1, m=WEIGHTNET_M, g=WEIGHTNET_G)
    if kind == "se":
        return SEConv(width, width, 3, 1)
    return CondConv(width, width, 3, 1, experts=CONDCONV_EXPERTS)


def build(config: dict[str, Any]) -> nn.Module:
    """The network of `config` in train form, default-initialised (the zoo seeds it, then ``finish``)."""
    layers: list[nn.Module] = []
    cin = 3
    for s in config["stages"]:
        for i, (kind, act) in enumerate(s["blocks"]):
            layers.append(make_block(kind, cin, s["width"], s["stride"] if i == 0 else 1, act))
            cin = s["width"]
        if s["dynamic"]:
            layers += [_dynamic(s["dynamic"], cin), nn.ReLU()]
    return nn.Sequential(*layers, classifier(cin))


def finish(config: dict[str, Any], module: nn.Module) -> nn.Module:
    """After seeding: BN statistics randomised (seeded by the name), then the deploy form when asked."""
    randomise_bn(module, seed_of(config_name(config)))
    return reparam(module) if config["form"] == "deploy" else module.eval()

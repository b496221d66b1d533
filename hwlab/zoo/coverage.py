"""Mixed-block networks that hold every common vision-CNN op at realistic sizes: the op-coverage family.

Why: a predictor can only predict the kernels its training models contained. The other families
are conv/pool/add/concat networks; this one is built so that every model holds, once or more, each
op type torch exports for common vision CNNs (the list in hwlab/predictors/graph_ops.py): grouped
and dilated convs, a transposed conv, standalone BatchNorm, LeakyReLU, PReLU, Tanh, Clip,
HardSigmoid gating, HardSwish, Sigmoid, ReLU6, Max/Min, Div with broadcasting, Split, Slice, Pad,
both pools, ReduceMean over channels, Resize, a channel shuffle (Reshape, Transpose), token
attention (MatMul of activations, Softmax), Flatten, Gemm and a Softmax head.

Config: input_size, width (the first stage's channels), groups of the grouped conv, dilation of
the dilated conv, and the negative slope of the stem's LeakyReLU.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn
from torch.nn import functional

from hwlab.zoo._draw import log_width
from hwlab.zoo.blocks import NUM_CLASSES, ZeroPad, out_size

FAMILY = "coverage"
WIDTHS = (16, 96)
GROUPS = (2, 4)
DILATIONS = (2, 3)
SLOPES = (0.01, 0.1, 0.2)
TOKENS_SIDE = 4  # attention runs over a 4 x 4 grid of pooled tokens: 16 tokens whatever the input


def sample_config(rng: random.Random, input_size: int) -> dict[str, Any]:
    """One unconstrained draw; the caller resamples when MACs fall outside the zoo's range."""
    return {
        "input_size": input_size,
        "width": log_width(rng, *WIDTHS),
        "groups": rng.choice(GROUPS),
        "dilation": rng.choice(DILATIONS),
        "slope": rng.choice(SLOPES),
    }


def config_name(config: dict[str, Any]) -> str:
    """e.g. ``coverage-r64-c32-g4-d2-s0.1``."""
    c = config
    return f"{FAMILY}-r{c['input_size']}-c{c['width']}-g{c['groups']}-d{c['dilation']}-s{c['slope']:g}"


def config_macs(config: dict[str, Any]) -> int:
    """Conv2d and linear MACs from the config alone (no module is built), as the other families count."""
    c, g = config["width"], config["groups"]
    s1 = out_size(config["input_size"], 2)  # after the stem
    s2 = out_size(s1, 2)  # after the max pool
    macs = s1 * s1 * 3 * 9 * c  # stem
    macs += s1 * s1 * 9 * c * c // g  # grouped conv
    macs += s2 * s2 * 9 * c * 2 * c  # dilated conv, c -> 2c
    macs += 2 * (2 * c) * _hidden(2 * c)  # SE squeeze and excite
    return macs + c * NUM_CLASSES


def _hidden(channels: int) -> int:
    return max(8, channels // 4)


class _SqueezeExcite(nn.Module):
    """GAP, 1x1 conv, ReLU, 1x1 conv, HardSigmoid, times the input (HardSigmoid alone, not HardSwish)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        hidden = _hidden(channels)
        self.squeeze = nn.Conv2d(channels, hidden, 1)
        self.excite = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = functional.adaptive_avg_pool2d(x, 1)
        gate = functional.hardsigmoid(self.excite(functional.relu(self.squeeze(gate))))
        return x * gate


class CoverageNet(nn.Module):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        c, g, d = config["width"], config["groups"], config["dilation"]
        self.stem = nn.Conv2d(3, c, 3, 2, 1)
        self.stem_act = nn.LeakyReLU(config["slope"])
        self.grouped = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, groups=g, bias=False), nn.BatchNorm2d(c), nn.PReLU())
        self.pad = ZeroPad(1)
        self.after_add = nn.BatchNorm2d(c)  # standalone: it follows an Add, not a conv
        self.dilated = nn.Conv2d(c, 2 * c, 3, 1, padding=d, dilation=d)
        self.se = _SqueezeExcite(2 * c)
        self.scale = nn.Parameter(torch.rand(1, 2 * c, 1, 1) + 0.5)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, 2)
        self.fc = nn.Linear(c, NUM_CLASSES)
        # Sizes as constants: an exported Resize by scale hides the shapes behind it from the exporter.
        self.channels = 2 * c
        self.half = c
        side = out_size(config["input_size"], 2)
        self.pooled = (side + 2 - 3) // 2 + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem_act(self.stem(x))
        skip = x
        x = functional.relu(self.after_add(self.grouped(x) + skip))
        x = functional.max_pool2d(self.pad(x), 3, 2)  # explicit Pad, then an unpadded pool
        x = torch.tanh(self.dilated(x))
        x = self.se(x) / self.scale  # Div with a broadcast (1, C, 1, 1) operand
        a, b = torch.split(x, [self.half, self.half], dim=1)
        a, b = functional.hardswish(a), torch.sigmoid(b)
        x = torch.cat([torch.maximum(a, b), torch.minimum(a, b)], dim=1)
        x = x - x.mean(dim=1, keepdim=True)  # ReduceMean over channels, Sub
        side = self.pooled
        x = x.reshape(1, 2, self.half, side, side).transpose(1, 2).reshape(1, self.channels, side, side)  # shuffle
        x = torch.clamp(x, -1.0, 1.0)  # Clip that is neither relu nor relu6
        x = functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        x = functional.relu6(self.up(x))
        x = functional.interpolate(x, size=(side, side), mode="nearest")  # Resize
        x = x[:, : self.half // 2 * 2]  # Slice
        tokens = functional.adaptive_avg_pool2d(x, TOKENS_SIDE).flatten(2)  # (n, c, 16)
        scores = torch.softmax(tokens.transpose(1, 2) @ tokens, dim=-1)  # MatMul of activations, Softmax
        mixed = tokens @ scores  # (n, c, 16)
        x = torch.flatten(mixed.mean(dim=2, keepdim=True), 1)  # Flatten
        return torch.softmax(self.fc(x), dim=1)


def build(config: dict[str, Any]) -> nn.Module:
    """The network of `config`, default-initialised (the zoo seeds it)."""
    return CoverageNet(config)

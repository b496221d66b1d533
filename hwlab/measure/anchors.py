"""The anchor models: a small fixed set, identical on every device, measured in every job.

Why: rounds divide out a job's drift within the job, but two jobs hours apart (kernels
yesterday, whole models today) each sit on the speed of their own hour. Every job measures the
same anchors, so each job's speed relative to the device's reference (:mod:`hwlab.measure.speed`)
is known and divided out. They are three common kinds of work (a dense convolution, a depthwise
separable block, a fully connected layer) so no single kernel's quirks set the scale; their
weights come from seeds of their keys, so every host exports the very same files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from hwlab.space.build import seed_of, seeded_rng

ANCHOR_PREFIX = "anchor:"


@dataclass(frozen=True)
class Anchor:
    key: str
    build: Callable[[], nn.Module]
    input_shape: tuple[int, ...]


def _conv() -> nn.Module:
    return nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU())


def _separable() -> nn.Module:
    return nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, groups=32), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU())


def _dense() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(256, 256), nn.ReLU())


ANCHORS = (
    Anchor(f"{ANCHOR_PREFIX}conv3x3-16c-16px", _conv, (1, 16, 16, 16)),
    Anchor(f"{ANCHOR_PREFIX}dwsep-32c-16px", _separable, (1, 32, 16, 16)),
    Anchor(f"{ANCHOR_PREFIX}fc-256", _dense, (1, 256)),
)
ANCHOR_SET = "v1:" + ",".join(a.key for a in ANCHORS)  # a reference is only comparable within one set


def is_anchor(key: str) -> bool:
    return key.startswith(ANCHOR_PREFIX)


def anchor_module(anchor: Anchor) -> tuple[nn.Module, torch.Tensor]:
    """The anchor's module (weights from its key's seed) and a seeded example input."""
    with seeded_rng(seed_of(anchor.key)):
        module = anchor.build().eval()
        example = torch.randn(anchor.input_shape)
    return module, example

"""The anchor models: a small fixed set, identical on every device, measured in every job.

Why: rounds divide out a job's drift within the job, but two jobs hours apart (kernels
yesterday, whole models today) each sit on the state of their own hour. Every job measures the
same anchors, so each job's state relative to the device's reference (:mod:`hwlab.measure.speed`)
is known and divided out. A busy machine slows fine-grained work (many tiny kernels) more than
coarse work (a few large convolutions), so the anchors span the grains a CNN has: a chain of
tiny kernels, a small convolution, a depthwise separable block, a fully connected layer and a
large convolution; no single kernel's quirks set the scale. Their weights come from seeds of
their keys, so every host exports the very same files.
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


def _chain() -> nn.Module:
    """24 tiny pointwise convolutions: a microsecond each, so dispatch dominates (the finest grain)."""
    return nn.Sequential(*[layer for _ in range(24) for layer in (nn.Conv2d(8, 8, 1), nn.ReLU())])


def _large() -> nn.Module:
    """One large convolution: a millisecond or more of arithmetic (the coarsest grain)."""
    return nn.Sequential(nn.Conv2d(48, 48, 3, padding=1), nn.ReLU())


ANCHORS = (
    Anchor(f"{ANCHOR_PREFIX}conv3x3-16c-16px", _conv, (1, 16, 16, 16)),
    Anchor(f"{ANCHOR_PREFIX}dwsep-32c-16px", _separable, (1, 32, 16, 16)),
    Anchor(f"{ANCHOR_PREFIX}fc-256", _dense, (1, 256)),
    Anchor(f"{ANCHOR_PREFIX}chain-24x1x1-8c-8px", _chain, (1, 8, 8, 8)),
    Anchor(f"{ANCHOR_PREFIX}conv3x3-48c-56px", _large, (1, 48, 56, 56)),
)
ANCHOR_SET = "v2:" + ",".join(a.key for a in ANCHORS)  # a reference is only comparable within one set


def is_anchor(key: str) -> bool:
    return key.startswith(ANCHOR_PREFIX)


def anchor_module(anchor: Anchor) -> tuple[nn.Module, torch.Tensor]:
    """The anchor's module (weights from its key's seed) and a seeded example input."""
    with seeded_rng(seed_of(anchor.key)):
        module = anchor.build().eval()
        example = torch.randn(anchor.input_shape)
    return module, example

"""Deterministic weights for zoo models: seeded by the model's name, never by global state.

An export is cached and compared by its bytes, so a model must come out the same
in every process. The weights are also scaled so activations neither vanish nor
blow up through tens of layers (the ONNX-vs-torch checks then compare numbers of
ordinary size), and BN statistics are randomised a little so BN is not a no-op
that a runtime could fold away unlike in a trained network.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from hwlab.space.build import seed_of, seeded_rng


def seeded(name: str) -> contextlib.AbstractContextManager[None]:
    """Run the block with torch's RNG seeded from `name`; the global RNG is restored after."""
    return seeded_rng(seed_of(name))


def init_weights(module: nn.Module) -> None:
    """He-normal convs, fan-in-scaled linears, small biases, slightly perturbed BNs."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            elif isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="linear")
            elif isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.8, 1.25)
                if m.affine:
                    m.weight.uniform_(0.8, 1.2)
                    m.bias.uniform_(-0.1, 0.1)
            if isinstance(m, nn.Conv2d | nn.Linear) and m.bias is not None:
                m.bias.uniform_(-0.1, 0.1)

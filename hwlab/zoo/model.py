"""ZooModel: one whole network of the zoo, named by its configuration."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from hwlab.zoo.seeding import init_weights, seeded


@dataclass(frozen=True)
class ZooModel:
    """A network to export and time whole.

    name encodes the whole configuration and seeds the weights, so equal names mean
    equal models. factory makes the finished module (seeded, eval mode); `build()`
    calls it afresh each time (nothing is kept, which matters when sampling
    hundreds); `module` builds once and keeps it.
    """

    name: str
    family: str
    input_shape: tuple[int, int, int, int]
    macs: int
    config: dict[str, Any] = field(compare=False, repr=False)
    factory: Callable[[], nn.Module] = field(compare=False, repr=False)

    def build(self) -> nn.Module:
        """The network in eval mode, with the weights its name seeds."""
        return self.factory()

    @functools.cached_property
    def module(self) -> nn.Module:
        """The network, built on first use and kept."""
        return self.build()


def seeded_module(name: str, factory: Callable[[], nn.Module]) -> nn.Module:
    """`factory()` with weights seeded by `name`, in eval mode."""
    with seeded(name):
        module = factory()
        init_weights(module)
    return module.eval()

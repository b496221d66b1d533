"""Named op spaces: ``get_space("spos", input_size=32)`` for the CLI, the library and table builders.

Every space is registered here the same way: a factory (imported on first use, so
importing ``hwlab.space`` does not import what the ``kernels`` space needs) and the
line ``hwlab spaces`` prints. A space built
from earlier measurements (``kernels``, cut under a device's measured fusion
rules) declares a ``context`` parameter and receives a :class:`SpaceContext`.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwlab.errors import SpaceError


@dataclass(frozen=True)
class SpaceContext:
    """Where a space built from measurements finds them: the tables folder, the device and backend."""

    tables_root: Path
    device: str
    backend: str


@dataclass(frozen=True)
class SpaceEntry:
    """A space factory (``module:function``) and the one line `hwlab spaces` prints for it."""

    factory: str
    description: str

    def load(self) -> Callable[..., list[Any]]:
        module, _, name = self.factory.partition(":")
        return getattr(importlib.import_module(module), name)


SPACES: dict[str, SpaceEntry] = {
    "spos": SpaceEntry(
        "hwlab.space.spos:spos_space",
        "SPOS ShuffleNetV2 (20 choice layers x shuffle 3/5/7, xception; channel scales): unique ops",
    ),
    "generic": SpaceEntry(
        "hwlab.space.generic:generic_space",
        "seeded sample of conv/dwconv/pwconv/fc/pool/add/concat/act ops at mobile-CNN shapes",
    ),
    "blocks": SpaceEntry(
        "hwlab.space.blocks:blocks_space",
        "RepVGG/ACNet blocks in train and deploy form, FReLU vs ReLU/ReLU6/h-swish, WeightNet vs conv/SE/CondConv",
    ),
    "repvgg": SpaceEntry(
        "hwlab.reparam.space:repvgg_space",
        "the deploy ops (3x3 conv + ReLU/FReLU, pooling, classifier) of `hwlab search --space repvgg`",
    ),
    "kernels": SpaceEntry(
        "hwlab.predictors.dataset:kernel_space",
        "the distinct fused kernels of seeded training models, under the device's measured fusion rules",
    ),
}


def describe_spaces() -> dict[str, str]:
    """Space name -> one-line description."""
    return {name: entry.description for name, entry in SPACES.items()}


def space_parameters(name: str) -> list[str]:
    """The parameters a space takes (what ``get_space`` accepts besides ``context``)."""
    return [p for p in inspect.signature(_entry(name).load()).parameters if p != "context"]


def _entry(name: str) -> SpaceEntry:
    entry = SPACES.get(name)
    if entry is None:
        raise SpaceError(f"unknown space {name!r}", hint=f"use one of: {', '.join(SPACES)}")
    return entry


def get_space(name: str, context: SpaceContext | None = None, **params: Any) -> list[Any]:
    """The items of space ``name`` (op specs, or model items for ``kernels``), built with ``params``."""
    factory = _entry(name).load()
    accepted = inspect.signature(factory).parameters
    unknown = sorted(set(params) - set(accepted) - {"context"})
    if unknown:
        raise SpaceError(
            f"space {name!r} has no parameter(s) {', '.join(unknown)}",
            hint=f"its parameters are: {', '.join(space_parameters(name))}",
        )
    if "context" in accepted:
        if context is None:
            raise SpaceError(
                f"space {name!r} is built from measurements of one device and backend",
                hint="give a SpaceContext(tables_root, device, backend)",
            )
        params["context"] = context
    return factory(**params)

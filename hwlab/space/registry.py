"""Named op spaces: `get_space("spos", input_size=32)` for the CLI and table builders."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hwlab.errors import SpaceError
from hwlab.space.generic import generic_space
from hwlab.space.opspec import OpSpec
from hwlab.space.spos import spos_space


@dataclass(frozen=True)
class SpaceEntry:
    """A space factory and the one line `hwlab spaces` prints for it."""

    factory: Callable[..., list[OpSpec]]
    description: str


SPACES: dict[str, SpaceEntry] = {
    "spos": SpaceEntry(
        spos_space,
        "SPOS ShuffleNetV2 (20 choice layers x shuffle 3/5/7, xception; channel scales): unique ops",
    ),
    "generic": SpaceEntry(
        generic_space,
        "seeded sample of conv/dwconv/pwconv/fc/pool/add/concat/act ops at mobile-CNN shapes",
    ),
}


def describe_spaces() -> dict[str, str]:
    """Space name -> one-line description."""
    return {name: entry.description for name, entry in SPACES.items()}


def get_space(name: str, **params: Any) -> list[OpSpec]:
    """The op specs of space `name`, built with `params` (the factory's keyword arguments)."""
    entry = SPACES.get(name)
    if entry is None:
        raise SpaceError(f"unknown space {name!r}", hint=f"use one of: {', '.join(SPACES)}")
    accepted = inspect.signature(entry.factory).parameters
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise SpaceError(
            f"space {name!r} has no parameter(s) {', '.join(unknown)}",
            hint=f"its parameters are: {', '.join(accepted)}",
        )
    return entry.factory(**params)

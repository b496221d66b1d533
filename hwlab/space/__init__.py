"""Operator specs and the spaces they come from.

`OpSpec` is one op at fixed shapes with a stable key; spaces (`get_space`) list
the specs a lookup table must hold; `build_module` turns a spec into a torch
module. Importing this package does not import torch: `build_module` and
`example_inputs` load it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hwlab.space.examples import example_specs
from hwlab.space.generic import generic_space
from hwlab.space.kinds import ACTIVATIONS, OP_KINDS, OpKind
from hwlab.space.opspec import OpSpec, key_template
from hwlab.space.registry import SPACES, SpaceContext, describe_spaces, get_space, space_parameters
from hwlab.space.spos import (
    SPOS_CHANNEL_SCALES,
    SPOS_CHOICES,
    SPOS_NUM_LAYERS,
    SposConfig,
    SposLayer,
    spos_arch_ops,
    spos_block_op,
    spos_config_ops,
    spos_mid_channels,
    spos_space,
)

if TYPE_CHECKING:
    from hwlab.space.build import build_module, example_inputs

__all__ = [
    "ACTIVATIONS",
    "OP_KINDS",
    "SPACES",
    "SPOS_CHANNEL_SCALES",
    "SPOS_CHOICES",
    "SPOS_NUM_LAYERS",
    "OpKind",
    "OpSpec",
    "SposConfig",
    "SpaceContext",
    "SposLayer",
    "build_module",
    "describe_spaces",
    "example_inputs",
    "example_specs",
    "generic_space",
    "get_space",
    "key_template",
    "spos_arch_ops",
    "spos_block_op",
    "spos_config_ops",
    "spos_mid_channels",
    "space_parameters",
    "spos_space",
]

_LAZY = {"build_module", "example_inputs"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from hwlab.space import build

        return getattr(build, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Whole CNNs for end-to-end latency checks: SPOS architectures and five random families.

A per-op table predicts a network's latency as the sum of its ops; these models
are what that prediction is checked against (and what FLOPs baselines are fitted
on). Every model is seeded by its name, so the same name always exports to the
same file. Importing this package does not import torch; its names load on use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hwlab.zoo.count import count_macs_params
    from hwlab.zoo.families import (
        FAMILIES,
        MAX_MACS,
        MIN_MACS,
        coverage_like,
        mobilenetv2_like,
        reparamnet_like,
        resnet_like,
        sample_family,
        vgg_like,
        zoo_model,
    )
    from hwlab.zoo.model import ZooModel
    from hwlab.zoo.spos import SposNet, random_spos_arch, spos_model

_HOMES = {
    "count_macs_params": "count",
    "coverage_like": "families",
    "FAMILIES": "families",
    "MAX_MACS": "families",
    "MIN_MACS": "families",
    "mobilenetv2_like": "families",
    "reparamnet_like": "families",
    "resnet_like": "families",
    "sample_family": "families",
    "vgg_like": "families",
    "zoo_model": "families",
    "ZooModel": "model",
    "SposNet": "spos",
    "random_spos_arch": "spos",
    "spos_model": "spos",
}

__all__ = [
    "FAMILIES",
    "MAX_MACS",
    "MIN_MACS",
    "SposNet",
    "ZooModel",
    "count_macs_params",
    "coverage_like",
    "mobilenetv2_like",
    "random_spos_arch",
    "reparamnet_like",
    "resnet_like",
    "sample_family",
    "spos_model",
    "vgg_like",
    "zoo_model",
]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f"hwlab.zoo.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""Seeded random CNN families for checking latency predictors on networks outside the search space.

Each family draws an input size from INPUT_SIZES uniformly, then redraws the rest
of its configuration until the conv and linear MACs lie in [MIN_MACS, MAX_MACS]:
about 0.5 to 60 ms on a 2-core x86 CPU with onnxruntime on one thread. The
configuration alone decides the model (its name encodes all of it and seeds the
weights), so a model can be rebuilt from a stored config with `zoo_model`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from torch import nn

from hwlab.errors import SpaceError
from hwlab.zoo import coverage, mobilenetv2, reparamnet, resnet, vgg
from hwlab.zoo.model import ZooModel, seeded_module

FAMILIES: tuple[str, ...] = ("mobilenetv2", "resnet", "vgg", "coverage", "reparamnet")
INPUT_SIZES: tuple[int, ...] = (32, 64, 96, 128, 160, 224)
MIN_MACS = 5_000_000
MAX_MACS = 600_000_000
# Redraws per input size before another size is drawn; every size reaches the range well within this.
_TRIES_PER_SIZE = 2000


@dataclass(frozen=True)
class _Family:
    sample_config: Callable[[random.Random, int], dict[str, Any]]
    config_name: Callable[[dict[str, Any]], str]
    config_macs: Callable[[dict[str, Any]], int]
    build: Callable[[dict[str, Any]], nn.Module]
    # After the weights are seeded: what must follow them (a conversion to deploy form); None: nothing.
    finish: Callable[[dict[str, Any], nn.Module], nn.Module] | None = None

    @classmethod
    def of(cls, module: ModuleType) -> _Family:
        finish = getattr(module, "finish", None)
        return cls(module.sample_config, module.config_name, module.config_macs, module.build, finish)


_REGISTRY: dict[str, _Family] = {
    "mobilenetv2": _Family.of(mobilenetv2),
    "resnet": _Family.of(resnet),
    "vgg": _Family.of(vgg),
    "coverage": _Family.of(coverage),
    "reparamnet": _Family.of(reparamnet),
}


def _family(name: str) -> _Family:
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise SpaceError(f"unknown model family {name!r}", hint=f"use one of: {', '.join(FAMILIES)}") from None


def zoo_model(family: str, config: dict[str, Any]) -> ZooModel:
    """The ZooModel of a family's config (as drawn by the family, or read back from a record)."""
    spec = _family(family)
    name = spec.config_name(config)
    size = config["input_size"]
    return ZooModel(
        name=name,
        family=family,
        input_shape=(1, 3, size, size),
        macs=spec.config_macs(config),
        config=config,
        factory=functools.partial(_made, spec, name, config),
    )


def _made(spec: _Family, name: str, config: dict[str, Any]) -> nn.Module:
    """The family's network of `config`, seeded by `name`, finished (eval mode)."""
    module = seeded_module(name, functools.partial(spec.build, config))
    return module if spec.finish is None else spec.finish(config, module).eval()


def _sample(family: str, rng: random.Random) -> ZooModel:
    spec = _family(family)
    while True:
        size = rng.choice(INPUT_SIZES)
        for _ in range(_TRIES_PER_SIZE):
            config = spec.sample_config(rng, size)
            if MIN_MACS <= spec.config_macs(config) <= MAX_MACS:
                return zoo_model(family, config)


def mobilenetv2_like(rng: random.Random) -> ZooModel:
    """A random MobileNetV2-like network (inverted residuals, ReLU6) within the MAC range."""
    return _sample("mobilenetv2", rng)


def resnet_like(rng: random.Random) -> ZooModel:
    """A random ResNet-like network (basic blocks) within the MAC range."""
    return _sample("resnet", rng)


def vgg_like(rng: random.Random) -> ZooModel:
    """A random VGG-like network (plain conv stacks and max pools) within the MAC range."""
    return _sample("vgg", rng)


def coverage_like(rng: random.Random) -> ZooModel:
    """A random op-coverage network (every common vision-CNN op) within the MAC range."""
    return _sample("coverage", rng)


def reparamnet_like(rng: random.Random) -> ZooModel:
    """A random plain network of RepVGG/ACNet/conv-BN blocks (ReLU or FReLU) and dynamic-weight convs, in
    train or deploy form, within the MAC range."""
    return _sample("reparamnet", rng)


def sample_family(family: str, count: int, seed: int) -> list[ZooModel]:
    """`count` distinct models of `family`, the same for the same seed in every process."""
    _family(family)
    if not isinstance(count, int) or count < 0:
        raise SpaceError(f"count={count!r} must be an int >= 0", hint="ask for a number of models")
    rng = random.Random(f"{family}:{seed}")
    models: dict[str, ZooModel] = {}
    for _ in range(100 * count + 100):
        if len(models) == count:
            break
        model = _sample(family, rng)
        models.setdefault(model.name, model)
    if len(models) < count:
        raise SpaceError(
            f"only {len(models)} distinct {family} models found for count={count}", hint="ask for fewer models"
        )
    return list(models.values())

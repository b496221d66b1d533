"""The searched space: SPOS architectures as (choices, scales), the encoding every part of hwlab shares.

An architecture is 20 block choices (0..3: ShuffleNetV2 unit 3x3/5x5/7x7, Shuffle-Xception) and, with channel
search, 20 middle-channel scales from the config's ``channel_scales``. The same pair names the ops of
``hwlab profile --space spos`` (``spos_arch_ops``), the zoo's standalone ``SposNet`` and the predictor's fast
path, so a candidate's latency, FLOPs and network are each one call away.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hwlab.errors import SpaceError
from hwlab.space import SPOS_CHANNEL_SCALES, SPOS_CHOICES, SPOS_NUM_LAYERS, SposConfig, spos_arch_ops


@dataclass(frozen=True)
class Arch:
    """One architecture: a choice per layer and a channel scale per layer (all 1.0 without channel search)."""

    choices: tuple[int, ...]
    scales: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "choices", tuple(int(c) for c in self.choices))
        object.__setattr__(self, "scales", tuple(float(s) for s in self.scales))
        if len(self.choices) != SPOS_NUM_LAYERS or len(self.scales) != SPOS_NUM_LAYERS:
            raise SpaceError(
                f"an architecture has {SPOS_NUM_LAYERS} choices and {SPOS_NUM_LAYERS} scales,"
                f" got {len(self.choices)} and {len(self.scales)}",
                hint="give one choice (0..3) and one scale per choice layer",
            )
        if any(c not in range(len(SPOS_CHOICES)) for c in self.choices):
            raise SpaceError(f"choices {list(self.choices)} must each be in 0..{len(SPOS_CHOICES) - 1}",
                             hint=", ".join(f"{i}={n}" for i, n in enumerate(SPOS_CHOICES)))  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"choices": list(self.choices), "scales": list(self.scales)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Arch:
        try:
            choices = data["choices"]
        except (KeyError, TypeError):
            raise SpaceError("an architecture needs a 'choices' list", hint='e.g. {"choices": [0, 1, ...]}') from None
        scales = data.get("scales") or [1.0] * len(choices)
        return cls(tuple(choices), tuple(scales))

    def __str__(self) -> str:
        text = "".join(map(str, self.choices))
        if any(s != 1.0 for s in self.scales):
            text += " x" + ",".join(f"{s:g}" for s in self.scales)
        return text


@dataclass(frozen=True)
class SearchSpace:
    """A SPOS config (input size, width, classes) and whether channel scales are searched."""

    config: SposConfig

    @classmethod
    def of(
        cls,
        input_size: int = 32,
        width: float = 0.25,
        num_classes: int = 10,
        channel_search: bool = False,
        stem_stride: int = 1,
    ) -> SearchSpace:
        """Small images by default: the embedded digits at 32x32 with a quarter-width network."""
        scales = SPOS_CHANNEL_SCALES if channel_search else (1.0,)
        return cls(SposConfig(input_size, width, scales, num_classes, stem_stride))

    @property
    def scales(self) -> tuple[float, ...]:
        return self.config.channel_scales

    @property
    def channel_search(self) -> bool:
        return len(self.scales) > 1

    @property
    def table_name(self) -> str:
        """The lookup table a ``--latency-source table`` search reads by default: named after the space, so a
        profile of another SPOS size (``hwlab profile --space spos`` writes ``spos``) is never mixed in."""
        c = self.config
        scales = "-cs" if self.channel_search else ""
        return f"spos-{c.input_size}-w{c.width:g}-c{c.num_classes}-s{c.stem_stride}{scales}"

    def sample(self, rng: random.Random) -> Arch:
        """Uniform over every layer's choices and scales."""
        return Arch(
            tuple(rng.randrange(len(SPOS_CHOICES)) for _ in range(SPOS_NUM_LAYERS)),
            tuple(rng.choice(self.scales) for _ in range(SPOS_NUM_LAYERS)),
        )

    def mutate(self, arch: Arch, rng: random.Random, prob: float) -> Arch:
        """Each gene (a layer's choice, and its scale with channel search) redrawn with probability ``prob``."""
        choices = [rng.randrange(len(SPOS_CHOICES)) if rng.random() < prob else c for c in arch.choices]
        scales = [rng.choice(self.scales) if rng.random() < prob else s for s in arch.scales]
        return Arch(tuple(choices), tuple(scales))

    def crossover(self, a: Arch, b: Arch, rng: random.Random) -> Arch:
        """Each layer's genes from one parent or the other, evenly."""
        picks = [rng.random() < 0.5 for _ in a.choices]
        return Arch(
            tuple(x if p else y for p, x, y in zip(picks, a.choices, b.choices, strict=True)),
            tuple(x if p else y for p, x, y in zip(picks, a.scales, b.scales, strict=True)),
        )

    def check(self, arch: Arch) -> Arch:
        """The architecture, if every scale belongs to this space; else a SpaceError naming the layer."""
        spos_arch_ops(self.config, arch.choices, arch.scales)
        return arch

    def cost(self, arch: Arch) -> tuple[int, int]:
        """(multiply-accumulates, parameters) of the architecture, from one pass over its ops."""
        ops = spos_arch_ops(self.config, arch.choices, arch.scales)
        return sum(op.macs for op in ops), sum(op.params for op in ops)

    def to_json(self) -> dict[str, Any]:
        c = self.config
        return {
            "input_size": c.input_size,
            "width": c.width,
            "channel_scales": list(c.channel_scales),
            "num_classes": c.num_classes,
            "stem_stride": c.stem_stride,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        return cls(SposConfig(int(data["input_size"]), float(data["width"]), tuple(data["channel_scales"]),
                              int(data["num_classes"]), int(data["stem_stride"])))  # fmt: skip


def arch_key(arch: Arch) -> str:
    """A stable text key (duplicates are never evaluated twice)."""
    return json.dumps(arch.to_json(), separators=(",", ":"))


def encode(arch: Arch, scales: Sequence[float]) -> tuple[list[int], list[int]]:
    """Choice indices and scale indices (into ``scales``), the form the latency fast path takes."""
    return list(arch.choices), [list(scales).index(s) for s in arch.scales]

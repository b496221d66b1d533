"""Random draws shared by the family generators."""

from __future__ import annotations

import math
import random


def log_width(rng: random.Random, low: int, high: int, step: int = 8) -> int:
    """A multiple of `step` in [low, high], log-uniform so thin and wide layers are equally common."""
    value = math.exp(rng.uniform(math.log(low), math.log(high)))
    return min(high, max(low, round(value / step) * step))


def sorted_widths(rng: random.Random, count: int, low: int, high: int) -> list[int]:
    """`count` widths, non-decreasing through the network as in the hand-designed originals."""
    return sorted(log_width(rng, low, high) for _ in range(count))


def strides(rng: random.Random, count: int, p_two: float, max_twos: int) -> list[int]:
    """Stage strides, 2 with probability `p_two`, at most `max_twos` of them (later ones become 1)."""
    out: list[int] = []
    for _ in range(count):
        out.append(2 if rng.random() < p_two and out.count(2) < max_twos else 1)
    return out

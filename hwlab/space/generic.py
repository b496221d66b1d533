"""Seeded samples of common mobile-CNN ops, for fitting kernel-level predictors.

Channel counts are drawn from what mobile networks (MobileNet, ShuffleNet,
EfficientNet) use at each resolution, so samples are realistic rather than
uniform: wide layers at 7x7, narrow ones at 112x112. The same seed gives the same
list on every machine (it only uses `random.Random`).
"""

from __future__ import annotations

import random
from collections.abc import Callable

from hwlab.errors import SpaceError
from hwlab.space.kinds import ACTIVATIONS
from hwlab.space.opspec import OpSpec

# Input side -> channel counts seen at that side in mobile CNNs.
CHANNELS_AT: dict[int, tuple[int, ...]] = {
    224: (3, 8, 16, 24, 32),
    112: (16, 24, 32, 48, 64, 96),
    56: (24, 32, 48, 64, 96, 128, 144),
    28: (32, 40, 48, 64, 96, 128, 160, 192, 240, 256),
    14: (64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 480, 512, 576, 672),
    7: (160, 192, 256, 320, 384, 512, 640, 960, 1024, 1280),
}
FC_IN: tuple[int, ...] = (256, 512, 576, 960, 1024, 1280, 2048)
FC_OUT: tuple[int, ...] = (10, 100, 1000, 1280)
KERNELS: tuple[int, ...] = (3, 5, 7)
STRIDES: tuple[int, ...] = (1, 2)

Sampler = Callable[[random.Random], OpSpec]
# Draws in a row that found nothing new before the ranges count as exhausted.
_MAX_MISSES = 5000


def _site(rng: random.Random, min_channels: int = 1) -> tuple[int, int]:
    size = rng.choice(sorted(CHANNELS_AT))
    channels = [c for c in CHANNELS_AT[size] if c >= min_channels] or [max(CHANNELS_AT[size])]
    return size, rng.choice(channels)


def _conv(rng: random.Random) -> OpSpec:
    size, cin = _site(rng)
    cout = rng.choice(CHANNELS_AT[size] if size != 224 else CHANNELS_AT[112])
    return OpSpec("conv", size, size, cin, cout, rng.choice(KERNELS), rng.choice(STRIDES))


def _dwconv(rng: random.Random) -> OpSpec:
    size, c = _site(rng, min_channels=8)
    return OpSpec("dwconv", size, size, c, c, rng.choice(KERNELS), rng.choice(STRIDES))


def _pwconv(rng: random.Random) -> OpSpec:
    size, cin = _site(rng, min_channels=8)
    return OpSpec("pwconv", size, size, cin, rng.choice(CHANNELS_AT[size]), stride=rng.choice(STRIDES))


def _fc(rng: random.Random) -> OpSpec:
    return OpSpec("fc", 1, 1, rng.choice(FC_IN), rng.choice(FC_OUT))


def _pool(op: str) -> Sampler:
    def sample(rng: random.Random) -> OpSpec:
        size, c = _site(rng, min_channels=8)
        return OpSpec(op, size, size, c, c, kernel=3, stride=rng.choice(STRIDES))

    return sample


def _gap(rng: random.Random) -> OpSpec:
    size, c = _site(rng, min_channels=8)
    return OpSpec("gap", size, size, c, c)


def _add(rng: random.Random) -> OpSpec:
    size, c = _site(rng, min_channels=8)
    return OpSpec("add", size, size, c, c)


def _concat(rng: random.Random) -> OpSpec:
    size, c = _site(rng, min_channels=8)
    return OpSpec("concat", size, size, c, 2 * c)


def _act(rng: random.Random) -> OpSpec:
    size, c = _site(rng, min_channels=8)
    return OpSpec("act", size, size, c, c, act=rng.choice(ACTIVATIONS))


# Sampler and relative weight: convolutions dominate real networks' latency.
SAMPLERS: tuple[tuple[Sampler, float], ...] = (
    (_conv, 3.0),
    (_dwconv, 3.0),
    (_pwconv, 3.0),
    (_fc, 0.5),
    (_pool("maxpool"), 0.5),
    (_pool("avgpool"), 0.5),
    (_gap, 0.5),
    (_add, 1.0),
    (_concat, 1.0),
    (_act, 1.0),
)


def generic_space(count: int = 100, seed: int = 0) -> list[OpSpec]:
    """`count` distinct ops sampled with `seed`; the same seed gives the same list."""
    if not isinstance(count, int) or count < 0:
        raise SpaceError(f"count={count!r} must be an int >= 0", hint="ask for a number of ops")
    rng = random.Random(seed)
    samplers = [s for s, _ in SAMPLERS]
    weights = [w for _, w in SAMPLERS]
    ops: dict[str, OpSpec] = {}
    misses = 0
    while len(ops) < count:
        if misses == _MAX_MISSES:
            raise SpaceError(
                f"only {len(ops)} distinct ops found for count={count}: the ranges are exhausted",
                hint="ask for fewer ops",
            )
        spec = rng.choices(samplers, weights)[0](rng)
        misses = misses + 1 if spec.key in ops else 0
        ops.setdefault(spec.key, spec)
    return list(ops.values())

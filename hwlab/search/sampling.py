"""Which path a supernet trains at each step: uniform, or uniform over latency bins.

SPOS trains with uniformly sampled single paths. Its released code can instead draw a FLOPs bin uniformly
and then a path inside it, so that cheap and expensive regions of the space get equal training; here the bins
are of predicted device latency, which is what the search constrains.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np

from hwlab.errors import SearchError
from hwlab.search.space import Arch, SearchSpace

PathSampler = Callable[[random.Random], Arch]


class LatencyBinSampler:
    """Bins of equal population (latency quantiles of ``probe`` random paths); a step draws a bin uniformly,
    then rejection-samples uniform paths until one falls in it."""

    def __init__(
        self,
        space: SearchSpace,
        latency_ms: Callable[[Sequence[Arch]], np.ndarray],
        bins: int = 5,
        probe: int = 2000,
        seed: int = 0,
        max_tries: int = 10_000,
    ) -> None:
        if bins < 2:
            raise SearchError(f"latency bins={bins}: use at least 2", hint="or train with uniform sampling")
        rng = random.Random(seed)
        self.space, self.latency_ms, self.max_tries = space, latency_ms, max_tries
        sample = [space.sample(rng) for _ in range(probe)]
        self.edges = np.quantile(latency_ms(sample), np.linspace(0, 1, bins + 1))
        self.edges[0], self.edges[-1] = -np.inf, np.inf

    def bin_of(self, arch: Arch) -> int:
        value = float(self.latency_ms([arch])[0])
        return int(np.searchsorted(self.edges, value, side="right") - 1)

    def __call__(self, rng: random.Random) -> Arch:
        wanted = rng.randrange(len(self.edges) - 1)
        for _ in range(self.max_tries):
            arch = self.space.sample(rng)
            if self.bin_of(arch) == wanted:
                return arch
        raise SearchError(f"no path found in latency bin {wanted} after {self.max_tries} draws",
                         hint="use fewer bins")  # fmt: skip

"""Evolutionary search under device constraints, and the random-search baseline at equal evaluations.

SPOS's search with its published defaults: a population of 50, 20 iterations; each iteration keeps the top
10 candidates as parents and makes 25 mutants (every gene redrawn with p = 0.1) and 25 crossovers (each gene
from one of two parents), filling up with random candidates. A candidate that breaks a constraint (predicted
latency, FLOPs, parameters) is rejected before it costs an evaluation, and no architecture is scored twice.
Random search draws uniform candidates under the same constraints until it has scored as many.

The search runs on any space that samples, mutates, crosses over and costs its architectures (``Space``):
SPOS's (``hwlab.search.space``) and the re-parameterised plain networks of ``--space repvgg``
(``hwlab.reparam.space``); an architecture's identity is its ``to_json()``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

from hwlab.errors import BudgetUnmet
from hwlab.progress import Progress
from hwlab.search.latency import LatencySource
from hwlab.search.space import Arch, arch_key


class Space(Protocol):
    """What the searches need of a space: draw, vary and cost its architectures."""

    def sample(self, rng: random.Random) -> Any: ...
    def mutate(self, arch: Any, rng: random.Random, prob: float) -> Any: ...
    def crossover(self, a: Any, b: Any, rng: random.Random) -> Any: ...
    def cost(self, arch: Any) -> tuple[int, int]: ...


Score = Callable[[Arch], float]  # accuracy of a candidate (higher is better)
RANDOM_MAX_DRAWS = 1_000_000  # rejection-sampling attempts of the random baseline before giving up


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 50
    iterations: int = 20
    parents: int = 10
    mutations: int = 25
    crossovers: int = 25
    mutation_prob: float = 0.1
    max_draws: int = 100_000  # rejection-sampling attempts per iteration before giving up


@dataclass(frozen=True)
class Constraints:
    """Upper bounds; None means unconstrained."""

    latency_ms: float | None = None
    macs: int | None = None
    params: int | None = None


@dataclass
class Candidate:
    arch: Arch
    latency_ms: float
    macs: int
    params: int
    accuracy: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {**self.arch.to_json(), "latency_ms": self.latency_ms, "macs": self.macs, "params": self.params,
                "accuracy": self.accuracy}  # fmt: skip


@dataclass
class SearchResult:
    method: str
    best: Candidate
    evaluated: list[Candidate]
    rejected: int  # candidates drawn that broke a constraint
    latency_calls: int
    latency_seconds: float
    seconds: float
    history: list[float] = field(default_factory=list)  # best accuracy after each iteration

    @property
    def pareto(self) -> list[Candidate]:
        """Evaluated candidates no other beats on both accuracy (higher) and latency (lower), by latency."""
        front: list[Candidate] = []
        for c in sorted(self.evaluated, key=lambda c: (c.latency_ms, -(c.accuracy or 0.0))):
            if not front or (c.accuracy or 0.0) > (front[-1].accuracy or 0.0):
                front.append(c)
        return front

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "best": self.best.to_json(),
            "pareto": [c.to_json() for c in self.pareto],
            "evaluated": len(self.evaluated),
            "rejected": self.rejected,
            "latency_calls": self.latency_calls,
            "latency_calls_per_s": self.latency_calls / self.latency_seconds if self.latency_seconds else None,
            "seconds": self.seconds,
            "history": self.history,
            "candidates": [c.to_json() for c in self.evaluated],
        }


class _Search:
    """What both searches share: the constraint gate, the score cache and the bookkeeping."""

    def __init__(self, space: Space, latency: LatencySource, constraints: Constraints, score: Score) -> None:
        self.space, self.latency, self.constraints, self.score = space, latency, constraints, score
        self.scored: dict[str, Candidate] = {}
        self.rejected = self.latency_calls = 0
        self.latency_seconds = 0.0
        self.fastest_ms = float("inf")  # of every candidate whose latency was asked, admitted or not
        self.started = time.perf_counter()

    def admit(self, archs: Sequence[Arch]) -> list[Candidate]:
        """Candidates (not yet scored) that meet every constraint; the rest are counted as rejected."""
        fresh = list({arch_key(a): a for a in archs if arch_key(a) not in self.scored}.values())
        c = self.constraints
        start = time.perf_counter()
        latencies = self.latency(fresh) if fresh else []
        self.latency_seconds += time.perf_counter() - start
        self.latency_calls += len(fresh)
        if fresh:
            self.fastest_ms = min(self.fastest_ms, float(min(latencies)))
        out = []
        for arch, ms in zip(fresh, latencies, strict=True):
            if c.latency_ms is not None and ms > c.latency_ms:  # the cheap test first: no op list built
                self.rejected += 1
                continue
            macs, params = self.space.cost(arch)
            if (c.macs is not None and macs > c.macs) or (c.params is not None and params > c.params):
                self.rejected += 1
                continue
            out.append(Candidate(arch, float(ms), macs, params))
        return out

    def evaluate(self, candidate: Candidate) -> Candidate:
        key = arch_key(candidate.arch)
        if key not in self.scored:
            candidate.accuracy = float(self.score(candidate.arch))
            self.scored[key] = candidate
        return self.scored[key]

    def unmet(self) -> BudgetUnmet:
        return BudgetUnmet(f"no architecture met the constraints: the fastest of {self.latency_calls:,} drawn is"
                           f" predicted at {self.fastest_ms:.3f} ms",
                           hint="raise --latency-ms (or the FLOPs/params limits)")  # fmt: skip

    def result(self, method: str, history: list[float]) -> SearchResult:
        if not self.scored:
            raise self.unmet()
        evaluated = list(self.scored.values())
        best = max(evaluated, key=lambda c: (c.accuracy, -c.latency_ms))
        return SearchResult(method, best, evaluated, self.rejected, self.latency_calls, self.latency_seconds,
                            time.perf_counter() - self.started, history)  # fmt: skip


def _mutant(parents: list[Arch], space: Space, rng: random.Random, prob: float) -> Arch:
    return space.mutate(rng.choice(parents), rng, prob)


def _child(parents: list[Arch], space: Space, rng: random.Random) -> Arch:
    a, b = rng.sample(parents, 2) if len(parents) > 1 else (parents[0], parents[0])
    return space.crossover(a, b, rng)


def _draw(search: _Search, make: Callable[[], Arch], wanted: int, max_draws: int) -> list[Candidate]:
    """Up to ``wanted`` new, distinct candidates from ``make`` that meet the constraints (drawn in batches)."""
    found: dict[str, Candidate] = {}
    draws = 0
    while len(found) < wanted and draws < max_draws:
        batch = [make() for _ in range(max(16, 2 * (wanted - len(found))))]
        draws += len(batch)
        for c in search.admit(batch):
            found.setdefault(arch_key(c.arch), c)
    return list(found.values())[:wanted]


def evolution_search(
    space: Space,
    latency: LatencySource,
    score: Score,
    constraints: Constraints = Constraints(),
    settings: EvolutionSettings = EvolutionSettings(),
    seed: int = 0,
    progress: Progress | None = None,
) -> SearchResult:
    """The constrained evolutionary search of SPOS."""
    rng = random.Random(seed)
    search = _Search(space, latency, constraints, score)
    s = settings
    population = _draw(search, lambda: space.sample(rng), s.population, s.max_draws)
    if not population:  # nothing to evolve from: say how far off the budget is
        raise search.unmet()
    history: list[float] = []
    for iteration in range(s.iterations):
        population = [search.evaluate(c) for c in population]
        ranked = sorted(search.scored.values(), key=lambda c: -(c.accuracy or 0.0))
        parents = ranked[: s.parents]
        history.append(ranked[0].accuracy or 0.0)
        if progress:
            progress("search", iteration + 1, s.iterations, f"best {history[-1]:.1%}, {len(search.scored)} scored")
        if iteration == s.iterations - 1:
            break
        arches = [p.arch for p in parents]
        mutants = _draw(search, partial(_mutant, arches, space, rng, s.mutation_prob), s.mutations, s.max_draws)
        taken = {arch_key(m.arch) for m in mutants}
        population = mutants + [c for c in _draw(search, partial(_child, arches, space, rng), s.crossovers, s.max_draws)
                                if arch_key(c.arch) not in taken]  # fmt: skip
        population += _draw(search, lambda: space.sample(rng), s.population - len(population), s.max_draws)
    return search.result("evolution", history)


def check_reachable(
    space: Space, latency: LatencySource, constraints: Constraints, seed: int = 0, max_draws: int = 100_000
) -> Candidate:
    """The first random candidate that meets the constraints, drawn as a search's first population is;
    :class:`BudgetUnmet` naming the fastest one drawn when none does. Cheap: run it before training."""
    search = _Search(space, latency, constraints, lambda arch: 0.0)
    rng = random.Random(seed)
    found = _draw(search, lambda: space.sample(rng), 1, max_draws)
    if not found:
        raise search.unmet()
    return found[0]


def random_search(
    space: Space,
    latency: LatencySource,
    score: Score,
    evaluations: int,
    constraints: Constraints = Constraints(),
    seed: int = 0,
    progress: Progress | None = None,
    max_draws: int = RANDOM_MAX_DRAWS,
) -> SearchResult:
    """Uniform candidates under the same constraints, ``evaluations`` of them scored (SPOS's baseline)."""
    rng = random.Random(seed)
    search = _Search(space, latency, constraints, score)
    history: list[float] = []
    for c in _draw(search, lambda: space.sample(rng), evaluations, max_draws):
        search.evaluate(c)
        history.append(max(x.accuracy or 0.0 for x in search.scored.values()))
        if progress:
            progress("random", len(search.scored), evaluations, f"best {history[-1]:.1%}")
    return search.result("random", history)

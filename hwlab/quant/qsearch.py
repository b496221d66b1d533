"""Bit-width search: the quantisation-aware supernet, its scorer, and five ways to pick an assignment.

The supernet (``fakequant.QuantNet``) is trained with a uniformly sampled precision per layer per step.
A candidate is scored as SPOS scores a path: BatchNorm statistics recalibrated for that assignment on
training batches, then top-1 on the held-out split. Under one budget (composed latency and/or BitOps),
in one run:

- ``evolution``: SPOS's evolutionary search over per-layer precisions (top-k parents, crossover,
  mutation, every child checked against the budget before it is scored); the first population draws a
  share of low-precision layers per candidate, then the layers, so it spans the budget's whole range;
- ``uniform-fp32`` and ``uniform-int8``: every layer at one precision (reported even over budget);
- ``greedy``: OpenVINO's accuracy-aware recipe: all int8, then the most sensitive layers back to fp32
  while the budget holds;
- ``ilp``: HAWQ-V3's integer program: minimise the summed per-layer sensitivity under the budget, with the
  composition's boundary savings as linearised products (exact for the composed model), solved by pulp.

A layer's sensitivity is the held-out loss increase when it alone leaves fp32 (after BN recalibration).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hwlab.errors import SearchError
from hwlab.progress import Progress
from hwlab.quant.cost import ComposedLatency, bitops, layer_bitops
from hwlab.quant.fakequant import QuantNet
from hwlab.quant.network import GRAPH_INPUT, Layer
from hwlab.quant.precision import precision
from hwlab.search.bn import recalibrate
from hwlab.search.data import ImageData, batches
from hwlab.search.train import TrainResult, TrainSettings, train_supernet

METHODS = ("evolution", "uniform-fp32", "uniform-int8", "greedy", "ilp")
Assignment = tuple[str, ...]


@dataclass(frozen=True)
class Budget:
    """The constraint: composed latency (ms) and/or BitOps (giga); None = unconstrained."""

    latency_ms: float | None = None
    bitops_g: float | None = None

    def check(self) -> Budget:
        if self.latency_ms is None and self.bitops_g is None:
            raise SearchError("no budget: give --latency-ms and/or --bitops", hint="e.g. --latency-ms 0.5")
        return self


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 24
    generations: int = 8
    parents: int = 8
    mutation: float = 0.1
    seed: int = 0


@dataclass
class Candidate:
    method: str
    assignment: Assignment
    latency_ms: float | None
    bitops_g: float
    accuracy: float | None = None  # supernet top-1 after BN recalibration
    within_budget: bool = True
    loss: float | None = None  # held-out cross-entropy: breaks ties of top-1 on a small split
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rank(self) -> tuple[float, float]:
        """Sort key, best first: higher top-1, then lower loss."""
        return (-(self.accuracy or 0.0), self.loss if self.loss is not None else float("inf"))

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "precisions": list(self.assignment), "composed_ms": self.latency_ms,
                "bitops_g": self.bitops_g, "supernet_top1": self.accuracy, "supernet_loss": self.loss,
                "within_budget": self.within_budget,
                **self.extra}  # fmt: skip


def train_qsupernet(
    qnet: QuantNet,
    data: ImageData,
    choices: Sequence[str],
    settings: TrainSettings,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Uniform path sampling over the bit choices: each step draws a precision per layer."""
    n = len(qnet.layers)
    return train_supernet(qnet, data, settings, lambda rng: [rng.choice(choices) for _ in range(n)], checkpoint,
                          progress)  # fmt: skip


class Scorer:
    """Held-out top-1 (and loss) of an assignment after BN recalibration, cached per assignment."""

    def __init__(self, qnet: QuantNet, data: ImageData, recal_batches: int = 4, batch_size: int = 64) -> None:
        self.qnet, self.data = qnet, data
        generator = torch.Generator().manual_seed(0)
        self.recal = [x for x, _ in batches(data.x_train, data.y_train, batch_size, generator)][:recal_batches]
        self.cache: dict[Assignment, tuple[float, float]] = {}
        self.state = {k: v.clone() for k, v in qnet.state_dict().items()}

    @torch.no_grad()
    def recalibrate(self, assignment: Assignment) -> None:
        """BN statistics of ``assignment`` (activation ranges stay as trained)."""
        self.qnet.load_state_dict(self.state)
        self.qnet.track_ranges = False
        try:
            recalibrate(self.qnet, lambda x: self.qnet(x, assignment), self.recal, len(self.recal))
        finally:
            self.qnet.track_ranges = True

    @torch.no_grad()
    def __call__(self, assignment: Assignment) -> tuple[float, float]:
        """(top-1, mean cross-entropy) on the held-out split."""
        if assignment not in self.cache:
            self.recalibrate(assignment)
            logits = torch.cat([self.qnet(x, assignment) for x, _ in batches(self.data.x_val, self.data.y_val, 256)])
            y = self.data.y_val
            self.cache[assignment] = (float((logits.argmax(1) == y).float().mean()), float(F.cross_entropy(logits, y)))
        return self.cache[assignment]


def sensitivities(score: Scorer, n_layers: int, choices: Sequence[str]) -> list[dict[str, float]]:
    """Per layer and precision: held-out loss increase when that layer alone is at that precision."""
    base = score(("fp32",) * n_layers)[1]
    out = []
    for i in range(n_layers):
        row = {"fp32": 0.0}
        for p in choices:
            if p != "fp32":
                assignment = tuple(p if j == i else "fp32" for j in range(n_layers))
                row[p] = max(0.0, score(assignment)[1] - base)
        out.append(row)
    return out


class Problem:
    """The layers, their choices, the budget and the composed latency: what every method searches."""

    def __init__(self, layers: Sequence[Layer], choices: Sequence[str], budget: Budget,
                 latency: ComposedLatency | None) -> None:  # fmt: skip
        self.layers, self.choices, self.budget, self.latency = tuple(layers), tuple(choices), budget.check(), latency
        if budget.latency_ms is not None and latency is None:
            raise SearchError("a latency budget needs the composed latency", hint="profile the network's layers first")

    def candidate(self, method: str, assignment: Sequence[str]) -> Candidate:
        assignment = tuple(assignment)
        ms = self.latency(assignment) if self.latency is not None else None
        g = bitops(self.layers, assignment) / 1e9
        return Candidate(method, assignment, ms, g, within_budget=self.fits(ms, g))

    def fits(self, ms: float | None, g: float) -> bool:
        if self.budget.latency_ms is not None and (ms is None or ms > self.budget.latency_ms):
            return False
        return self.budget.bitops_g is None or g <= self.budget.bitops_g

    def ok(self, assignment: Sequence[str]) -> bool:
        return self.candidate("", assignment).within_budget


def evolution(problem: Problem, score: Callable[[Assignment], tuple[float, float]], settings: EvolutionSettings,
              progress: Progress | None = None) -> list[Candidate]:  # fmt: skip
    """SPOS's evolution over per-layer precisions; returns every scored candidate (best first)."""
    rng = random.Random(settings.seed)
    n, choices = len(problem.layers), problem.choices
    scored: dict[Assignment, Candidate] = {}

    def draw(make: Callable[[], Assignment], tries: int = 200) -> Assignment | None:
        for _ in range(tries):
            a = make()
            if a not in scored and problem.ok(a):
                return a
        return None

    def evaluate(a: Assignment) -> None:
        c = problem.candidate("evolution", a)
        c.accuracy, c.loss = score(a)
        scored[a] = c

    def spread() -> Assignment:
        """A share of low-precision layers drawn first, then the layers: uniform per layer would put almost
        every draw near half int8, and a tight budget would find none."""
        share = rng.random()
        low = [p for p in choices if p != "fp32"]
        return tuple(rng.choice(low) if low and rng.random() < share else "fp32" for _ in range(n))

    population: list[Assignment] = []
    while len(population) < settings.population:
        a = draw(spread)
        if a is None:
            break
        evaluate(a)
        population.append(a)
    if not population:
        raise SearchError("no random assignment fits the budget", hint="raise --latency-ms or --bitops")

    def mutant(parents: list[Assignment]) -> Assignment:
        return tuple(rng.choice(choices) if rng.random() < settings.mutation else g for g in rng.choice(parents))

    def crossover(parents: list[Assignment]) -> Assignment:
        return tuple(rng.choice(pair) for pair in zip(rng.choice(parents), rng.choice(parents), strict=True))

    for generation in range(settings.generations):
        parents = sorted(scored, key=lambda a: scored[a].rank)[: settings.parents]
        for make in (mutant, crossover):
            for _ in range(settings.population // 2):
                child = draw(functools.partial(make, parents))
                if child is not None:
                    evaluate(child)
        if progress:
            best = min(scored.values(), key=lambda c: c.rank)
            progress("evolution", generation + 1, settings.generations, f"best {best.accuracy:.1%}")
    return sorted(scored.values(), key=lambda c: c.rank)


def greedy(problem: Problem, sens: Sequence[dict[str, float]]) -> Assignment:
    """All int8, then the most sensitive layers back to fp32 while the budget holds."""
    assignment = ["int8"] * len(problem.layers)
    for i in sorted(range(len(sens)), key=lambda i: -sens[i].get("int8", 0.0)):
        trial = [*assignment]
        trial[i] = "fp32"
        if problem.ok(trial):
            assignment = trial
    return tuple(assignment)


def ilp(problem: Problem, sens: Sequence[dict[str, float]]) -> Assignment | None:
    """Minimum summed sensitivity under the budget (None: infeasible). Latency terms use the composition
    exactly: a boundary saving is a binary that can be 1 only where every layer it needs is int8."""
    import pulp

    n, choices = len(problem.layers), problem.choices
    model = pulp.LpProblem("bit_widths", pulp.LpMinimize)
    x = {(i, p): pulp.LpVariable(f"x_{i}_{p}", cat="Binary") for i in range(n) for p in choices}
    for i in range(n):
        model += pulp.lpSum(x[i, p] for p in choices) == 1
    model += pulp.lpSum(sens[i].get(p, 0.0) * x[i, p] for i in range(n) for p in choices)
    if problem.budget.bitops_g is not None:
        model += pulp.lpSum(layer_bitops(problem.layers[i].macs, p) / 1e9 * x[i, p]
                            for i in range(n) for p in choices) <= problem.budget.bitops_g  # fmt: skip
    if problem.budget.latency_ms is not None:
        lat = problem.latency
        assert lat is not None
        for i in range(n):  # a width no runtime executes has no latency: not under a latency budget
            for p in choices:
                if not precision(p).deployable:
                    model += x[i, p] == 0
        terms = []
        for i, (layer, cost) in enumerate(zip(lat.layers, lat.costs, strict=True) if "int8" in choices else ()):
            # An int8 layer pays its delta and two boundaries; a saved boundary gives back its Q or DQ and
            # the boundary cost. A saving is possible only where every neighbour it needs is a layer.
            terms.append((lat.scale * cost.delta_int8 + 2 * lat.per_boundary_ms) * x[i, "int8"])
            for name, needed, saving in (("q", layer.producers, cost.quantize_in),
                                         ("dq", layer.consumers, cost.dequantize_out)):  # fmt: skip
                if needed and GRAPH_INPUT not in needed:
                    z = pulp.LpVariable(f"{name}_{i}", cat="Binary")
                    model += z <= x[i, "int8"]
                    for k in needed:
                        model += z <= x[k, "int8"]
                    terms.append(-(lat.scale * saving + lat.per_boundary_ms) * z)
        model += lat.network_fp32_ms + pulp.lpSum(terms) <= problem.budget.latency_ms
    model.solve(pulp.PULP_CBC_CMD(msg=False))
    if pulp.LpStatus[model.status] != "Optimal":
        return None
    return tuple(max(choices, key=lambda p: x[i, p].value() or 0.0) for i in range(n))


def baselines(problem: Problem, score: Callable[[Assignment], tuple[float, float]],
              sens: Sequence[dict[str, float]]) -> list[Candidate]:  # fmt: skip
    """Uniform fp32 and int8 (reported whatever the budget), greedy and ILP, each scored."""
    n = len(problem.layers)
    picks: list[tuple[str, Assignment | None]] = [("uniform-fp32", ("fp32",) * n), ("uniform-int8", ("int8",) * n)]
    if "int8" in problem.choices:
        picks.append(("greedy", greedy(problem, sens)))
    picks.append(("ilp", ilp(problem, sens)))
    out = []
    for method, assignment in picks:
        if assignment is None:
            continue
        c = problem.candidate(method, assignment)
        c.accuracy, c.loss = score(assignment)
        out.append(c)
    return out

"""Interleaved rounds: every model of a group visited once per round, in a seeded order, and the
machine's changing state of each round divided out.

Why: a machine's speed drifts (host frequency, a busy sibling hyperthread, shared caches), so a
model measured alone in one block carries the state of its moment, and a narrow CI within that
block says nothing about a rerun. Visiting every model once per round puts the same state on all
of them within a round, and the state of each round is estimated from all the models and divided
out. What is left between rounds is what a rerun would see, and the CI says so.

The drift is not one common factor: on a VM whose sibling thread is busy now and then, a model of
many tiny kernels (a dispatch-bound SPOS net at 32x32) slows down twice as much as one of a few
large convolutions. So each round has a *state* x_r and each model a *sensitivity* beta_m to it,
a rank-one model on log latencies (Tukey's median polish is the case beta = 1, and starts it):

    log visit[m, r] = mu_m + beta_m * x_r + noise

fitted by alternating robust steps, starting from the median polish (x_r: the median over models
of the residual per unit of sensitivity; beta_m: the Theil-Sen slope of the model's visits on the
states, shrunk towards 1 when the states barely moved). The states have median 0 (a model's
corrected median is its latency in the group's median state) and the sensitivities mean 1 over
the job's anchors when the group holds them (else median 1), so states of different jobs are in
the same unit and the host can put jobs hours apart on one scale through the anchors
(hwlab/measure/speed.py).

The figure a table uses is not that median, though, but each model's *floor*: the geometric mean of
its FLOOR_VISITS fastest visits (each visit itself a median). Measured on a VM whose speed flips
between a quiet state and states up to 1.6x slower, two runs of 100 models ten minutes apart gave
the same floors within ±5% for 96 of them (±10%: all), while their medians in each group's median state agreed
for only 28% (the median state is whichever state most rounds happened to be in, and the rank-one
model describes a busy machine only roughly). Disturbance only ever adds time; the quiet state is
what a rerun finds again. The floor's CI is a seeded bootstrap over rounds (what a rerun of as
many rounds would see), and the rounds stop on it: while a model has seen its quiet state in one
round only, resamples that miss that round keep its CI wide.

The clock is injectable, as in :mod:`hwlab_runner.timing`, so a simulated clock with a known
drift gives exact expected figures.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Callable, Sequence

import numpy as np

from .signals import stop_if_signalled
from .timing import BlockTimer, Clock, size_block, time_block

POLISH_ITERATIONS = 50
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)  # sd of a normal sample's median over the mean's, for large n


@dataclass(frozen=True)
class RoundRule:
    """How a group is measured in rounds, and when the rounds stop.

    Each visit is ``visit_warmup`` untimed calls, then blocks (sized once, on the first visit,
    to last ``block_min_time_s`` of the job) until the visit lasted ``visit_min_time_s`` and
    gave ``visit_min_samples``. Rounds stop on ``"ci"`` once ``min_rounds`` are done and every
    model's floor CI is within ``ci_rel`` (None: never), else on ``"max_rounds"`` or
    ``"max_time"``: the group has measured for ``max_time_s`` per model (a model's time, as in
    one block, so a group of 35 may take 35 times as long). A job's models are measured
    ``group_size`` at a time (with the anchors in every group), and a group's lines are written
    when it ends.
    """

    min_rounds: int = 10  # the quiet state comes and goes over tens of seconds: give it time to show
    max_rounds: int = 40
    max_time_s: float = 3.0
    ci_rel: float | None = 0.02
    confidence: float = 0.95
    visit_min_time_s: float = 0.02
    visit_min_samples: int = 3
    visit_warmup: int = 3
    group_size: int = 32


@dataclass
class Member:
    """One model of a group: how to call it, and what its visits measured."""

    run: Callable[[], object]
    block_timer: BlockTimer | None = None
    block: int = 0
    samples_us: list[float] = field(default_factory=list)
    visit_us: list[float] = field(default_factory=list)  # one raw visit median per round
    warmup_count: int = 0
    warmup_ns: int = 0
    sampling_ns: int = 0
    error: str | None = None


@dataclass(frozen=True)
class Corrected:
    """One model's figures after the rounds' states are divided out (µs)."""

    median_us: float
    ci_low_us: float
    ci_high_us: float
    ci_rel: float
    spread_rel: float  # sd of one round's corrected log latency: what one more visit would see
    floor: Floor  # its figure in the machine's quiet state (the table's figure)
    sensitivity: float = 1.0  # beta: how strongly the model follows the rounds' states


@dataclass(frozen=True)
class Floor:
    """A model's time in the machine's quiet state: the geometric mean of its fastest visits, with a
    bootstrap CI over rounds (µs)."""

    us: float
    ci_low_us: float
    ci_high_us: float
    ci_rel: float


@dataclass(frozen=True)
class RoundsResult:
    """What a group's rounds measured: each member's visits, the rounds' factors, and why they stopped."""

    members: dict[str, Member]
    order: list[list[str]]  # the visiting order of each round
    factors: list[float]  # per round, exp(state): their median is 1
    corrected: dict[str, Corrected]
    stop_reason: str
    time_s: float


def median_polish(values: np.ndarray, iterations: int = POLISH_ITERATIONS) -> tuple[float, np.ndarray, np.ndarray]:
    """Tukey's median polish of a models x rounds matrix: values = overall + row + col + residual.

    Row and column effects have median 0; the residuals have median 0 in every row and column
    once it has converged. Medians, not means, so one disturbed visit cannot move a round's factor.
    """
    resid = np.array(values, dtype=float)
    overall = 0.0
    rows = np.zeros(resid.shape[0])
    cols = np.zeros(resid.shape[1])
    for _ in range(iterations):
        row_med = np.median(resid, axis=1)
        resid -= row_med[:, None]
        rows += row_med
        shift = float(np.median(cols))
        cols -= shift
        overall += shift
        col_med = np.median(resid, axis=0)
        resid -= col_med[None, :]
        cols += col_med
        shift = float(np.median(rows))
        rows -= shift
        overall += shift
        if max(np.abs(row_med).max(), np.abs(col_med).max()) < 1e-12:
            break
    shift = float(np.median(cols))
    return overall + shift, rows, cols - shift


def _t_quantile(confidence: float, df: int) -> float:
    """Student's t quantile, two-sided, by the Cornish-Fisher expansion (numpy has no t; exact enough)."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    if df < 1:
        return math.inf
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    return z + g1 / df + g2 / df**2 + g3 / df**3


def _robust_sd(deviations: np.ndarray) -> float:
    """The sd of ``deviations`` with each clipped to 3 robust sds (1.4826 MAD): one disturbed visit (a
    context switch, a page fault) cannot inflate it, and the clipped ones still count as large."""
    mad_sd = 1.4826 * float(np.median(np.abs(deviations)))
    bound = 3.0 * max(mad_sd, 1e-4)
    return float(np.std(np.clip(deviations, -bound, bound), ddof=1))


# A slope is shrunk towards the prior "sensitivity 1" (sd PRIOR_SD) by how well the rounds tell it: its
# variance is the row's residual variance over the states' spread. While the machine barely moves (a quiet
# minute, states within ±1%) a slope is noise over a tiny gap (one came out at 16 here): it stays near 1;
# over real swings, or without noise, the rounds tell it. States within QUIET_STATE tell nothing at all.
PRIOR_SD = 0.3
QUIET_STATE = 0.005
SENSITIVITY_RANGE = (0.1, 3.0)  # never beyond: a factor exp(beta * shift) must stay a correction
FIT_ITERATIONS = 5
MIN_SENSITIVITY = 0.25  # models below it do not vote on a round's state (dividing by ~0 amplifies noise)
MIN_STATE_GAP = 1e-3  # rounds closer in state than this give no slope


def _slope(d: np.ndarray, x: np.ndarray) -> float:
    """Theil-Sen: the median slope over all pairs of rounds, so one disturbed visit cannot tilt it; shrunk
    towards 1 when the states barely moved (then no slope can be told)."""
    i, j = np.triu_indices(len(x), k=1)
    gap = x[j] - x[i]
    usable = np.abs(gap) > MIN_STATE_GAP
    if not usable.any():
        return 1.0
    raw = float(np.median((d[j] - d[i])[usable] / gap[usable]))
    residual = d - raw * x
    noise = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    told = float(x @ x)
    weight = told / (told + noise**2 / PRIOR_SD**2 + len(x) * QUIET_STATE**2)
    return float(np.clip(weight * raw + (1.0 - weight), *SENSITIVITY_RANGE))


def fit_states(log_visits: np.ndarray, scale_rows: Sequence[int] = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu per model, beta per model, x per round) of the rank-one model in the module doc, for a
    models x rounds table of log visit times. ``scale_rows`` (the anchors) set the unit of the states:
    their mean sensitivity is 1 (without them, the median sensitivity is)."""
    y = np.asarray(log_visits, dtype=float)
    beta = np.ones(y.shape[0])
    if y.shape[0] < 2 or y.shape[1] < 2:
        return np.median(y, axis=1), beta, np.zeros(y.shape[1])
    overall, rows, x = median_polish(y)  # beta = 1: the starting point
    mu = overall + rows
    for _ in range(FIT_ITERATIONS):
        beta = np.array([_slope(row, x) for row in y])
        unit = float(np.mean(beta[list(scale_rows)])) if len(scale_rows) else float(np.median(beta))
        if unit > 1e-6:
            beta, x = beta / unit, x * unit
        mu = np.median(y - beta[:, None] * x[None, :], axis=1)
        voters = beta >= MIN_SENSITIVITY
        if voters.any():
            x = np.median((y - mu[:, None])[voters] / beta[voters, None], axis=0)
            x -= float(np.median(x))
        mu = np.median(y - beta[:, None] * x[None, :], axis=1)
    return mu, beta, x


FLOOR_VISITS = 3  # a model's floor: the geometric mean of its this many fastest visits
BOOTSTRAP_RESAMPLES = 400
BOOTSTRAP_SEED = 0  # the same visits always give the same CI


def floors(visit_us: dict[str, Sequence[float]], confidence: float = 0.95) -> dict[str, Floor]:
    """Each model's floor and its bootstrap CI: rounds are resampled with replacement (the same
    resamples for every model, as a round is one moment of the machine) and the floor taken again.
    With one round nothing can be told: the CI is unbounded."""
    keys = list(visit_us)
    logs = np.log(np.array([visit_us[k] for k in keys], dtype=float))
    n_rounds = logs.shape[1]
    count = min(FLOOR_VISITS, n_rounds)
    centre = np.sort(logs, axis=1)[:, :count].mean(axis=1)
    if n_rounds < 2:
        return {k: Floor(math.exp(c), 0.0, math.inf, math.inf) for k, c in zip(keys, centre)}
    picks = np.random.default_rng(BOOTSTRAP_SEED).integers(0, n_rounds, size=(BOOTSTRAP_RESAMPLES, n_rounds))
    resampled = np.sort(logs[:, picks], axis=2)[:, :, :count].mean(axis=2)  # models x resamples
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(resampled, [tail, 100.0 - tail], axis=1)
    out: dict[str, Floor] = {}
    for i, key in enumerate(keys):
        floor, lo, hi = math.exp(centre[i]), math.exp(min(low[i], centre[i])), math.exp(max(high[i], centre[i]))
        out[key] = Floor(floor, lo, hi, (hi - lo) / 2.0 / floor)
    return out


def correct(
    visit_us: dict[str, Sequence[float]], confidence: float = 0.95, anchors: Sequence[str] = ()
) -> tuple[list[float], dict[str, Corrected]]:
    """The rounds' factors (exp of the states, median 1) and each model's corrected median with its
    between-round CI and sensitivity. ``anchors``: the keys whose mean sensitivity sets the unit.

    With one round, or one model, nothing can be told apart: the factors are 1 and the CI is
    unbounded (a lone model's drift is its own latency).
    """
    keys = list(visit_us)
    matrix = np.log(np.array([visit_us[k] for k in keys], dtype=float))
    n_rounds = matrix.shape[1]
    _, beta, x = fit_states(matrix, [i for i, k in enumerate(keys) if k in set(anchors)])
    corrected_log = matrix - beta[:, None] * x[None, :]
    t = _t_quantile(confidence, n_rounds - 1)
    floor_of = floors(visit_us, confidence)
    out: dict[str, Corrected] = {}
    for i, key in enumerate(keys):
        row = corrected_log[i]
        centre = float(np.median(row))
        spread = _robust_sd(row - centre) if n_rounds > 1 and len(keys) >= 2 else math.inf
        half = t * MEDIAN_EFFICIENCY * spread / math.sqrt(n_rounds) if math.isfinite(spread) else math.inf
        median = math.exp(centre)
        low, high = (median * math.exp(-half), median * math.exp(half)) if math.isfinite(half) else (0.0, math.inf)
        ci_rel = (high - low) / 2.0 / median if math.isfinite(high) else math.inf
        out[key] = Corrected(median, low, high, ci_rel, spread, floor_of[key], float(beta[i]))
    return [math.exp(v) for v in x], out


def _visit(member: Member, rule: RoundRule, block_min_time_s: float, clock: Clock) -> float:
    """Warm up, time blocks for the visit's minimum, and return the visit's median (µs per call)."""
    start = clock()
    for _ in range(rule.visit_warmup):
        member.run()
    member.warmup_count += rule.visit_warmup
    member.warmup_ns += clock() - start
    timer = member.block_timer or (lambda n: time_block(member.run, n, clock))
    start = clock()
    samples: list[float] = []
    if member.block == 0:
        member.block, first_ns = size_block(member.run, block_min_time_s, clock, timer)
        start = clock() - first_ns
        samples.append(first_ns / member.block / 1000.0)
    min_ns = rule.visit_min_time_s * 1e9
    while len(samples) < rule.visit_min_samples or clock() - start < min_ns:
        samples.append(timer(member.block) / member.block / 1000.0)
        stop_if_signalled()
    member.sampling_ns += clock() - start
    member.samples_us.extend(samples)
    return float(np.median(samples))


def measure_rounds(
    members: dict[str, Member],
    rule: RoundRule,
    block_min_time_s: float,
    seed: int,
    clock: Clock = time.perf_counter_ns,
    on_round: Callable[[int], object] | None = None,
    anchors: Sequence[str] = (),
) -> RoundsResult:
    """Visit every member once per round, each round in an order drawn from ``seed``, until ``rule`` stops.

    ``on_round(n)`` runs before round n (from 1): a simulated machine sets its speed there. ``anchors``:
    the members whose sensitivities set the unit of the states (see the module doc).

    A member whose call fails gets its ``error`` and leaves the group; the others go on and the
    factors are fitted on the members that finished every round.
    """
    rng = random.Random(seed)
    order: list[list[str]] = []
    limit_ns = rule.max_time_s * len(members) * 1e9
    start = clock()
    reason = "max_rounds"
    factors: list[float] = []
    corrected: dict[str, Corrected] = {}
    for n in range(1, rule.max_rounds + 1):
        visiting = sorted(k for k, m in members.items() if m.error is None)
        rng.shuffle(visiting)
        order.append(visiting)
        if on_round is not None:
            on_round(n)
        for key in visiting:
            member = members[key]
            try:
                member.visit_us.append(_visit(member, rule, block_min_time_s, clock))
            except Exception as e:  # a failed call is a result of that model, not of the group
                member.error = f"{type(e).__name__}: {e}"
        alive = {k: m.visit_us for k, m in members.items() if m.error is None}
        if not alive:
            reason = "error"
            break
        factors, corrected = correct(alive, rule.confidence, anchors)
        if (
            n >= rule.min_rounds
            and rule.ci_rel is not None
            and max(c.floor.ci_rel for c in corrected.values()) <= rule.ci_rel
        ):
            reason = "ci"
            break
        if clock() - start >= limit_ns:
            reason = "max_time"
            break
    return RoundsResult(members, order, factors, corrected, reason, (clock() - start) / 1e9)

"""Noise-aware regression detection for one series (device, backend, model, metric) night after night.

A change is flagged only when both hold, so a noisy series does not raise false alarms and a quiet one
does not miss small real changes:

- tonight's raw samples differ from the baseline's (the pooled samples of the last ``baseline_nights``
  nights since the last acknowledged change) by a two-sided Mann-Whitney U test at ``p_value`` (0.002, as
  asv uses); with hundreds of samples a night this alone flags changes far below what a rerun moves;
- the relative change of the medians exceeds ``max(min_change, k x noise x widening)``, where ``noise``
  is the series' measured night-to-night spread: the standard deviation of the log nightly medians over
  the series' history since its baseline began (up to ``noise_nights``), the drift a rerun sees; the
  samples' own spread within a night says nothing about it (see the README's noise floor). ``widening``
  makes k mean "k standard deviations" honestly: the baseline's own error (``sqrt(1/nights + 1/baseline
  nights)``) and a noise estimated from few nights (Student's t quantile of the same tail over the normal
  one, with the nights' degrees of freedom). Without it, a series whose first nights happened to agree
  would alarm at an ordinary night: on the pure-noise test's 180 nights (5% night-to-night noise) a
  median-absolute-deviation noise without the widening flagged 18, with it 13; this estimate flags 1.

A change that one night cannot show against the noise is judged again over two nights: last night's and
tonight's pooled samples against the nights before last night (the mean of two nights' levels wanders
sqrt(2) times less than one night's, which the widening counts), when each of the two moved the same way
by more than half that threshold.
``judge_two_nights`` does that; ``judge_night`` asks it when ``judge`` says "unchanged", as a farm night does.

``step_night`` says where in a history a change began: the split into two constant levels (of the log
nightly medians) with the least absolute deviation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Night:
    """One night's measurement of a series: its raw samples (any unit, the same every night)."""

    run: str
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))


@dataclass(frozen=True)
class Thresholds:
    p_value: float = 0.002
    min_change: float = 0.05
    k: float = 3.0
    baseline_nights: int = 7
    min_baseline_nights: int = 3
    noise_nights: int = 30
    correction: str = "common"  # what each night's samples are divided by first (hwlab/farm/baseline.py)


@dataclass(frozen=True)
class Verdict:
    """What tonight is against its baseline. ``kind``: "regression" (slower), "improvement", "unchanged", or
    "insufficient" (fewer baseline nights than the thresholds need: nothing can be said yet)."""

    kind: str
    change: float | None  # tonight's median over the baseline's, minus 1
    p: float | None
    threshold: float | None  # the relative change it had to exceed
    noise: float | None  # night-to-night noise of the baseline
    baseline_nights: int

    @property
    def flagged(self) -> bool:
        return self.kind in ("regression", "improvement")


def night_noise(nights: Sequence[Night]) -> float:
    """Standard deviation of the log nightly medians (0 with fewer than 3 nights): how far one night's level
    wanders. Not a robust estimate on purpose: the t widening is calibrated for it, and an odd night only
    makes the threshold wider (fewer alarms), never narrower. The median absolute deviation, robust but
    inefficient, read 0.014 from the first ten nights of a series that wanders by 0.05 (the pure-noise test's,
    seed 1), and alarmed on ordinary nights."""
    logs = [math.log(n.median) for n in nights if n.median > 0]
    if len(logs) < 3:
        return 0.0
    return float(np.std(logs, ddof=1))


def judge(baseline: Sequence[Night], tonight: Night, thresholds: Thresholds = Thresholds()) -> Verdict:
    """Tonight against the last ``baseline_nights`` of ``baseline`` (oldest first, since the last
    acknowledged change)."""
    return _verdict(list(baseline), list(tonight.samples), thresholds, nights=1)


def judge_two_nights(
    baseline: Sequence[Night], last: Night, tonight: Night, thresholds: Thresholds = Thresholds()
) -> Verdict:
    """Last night and tonight together against the nights before last night (oldest first): flagged only
    when their pooled samples pass at the two-night threshold and each night alone moved the same way by
    more than half of it, so one odd night beside an ordinary one is never a change."""
    verdict = _verdict(list(baseline), [*last.samples, *tonight.samples], thresholds, nights=2)
    if verdict.flagged:
        assert verdict.threshold is not None
        base = statistics.median([s for n in list(baseline)[-thresholds.baseline_nights :] for s in n.samples])
        moved = [night.median / base - 1.0 for night in (last, tonight)]
        same_way = moved[0] * moved[1] > 0
        if not same_way or min(abs(m) for m in moved) <= verdict.threshold / 2:
            return Verdict("unchanged", verdict.change, verdict.p, verdict.threshold, verdict.noise,
                           verdict.baseline_nights)  # fmt: skip
    return verdict


def judge_night(history: Sequence[Night], tonight: Night, thresholds: Thresholds = Thresholds()) -> Verdict:
    """What a farm night says of a series: tonight against its history (oldest first) alone, else last night
    and tonight together."""
    nights = list(history)
    alone = judge(nights, tonight, thresholds)
    if alone.flagged or not nights:
        return alone
    together = judge_two_nights(nights[:-1], nights[-1], tonight, thresholds)
    return together if together.flagged else alone


def _verdict(history: list[Night], samples: list[float], thresholds: Thresholds, nights: int) -> Verdict:
    from scipy.stats import mannwhitneyu

    window = history[-thresholds.baseline_nights :]
    if len(window) < thresholds.min_baseline_nights:
        return Verdict("insufficient", None, None, None, None, len(window))
    pooled = [s for night in window for s in night.samples]
    base = float(statistics.median(pooled))
    change = float(statistics.median(samples)) / base - 1.0
    p = float(mannwhitneyu(samples, pooled, alternative="two-sided").pvalue)
    known = history[-thresholds.noise_nights :]
    noise = night_noise(known)
    widening = math.sqrt(1 / nights + 1 / len(window)) * _t_over_normal(thresholds.k, len(known) - 1)
    threshold = max(thresholds.min_change, thresholds.k * noise * widening)
    kind = "unchanged"
    if p < thresholds.p_value and abs(change) > threshold:
        kind = "regression" if change > 0 else "improvement"
    return Verdict(kind, change, p, threshold, noise, len(window))


def _t_over_normal(k: float, df: int) -> float:
    """How much wider Student's t is than the normal at the normal's ``k`` sigma tail, for ``df`` degrees
    of freedom (the nights the noise came from, less one)."""
    from scipy.stats import norm, t

    return float(t.ppf(norm.cdf(k), max(df, 1)) / k) if k > 0 else 1.0


def step_night(nights: Sequence[Night]) -> int | None:
    """Index of the first night of the later level, for the best split of the nightly medians into two
    constant levels (least absolute deviation of their logs); None for fewer than two nights."""
    logs = np.log([n.median for n in nights])
    if len(logs) < 2:
        return None
    best, where = math.inf, None
    for split in range(1, len(logs)):
        before, after = logs[:split], logs[split:]
        cost = float(np.abs(before - np.median(before)).sum() + np.abs(after - np.median(after)).sum())
        if cost < best:
            best, where = cost, split
    return where

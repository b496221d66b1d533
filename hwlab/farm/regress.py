"""Noise-aware regression detection for one series (device, backend, model, metric) night after night.

A change is flagged only when both hold, so a noisy series does not raise false alarms and a quiet one
does not miss small real changes:

- tonight's raw samples differ from the baseline's (the pooled samples of the last ``baseline_nights``
  nights since the last acknowledged change) by a two-sided Mann-Whitney U test at ``p_value`` (0.002, as
  asv uses); with hundreds of samples a night this alone flags changes far below what a rerun moves;
- the relative change of the medians exceeds ``max(min_change, k x noise)``, where ``noise`` is the
  series' measured night-to-night spread: the robust standard deviation of the log ratio between
  consecutive nightly medians of the baseline (the drift a rerun sees; the samples' own spread within a
  night says nothing about it, see the README's noise floor).

``step_night`` says where in a history a change began: the split into two constant levels (of the log
nightly medians) with the least absolute deviation.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MAD_TO_SD = 1.4826  # a normal sample's standard deviation over its median absolute deviation


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
    """Robust standard deviation of the log ratio of consecutive nightly medians (0 with fewer than 3 nights)."""
    logs = [math.log(n.median) for n in nights if n.median > 0]
    if len(logs) < 3:
        return 0.0
    steps = np.diff(logs)
    return float(MAD_TO_SD * np.median(np.abs(steps - np.median(steps))) / math.sqrt(2))


def judge(baseline: Sequence[Night], tonight: Night, thresholds: Thresholds = Thresholds()) -> Verdict:
    """Tonight against the last ``baseline_nights`` of ``baseline`` (oldest first, since the last
    acknowledged change)."""
    from scipy.stats import mannwhitneyu

    window = list(baseline)[-thresholds.baseline_nights :]
    if len(window) < thresholds.min_baseline_nights:
        return Verdict("insufficient", None, None, None, None, len(window))
    pooled = [s for night in window for s in night.samples]
    base = float(statistics.median(pooled))
    change = tonight.median / base - 1.0
    p = float(mannwhitneyu(tonight.samples, pooled, alternative="two-sided").pvalue)
    noise = night_noise(window)
    threshold = max(thresholds.min_change, thresholds.k * noise)
    kind = "unchanged"
    if p < thresholds.p_value and abs(change) > threshold:
        kind = "regression" if change > 0 else "improvement"
    return Verdict(kind, change, p, threshold, noise, len(window))


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

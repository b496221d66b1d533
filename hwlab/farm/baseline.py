"""The nights a verdict compares, and how each night's samples are put on one scale first.

A machine whose speed drifts as a whole moves every series together from one night to the next: on this
project's test machine the common part was about 8% from night to night, and what each series did apart
from it 1.5-5% (``bench/farm_noise.py``). Judged raw, such nights hide every change below about 30%. So a
night's samples are divided by a factor first (``Thresholds.correction``):

- ``common`` (the default): the night's common factor, the median over the plan's series on the device
  and backend of tonight's raw median over that series' baseline level. A change of a few series stands
  out; a change of the whole device (or of every series alike) is divided out of them, and shows instead
  in the ``night-speed`` series, which holds each night's factor (and is judged raw), and in the health
  check's golden model (judged raw). At least ``MIN_COMMON_SERIES`` series with a baseline are needed;
  until then the factor is 1. A confirmation job measures a few unflagged series beside the flagged ones,
  and its samples are divided by that job's own common factor (another moment has another speed).
- ``anchors``: the job's speed factor against the device's reference, from the anchors measured in every
  job. On the test machine an anchor job caught in a slow moment set factors of 1.4-1.6 for nights whose
  models ran at their usual speed, which made the noise larger, not smaller.
- ``none``: raw samples, as timed.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from hwlab.farm.db import History, SeriesKey
from hwlab.farm.regress import Night

CORRECTIONS = ("common", "anchors", "none")
NIGHT_SPEED = "night-speed"  # the series of each night's common factor (model name; metric "factor")
MIN_COMMON_SERIES = 3


def night_speed_key(device: str, backend: str) -> SeriesKey:
    return SeriesKey(device, backend, NIGHT_SPEED, "factor")


def night_factors(history: History, device: str, backend: str, kind: str = "night") -> dict[str, float]:
    """Each run's common factor on the device and backend (runs without one are absent: factor 1), of the
    night's measurement or (``kind="confirm"``) of its confirmation job."""
    rows = history.results(night_speed_key(device, backend), kinds=(kind,))
    return {r["run_id"]: float(r["median"]) for r in rows if r["status"] == "ok" and r["median"]}


def night_of(result: dict[str, Any], correction: str = "none", factors: dict[str, float] | None = None) -> Night:
    """A stored result as a night to judge: its raw samples divided by the night's factor."""
    if correction == "anchors":
        factor = result.get("speed_factor")
    elif correction == "common":
        factor = (factors or {}).get(result["run_id"])
    else:
        factor = None
    samples = result["samples"]
    return Night(result["run_id"], tuple(s / factor for s in samples) if factor else tuple(samples))


def earlier_nights(
    history: History, series: SeriesKey, run_id: str, kind: str = "night", *, correction: str = "none",
    factors: dict[str, float] | None = None,
) -> list[tuple[str, Night]]:  # fmt: skip
    """The series' ok results of runs before ``run_id`` since its baseline began, oldest first, corrected."""
    if correction == "common" and factors is None:
        factors = night_factors(history, series.device, series.backend)
    rows = [r for r in history.results(series, kinds=(kind,)) if r["status"] == "ok" and r["samples"]]
    this = history.run(run_id)
    started = this["started_at"] if this else None
    begin = history.baseline_start(series)
    begin_at = (history.run(begin) or {}).get("started_at") if begin else None
    out = []
    for row in rows:
        if row["run_id"] == run_id or (started is not None and row["run_started_at"] > started):
            continue
        if begin_at is not None and row["run_started_at"] < begin_at:
            continue
        out.append((row["run_id"], night_of(row, correction, factors)))
    return out


def common_factor(
    history: History, device: str, backend: str, run_id: str, models: Sequence[str], baseline_nights: int,
    min_baseline_nights: int, kind: str = "night",
) -> tuple[float | None, list[float]]:  # fmt: skip
    """Tonight's common factor over ``models`` (their ``kind`` results), and the per-series ratios it is the
    median of; None with fewer than ``MIN_COMMON_SERIES`` series that have a baseline."""
    factors = night_factors(history, device, backend)
    ratios = []
    for model in models:
        series = SeriesKey(device, backend, model)
        tonight = [r for r in history.results(series, run_id=run_id, kinds=(kind,))
                   if r["status"] == "ok" and r["raw_median"]]  # fmt: skip
        if not tonight:
            continue
        before = earlier_nights(history, series, run_id, correction="common", factors=factors)[-baseline_nights:]
        if len(before) < min_baseline_nights:
            continue
        ratios.append(tonight[0]["raw_median"] / statistics.median(n.median for _, n in before))
    if len(ratios) < MIN_COMMON_SERIES:
        return None, ratios
    return float(statistics.median(ratios)), ratios

"""Summary statistics of raw latency samples.

Pure functions on sequences of floats, shared by the runner (its stop rule) and
the host (which may recompute a summary from the raw ``samples_us``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Iterable, Sequence

import numpy as np

_SUMMARY_FIELDS = (
    "median",
    "mean",
    "std",
    "p10",
    "p90",
    "q1",
    "q3",
    "iqr",
    "min",
    "max",
    "ci_low",
    "ci_high",
)


@dataclass(frozen=True)
class Summary:
    """Distribution of one model's samples; every value is in the samples' unit.

    ``ci_low``/``ci_high`` bound the median (see :func:`median_ci_ranks`) and
    ``ci_rel`` is the half-width of that interval divided by the median.
    """

    n: int
    median: float
    mean: float
    std: float
    p10: float
    p90: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float
    ci_low: float
    ci_high: float
    ci_rel: float

    def to_json(self, unit: str = "us", ndigits: int = 3) -> dict[str, object]:
        """The protocol's ``summary`` object: ``median_us`` etc., rounded to ``ndigits``.

        ``ci_rel`` is unitless and keeps 6 decimals; an infinite ``ci_rel`` (zero
        median) becomes ``None`` because JSON has no infinity.
        """
        out: dict[str, object] = {"n": self.n}
        for name in _SUMMARY_FIELDS:
            out[f"{name}_{unit}"] = round(getattr(self, name), ndigits)
        out["ci_rel"] = round(self.ci_rel, 6) if math.isfinite(self.ci_rel) else None
        return out

    @classmethod
    def from_json(cls, data: dict[str, object], unit: str = "us") -> Summary:
        """Inverse of :meth:`to_json` (``ci_rel`` ``None`` reads back as infinity)."""
        values = {name: float(data[f"{name}_{unit}"]) for name in _SUMMARY_FIELDS}  # type: ignore[arg-type]
        ci_rel = data.get("ci_rel")
        return cls(n=int(data["n"]), ci_rel=math.inf if ci_rel is None else float(ci_rel), **values)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, float]:
        """Plain field dict (no unit suffix, no rounding)."""
        return asdict(self)


def _as_array(samples: Iterable[float]) -> np.ndarray:
    if isinstance(samples, np.ndarray):
        return samples.astype(float, copy=False)
    return np.asarray(list(samples), dtype=float)


def z_value(confidence: float) -> float:
    """Two-sided standard normal quantile: 1.959964 for ``confidence=0.95``."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def median_ci_ranks(n: int, confidence: float = 0.95) -> tuple[int, int]:
    """1-based ranks of the order statistics that bound the median.

    Distribution-free: the number of samples below the true median is
    Binomial(n, 1/2), approximated by a normal of mean n/2 and sd sqrt(n)/2.
    With z the two-sided normal quantile of ``confidence``::

        lower = floor((n - z * sqrt(n)) / 2)
        upper = ceil(1 + (n + z * sqrt(n)) / 2)

    both clamped to [1, n]. For n = 100 and 95 %: ranks 40 and 61.
    """
    if n < 1:
        raise ValueError("need at least one sample")
    half = z_value(confidence) * math.sqrt(n)
    lower = math.floor((n - half) / 2.0)
    upper = math.ceil(1.0 + (n + half) / 2.0)
    return max(1, min(n, lower)), max(1, min(n, upper))


def median_ci(samples: Iterable[float], confidence: float = 0.95) -> tuple[float, float]:
    """Confidence interval of the median, from the order statistics of :func:`median_ci_ranks`."""
    ordered = np.sort(_as_array(samples))
    lower, upper = median_ci_ranks(len(ordered), confidence)
    return float(ordered[lower - 1]), float(ordered[upper - 1])


def relative_half_width(low: float, high: float, median: float) -> float:
    """Half-width of [low, high] over the median; infinity when the median is not positive."""
    if median > 0:
        return (high - low) / 2.0 / median
    return 0.0 if high == low else math.inf


def median_ci_rel(samples: Sequence[float], confidence: float = 0.95) -> float:
    """``ci_rel`` alone: the cheap check the stop rule makes while sampling."""
    values = _as_array(samples)
    low, high = median_ci(values, confidence)
    return relative_half_width(low, high, float(np.median(values)))


def summarize(samples: Iterable[float], confidence: float = 0.95) -> Summary:
    """Summary of raw samples.

    Quantiles use numpy's default (linear interpolation); ``std`` uses ddof=1 and
    is 0.0 for a single sample so the result stays valid JSON.
    """
    values = _as_array(samples)
    n = int(values.size)
    if n == 0:
        raise ValueError("cannot summarize zero samples")
    p10, q1, median, q3, p90 = (float(v) for v in np.quantile(values, [0.10, 0.25, 0.50, 0.75, 0.90]))
    low, high = median_ci(values, confidence)
    return Summary(
        n=n,
        median=median,
        mean=float(values.mean()),
        std=float(values.std(ddof=1)) if n > 1 else 0.0,
        p10=p10,
        p90=p90,
        q1=q1,
        q3=q3,
        iqr=q3 - q1,
        min=float(values.min()),
        max=float(values.max()),
        ci_low=low,
        ci_high=high,
        ci_rel=relative_half_width(low, high, median),
    )

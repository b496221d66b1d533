"""A model measured over real inputs, call by call: the latency distribution of a dynamic model.

A dynamic model (an early exit, a data-dependent loop) has no one latency: each input takes its own
path. So every timed call is one call on one sample, the samples cycled in order (call j feeds sample
j mod N), and the result is the distribution of those calls and each sample's median. Blocks and
rounds would average different inputs' paths together; the CI rule has no single figure to converge
on. Sampling stops at the end of a whole cycle (every sample visited equally often) once
``stop.min_count`` calls and ``stop.min_time_s`` are reached, else on ``max_count`` or ``max_time``
(mid-cycle, the later samples then visited once less, or not at all).

Clock and call timer are injectable, as in timing.py, so the loop is tested with a simulated timer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .signals import stop_if_signalled
from .timing import Clock, Hook, StopRule, Warmup

SAMPLE_DIGITS = 3


@dataclass(frozen=True)
class CallsMeasurement:
    """Every timed call in order (µs; call j fed sample j mod ``inputs``) and how they were obtained."""

    calls_us: tuple[float, ...]
    inputs: int
    warmup_count: int
    warmup_time_s: float
    sampling_time_s: float
    stop_reason: str  # cycles | max_count | max_time


def measure_calls(
    call: Callable[[], object],
    feed: Callable[[int], object],
    inputs: int,
    warmup: Warmup,
    stop: StopRule,
    clock: Clock = time.perf_counter_ns,
    call_timer: Callable[[], int] | None = None,
    on_sampling_start: Hook | None = None,
    on_sampling_end: Hook | None = None,
) -> CallsMeasurement:
    """Warm up over the samples, then time one call per sample visit until the stop rule holds.

    ``feed(i)`` makes sample i the next call's input; it is never timed. ``call_timer()`` times one call
    in ns (default: ``clock`` around ``call``), e.g. CUDA events. The hooks bracket the sampling, as in
    timing.measure.
    """
    if inputs < 1:
        raise ValueError("need at least one input sample")
    timer = call_timer or (lambda: _time_call(call, clock))
    start = clock()
    count = 0
    warm_ns = warmup.min_time_s * 1e9
    while count < warmup.min_count or clock() - start < warm_ns:
        feed(count % inputs)
        call()
        count += 1
    warmup_time_s = (clock() - start) / 1e9
    if on_sampling_start is not None:
        on_sampling_start()
    try:
        calls, reason, sampling_ns = _sample(timer, feed, inputs, stop, clock)
    finally:
        if on_sampling_end is not None:
            on_sampling_end()
    return CallsMeasurement(tuple(calls), inputs, count, warmup_time_s, sampling_ns / 1e9, reason)


def _time_call(call: Callable[[], object], clock: Clock) -> int:
    start = clock()
    call()
    return clock() - start


def _sample(
    timer: Callable[[], int], feed: Callable[[int], object], inputs: int, stop: StopRule, clock: Clock
) -> tuple[list[float], str, int]:
    calls: list[float] = []
    min_ns, max_ns = stop.min_time_s * 1e9, stop.max_time_s * 1e9
    start = clock()
    while True:
        n = len(calls)
        elapsed = clock() - start
        if n and n % inputs == 0 and n >= stop.min_count and elapsed >= min_ns:
            reason = "cycles"
            break
        if n and n >= stop.max_count:  # at least one call, whatever the rule: a line always has a figure
            reason = "max_count"
            break
        if n and elapsed >= max_ns:
            reason = "max_time"
            break
        feed(n % inputs)
        calls.append(timer() / 1000.0)
        stop_if_signalled()
    return calls, reason, clock() - start


def distribution(calls_us: Sequence[float], inputs: int) -> dict[str, Any]:
    """The result line's ``distribution``: quantiles of every call, and each sample's median (None for a
    sample never visited). ``input_spread_rel`` is the median over samples of their IQR / median: the
    measurement's noise, apart from the spread between inputs, which is the model's (None when no
    sample was visited twice)."""
    values = np.asarray(calls_us, dtype=float)
    p50, p90, p99 = (float(v) for v in np.quantile(values, [0.50, 0.90, 0.99]))
    medians: list[float | None] = []
    spreads = []
    for i in range(inputs):
        visits = values[i::inputs]
        medians.append(round(float(np.median(visits)), SAMPLE_DIGITS) if visits.size else None)
        if visits.size >= 2:
            q1, median, q3 = np.quantile(visits, [0.25, 0.5, 0.75])
            if median > 0:
                spreads.append(float((q3 - q1) / median))
    return {
        "inputs": inputs,
        "calls": int(values.size),
        "p50_us": round(p50, SAMPLE_DIGITS),
        "p90_us": round(p90, SAMPLE_DIGITS),
        "p99_us": round(p99, SAMPLE_DIGITS),
        "min_us": round(float(values.min()), SAMPLE_DIGITS),
        "max_us": round(float(values.max()), SAMPLE_DIGITS),
        "mean_us": round(float(values.mean()), SAMPLE_DIGITS),
        "input_median_us": medians,
        "input_spread_rel": round(float(np.median(spreads)), 6) if spreads else None,
    }

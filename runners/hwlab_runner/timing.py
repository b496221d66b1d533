"""The measurement loop: warm-up, block sizing, then sampling until a stop rule holds.

The clock is injectable (a callable returning integer nanoseconds) so the loop
can be tested with a seeded simulated timer and exact expectations. So is the
block timer: by default a block is timed with the clock around the calls, but a
backend may supply its own (CUDA events, which time the GPU, not the queue).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

from .signals import stop_if_signalled
from .stats import Summary, median_ci_rel, summarize

Clock = Callable[[], int]
BlockTimer = Callable[[int], int]  # calls per block -> elapsed ns of one block
Hook = Callable[[], object]

# A block never grows past this many calls: a callable that takes no measurable
# time (a broken clock, a no-op) must not make block sizing loop forever.
MAX_BLOCK = 1 << 24
# Once n reaches min_count, the CI is recomputed each time n grows by this fraction.
CHECK_GROWTH = 0.10


@dataclass(frozen=True)
class Warmup:
    """Warm-up ends once both ``min_count`` calls and ``min_time_s`` seconds are reached."""

    min_count: int = 10
    min_time_s: float = 0.05


@dataclass(frozen=True)
class StopRule:
    """When to stop sampling.

    Stop on ``"ci"`` once n >= ``min_count``, the sampling time >= ``min_time_s``
    and the relative half-width of the median's CI <= ``ci_rel`` (``None``
    disables this rule); otherwise on ``"max_count"`` or ``"max_time"``.
    """

    min_count: int = 20
    min_time_s: float = 0.2
    max_time_s: float = 3.0
    ci_rel: float | None = 0.02
    confidence: float = 0.95
    max_count: int = 100000


@dataclass(frozen=True)
class Measurement:
    """Raw samples (µs per call) and how they were obtained."""

    samples_us: tuple[float, ...]
    block: int
    warmup_count: int
    warmup_time_s: float
    sampling_time_s: float
    stop_reason: str
    summary: Summary


def warm_up(fn: Callable[[], object], rule: Warmup, clock: Clock = time.perf_counter_ns) -> tuple[int, float]:
    """Call ``fn`` until both minimums are met; return (calls, seconds)."""
    start = clock()
    count = 0
    elapsed = 0
    min_ns = rule.min_time_s * 1e9
    while count < rule.min_count or elapsed < min_ns:
        fn()
        count += 1
        elapsed = clock() - start
    return count, elapsed / 1e9


def time_block(fn: Callable[[], object], block: int, clock: Clock = time.perf_counter_ns) -> int:
    """Nanoseconds taken by ``block`` back-to-back calls of ``fn``."""
    calls = range(block)
    start = clock()
    for _ in calls:
        fn()
    return clock() - start


def size_block(
    fn: Callable[[], object],
    block_min_time_s: float,
    clock: Clock = time.perf_counter_ns,
    block_timer: BlockTimer | None = None,
) -> tuple[int, int]:
    """Double the calls per sample until one block lasts >= ``block_min_time_s``.

    This keeps the timer's own cost negligible for tiny operators. Returns
    (block, elapsed ns of the last block); that last block is a valid sample.
    """
    timer = block_timer or (lambda n: time_block(fn, n, clock))
    block = 1
    min_ns = block_min_time_s * 1e9
    while True:
        elapsed = timer(block)
        if elapsed >= min_ns or block >= MAX_BLOCK:
            return block, elapsed
        block *= 2


def measure(
    fn: Callable[[], object],
    warmup: Warmup,
    stop: StopRule,
    block_min_time_s: float,
    clock: Clock = time.perf_counter_ns,
    block_timer: BlockTimer | None = None,
    on_sampling_start: Hook | None = None,
    on_sampling_end: Hook | None = None,
) -> Measurement:
    """Warm up, size the block, then sample until ``stop`` says enough.

    Each sample is the elapsed time of one block divided by the block size, in
    µs. The block that ended block sizing is the first sample. The CI check
    (a sort) runs when n first reaches ``stop.min_count`` with ``min_time_s``
    reached, then each time n has grown by ~10 %, so long runs stay O(n log n).
    The checks run in this order after each sample: ci, max_count, max_time.

    ``block_timer(block)`` replaces timing a block with ``clock`` (warm-up and
    the stop rule's elapsed time still use ``clock``). ``on_sampling_start``
    runs right after block sizing and ``on_sampling_end`` right after the last
    sample, even when a call fails: a power sampler's window is exactly sampling.
    """
    warmup_count, warmup_time_s = warm_up(fn, warmup, clock)
    timer = block_timer or (lambda n: time_block(fn, n, clock))
    block, first_ns = size_block(fn, block_min_time_s, clock, timer)
    if on_sampling_start is not None:
        on_sampling_start()
    try:
        samples, reason, sampling_ns = _sample(timer, stop, clock, block, first_ns)
    finally:
        if on_sampling_end is not None:
            on_sampling_end()
    return Measurement(
        samples_us=tuple(samples),
        block=block,
        warmup_count=warmup_count,
        warmup_time_s=warmup_time_s,
        sampling_time_s=sampling_ns / 1e9,
        stop_reason=reason,
        summary=summarize(samples, stop.confidence),
    )


def _sample(timer: BlockTimer, stop: StopRule, clock: Clock, block: int, first_ns: int) -> tuple[list[float], str, int]:
    """Samples until a stop rule holds: (samples in µs, stop reason, sampling time in ns)."""
    # Sampling time starts with the block that ended block sizing: it is the first sample.
    start = clock() - first_ns
    samples = [first_ns / block / 1000.0]
    next_check = max(1, stop.min_count)
    min_ns = stop.min_time_s * 1e9
    max_ns = stop.max_time_s * 1e9
    reason = ""
    while True:
        n = len(samples)
        elapsed = clock() - start
        if stop.ci_rel is not None and n >= next_check and elapsed >= min_ns:
            next_check = n + max(1, int(math.ceil(n * CHECK_GROWTH)))
            if median_ci_rel(samples, stop.confidence) <= stop.ci_rel:
                reason = "ci"
                break
        if n >= stop.max_count:
            reason = "max_count"
            break
        if elapsed >= max_ns:
            reason = "max_time"
            break
        samples.append(timer(block) / block / 1000.0)
        stop_if_signalled()
    return samples, reason, clock() - start

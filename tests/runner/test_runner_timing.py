"""The measurement loop against a seeded simulated timer: exact, deterministic expectations."""

from __future__ import annotations

import random

from hwlab_runner import timing
from hwlab_runner.timing import StopRule, Warmup, measure


class SimTimer:
    """A fake clock in integer ns; each call of ``fn`` advances it by a seeded lognormal draw."""

    def __init__(self, seed: int, mean_ns: int, sigma: float) -> None:
        self.rng = random.Random(seed)
        self.now = 0
        self.mean_ns = mean_ns
        self.sigma = sigma
        self.calls = 0

    def clock(self) -> int:
        return self.now

    def fn(self) -> None:
        self.calls += 1
        if self.sigma:
            self.now += max(1, round(self.mean_ns * self.rng.lognormvariate(0.0, self.sigma)))
        else:
            self.now += self.mean_ns


def run(timer: SimTimer, warmup: Warmup, stop: StopRule, block_min_time_s: float) -> timing.Measurement:
    return measure(timer.fn, warmup, stop, block_min_time_s, clock=timer.clock)


def test_stops_on_ci_with_a_quiet_timer():
    t = SimTimer(seed=1, mean_ns=100_000, sigma=0.05)
    m = run(t, Warmup(10, 0.001), StopRule(20, 0.01, 1.0, 0.01, 0.95, 100000), 0.0002)
    assert (len(m.samples_us), m.block, m.stop_reason) == (73, 4, "ci")
    assert m.summary.median == 100.33975
    assert m.summary.n == 73 and m.summary.ci_rel <= 0.01
    assert (m.warmup_count, m.warmup_time_s) == (10, 0.00100671)
    assert m.sampling_time_s >= 0.01
    # Every call is accounted for: warm-up, the doubling blocks 1 and 2, then the samples.
    assert t.calls == 10 + 1 + 2 + 73 * 4


def test_hits_max_time_with_a_very_noisy_timer():
    t = SimTimer(seed=2, mean_ns=100_000, sigma=1.5)
    m = run(t, Warmup(10, 0.001), StopRule(20, 0.01, 0.05, 0.001, 0.95, 100000), 0.0002)
    assert (len(m.samples_us), m.block, m.stop_reason) == (95, 2, "max_time")
    assert m.summary.median == 172.5955
    assert m.summary.ci_rel > 0.001
    assert m.sampling_time_s >= 0.05


def test_block_grows_for_a_fast_call():
    # 50 ns per call: 2048 calls last ~102 µs, 4096 ~205 µs >= 200 µs.
    t = SimTimer(seed=3, mean_ns=50, sigma=0.1)
    m = run(t, Warmup(10, 0.001), StopRule(20, 0.01, 1.0, 0.01, 0.95, 100000), 0.0002)
    assert (len(m.samples_us), m.block, m.stop_reason) == (49, 4096, "ci")
    assert m.summary.median == 0.050251708984375
    assert m.warmup_count == 19894


def test_min_count_is_respected_even_when_the_ci_is_already_tight():
    t = SimTimer(seed=4, mean_ns=1000, sigma=0.0)
    m = run(t, Warmup(0, 0.0), StopRule(50, 0.0, 1.0, 0.01, 0.95, 100000), 0.0)
    assert (len(m.samples_us), m.block, m.stop_reason) == (50, 1, "ci")
    assert m.samples_us == (1.0,) * 50
    assert (m.warmup_count, m.warmup_time_s) == (0, 0.0)


def test_min_time_is_respected():
    t = SimTimer(seed=4, mean_ns=1_000_000, sigma=0.0)
    m = run(t, Warmup(0, 0.0), StopRule(5, 0.1, 1.0, 0.01, 0.95, 100000), 0.0)
    assert (len(m.samples_us), m.stop_reason, m.summary.median) == (100, "ci", 1000.0)
    assert m.sampling_time_s == 0.1


def test_stops_on_max_count_when_the_ci_rule_is_off():
    t = SimTimer(seed=5, mean_ns=1000, sigma=0.3)
    m = run(t, Warmup(3, 0.0), StopRule(5, 0.0, 10.0, None, 0.95, 777), 0.0)
    assert (len(m.samples_us), m.stop_reason, m.summary.median) == (777, "max_count", 0.993)
    assert m.warmup_count == 3


def test_ci_is_checked_on_a_growing_schedule(monkeypatch):
    checked = []

    def never_tight(samples, confidence):
        checked.append(len(samples))
        return 1.0

    monkeypatch.setattr(timing, "median_ci_rel", never_tight)
    t = SimTimer(seed=6, mean_ns=1000, sigma=0.0)
    m = run(t, Warmup(0, 0.0), StopRule(20, 0.0, 10.0, 0.01, 0.95, 100), 0.0)
    assert m.stop_reason == "max_count"
    # First at min_count, then each time n has grown by ~10 % (rounded up, at least 1).
    assert checked == [20, 22, 25, 28, 31, 35, 39, 43, 48, 53, 59, 65, 72, 80, 88, 97]


def test_block_sizing_stops_for_a_call_that_takes_no_time(monkeypatch):
    monkeypatch.setattr(timing, "MAX_BLOCK", 1024)
    t = SimTimer(seed=7, mean_ns=0, sigma=0.0)
    block, elapsed = timing.size_block(t.fn, 0.001, clock=t.clock)
    assert (block, elapsed, t.calls) == (1024, 0, 2047)


def test_real_clock_smoke():
    """The default clock works; only structure is asserted, never a latency."""
    m = measure(lambda: None, Warmup(2, 0.0), StopRule(5, 0.0, 0.05, 0.5, 0.95, 50), 1e-5)
    assert m.stop_reason in {"ci", "max_time", "max_count"}
    assert len(m.samples_us) == m.summary.n >= 1
    assert m.block >= 1

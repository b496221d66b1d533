"""Regression detection on seeded synthetic series: known steps give exactly the expected alerts, noise none."""

from __future__ import annotations

import numpy as np
import pytest

from hwlab.farm.regress import Night, Thresholds, judge, judge_night, judge_two_nights, night_noise, step_night


def series(levels: list[float], drift: float, spread: float = 0.02, n: int = 200, seed: int = 0) -> list[Night]:
    """Nights at the given true levels, each moved by a common night-to-night factor (sd ``drift`` in log)
    and its samples spread around it (sd ``spread`` in log), as this machine's speed drifts."""
    rng = np.random.default_rng(seed)
    nights = []
    for i, level in enumerate(levels):
        night_level = level * np.exp(rng.normal(0.0, drift))
        nights.append(Night(f"run{i}", tuple(night_level * np.exp(rng.normal(0.0, spread, n)))))
    return nights


def verdicts(nights: list[Night]) -> list[str]:
    """Each night from the fourth on, against the nights before it."""
    return [judge(nights[:i], nights[i]).kind for i in range(3, len(nights))]


def test_pure_noise_raises_no_alarm():
    for seed in range(5):
        nights = series([1.0] * 40, drift=0.01, seed=seed)
        assert set(verdicts(nights)) == {"unchanged"}, seed


def test_a_step_is_flagged_on_its_night_and_located_in_the_history():
    nights = series([1.0] * 10 + [1.15] * 5, drift=0.01, seed=1)
    verdict = judge(nights[:10], nights[10])
    assert verdict.kind == "regression" and verdict.p < 0.002
    assert verdict.change == pytest.approx(0.15, abs=0.03) and verdict.threshold == 0.05
    assert step_night(nights) == 10
    faster = series([1.0] * 10 + [0.8] * 3, drift=0.01, seed=2)
    assert judge(faster[:10], faster[10]).kind == "improvement" and step_night(faster) == 10


def test_a_significant_change_below_the_floor_is_not_an_alarm():
    """3% slower with 2000 samples a night: the U test is certain, the change is below max(5%, k x noise)."""
    nights = series([1.0] * 8 + [1.03], drift=0.002, spread=0.01, n=2000, seed=3)
    verdict = judge(nights[:8], nights[8])
    assert verdict.p < 1e-6 and verdict.kind == "unchanged"


def test_a_noisy_series_needs_a_change_beyond_its_own_noise():
    """Nights that swing by 4-9% from one to the next: the threshold is k x that noise, widened for ten
    nights (about 18%), so a 10% step is within what this series does anyway, and 35% is not."""
    swinging = [1.0, 1.05, 0.96, 1.04, 0.95, 1.05, 0.97, 1.03, 0.96, 1.04]
    small = series([*swinging, 1.10], drift=0.0, seed=4)
    verdict = judge(small[:10], small[10])
    assert verdict.p < 0.002 and verdict.kind == "unchanged"
    assert verdict.noise == pytest.approx(night_noise(small[:10])) and verdict.threshold > 3 * verdict.noise > 0.1
    large = series([*swinging, 1.35], drift=0.0, seed=4)
    assert judge(large[:10], large[10]).kind == "regression"


def test_too_few_nights_say_nothing():
    nights = series([1.0, 1.0, 2.0], drift=0.0)
    assert judge(nights[:2], nights[2]).kind == "insufficient"
    assert judge(nights[:2], nights[2], Thresholds(min_baseline_nights=2)).kind == "regression"
    assert step_night(nights[:1]) is None


def two_night_verdicts(nights: list[Night]) -> list[str]:
    """What a farm night says (the night alone, else the last two nights together), from the fifth night."""
    return [judge_night(nights[:i], nights[i]).kind for i in range(4, len(nights))]


def test_a_step_below_one_nights_threshold_is_caught_on_its_second_night():
    """Nights about 4% apart (a night's threshold about 14%): a 15% step that its first night shows as 9%
    passes unseen, and is flagged on its second night from the two nights together."""
    nights = series([1.0] * 20 + [1.15] * 2, drift=0.04, seed=7)
    first = judge(nights[:20], nights[20])
    assert first.kind == "unchanged" and first.change < first.threshold
    two = judge_two_nights(nights[:20], nights[20], nights[21])
    assert two.kind == "regression" and two.threshold < first.threshold


def test_pure_noise_of_a_noisy_series_alarms_on_fewer_than_one_night_in_a_hundred():
    """Nights 5% apart, judged alone and two by two as a farm night does: at most 1 flag in 180 nights.
    (The median absolute deviation of consecutive nights' differences as the noise flagged 13.)"""
    flagged = [v for seed in range(5) for v in two_night_verdicts(series([1.0] * 40, drift=0.05, seed=seed))]
    assert len(flagged) == 180 and sum(v != "unchanged" for v in flagged) <= 1

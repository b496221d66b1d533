"""Summary statistics on small hand-made samples, with exact expectations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hwlab_runner.stats import Summary, median_ci, median_ci_ranks, summarize, z_value


def test_z_value_matches_the_normal_table():
    assert z_value(0.95) == pytest.approx(1.959964, abs=1e-6)
    assert z_value(0.99) == pytest.approx(2.575829, abs=1e-6)
    with pytest.raises(ValueError):
        z_value(1.0)


@pytest.mark.parametrize(
    ("n", "confidence", "ranks"),
    [
        (1, 0.95, (1, 1)),
        (5, 0.95, (1, 5)),
        (10, 0.95, (1, 10)),
        (20, 0.95, (5, 16)),
        (100, 0.95, (40, 61)),
        (100, 0.99, (37, 64)),
        (1000, 0.95, (469, 532)),
    ],
)
def test_median_ci_ranks(n, confidence, ranks):
    assert median_ci_ranks(n, confidence) == ranks


def test_median_ci_ranks_needs_a_sample():
    with pytest.raises(ValueError):
        median_ci_ranks(0)


def test_summary_of_five_unsorted_samples():
    s = summarize([5.0, 1.0, 4.0, 2.0, 3.0])
    assert s.n == 5
    assert (s.median, s.mean, s.min, s.max) == (3.0, 3.0, 1.0, 5.0)
    assert s.std == pytest.approx(math.sqrt(2.5), rel=1e-15)
    # numpy's linear quantiles: position (n - 1) * q in the sorted samples.
    assert (s.p10, s.q1, s.q3, s.p90) == pytest.approx((1.4, 2.0, 4.0, 4.6), rel=1e-15)
    assert s.iqr == 2.0
    assert (s.ci_low, s.ci_high) == (1.0, 5.0)
    assert s.ci_rel == pytest.approx(2.0 / 3.0, rel=1e-15)


def test_summary_of_one_to_a_hundred():
    s = summarize(np.arange(1, 101, dtype=float))
    assert s.median == 50.5
    assert (s.ci_low, s.ci_high) == (40.0, 61.0)  # order statistics 40 and 61
    assert s.ci_rel == pytest.approx(10.5 / 50.5, rel=1e-15)
    assert (s.p10, s.p90, s.q1, s.q3) == pytest.approx((10.9, 90.1, 25.75, 75.25), rel=1e-15)


def test_single_sample_has_zero_spread():
    s = summarize([7.0])
    assert (s.n, s.median, s.std, s.ci_low, s.ci_high, s.ci_rel) == (1, 7.0, 0.0, 7.0, 7.0, 0.0)


def test_no_samples_is_an_error():
    with pytest.raises(ValueError):
        summarize([])


def test_median_ci_takes_any_iterable():
    assert median_ci(iter([3.0, 1.0, 2.0])) == (1.0, 3.0)


def test_json_round_trip_uses_protocol_names():
    s = summarize([10.0, 11.0, 12.0, 13.0])
    data = s.to_json()
    assert set(data) == {
        "n",
        "median_us",
        "mean_us",
        "std_us",
        "p10_us",
        "p90_us",
        "q1_us",
        "q3_us",
        "iqr_us",
        "min_us",
        "max_us",
        "ci_low_us",
        "ci_high_us",
        "ci_rel",
    }
    assert data["median_us"] == 11.5
    assert data["std_us"] == 1.291
    back = Summary.from_json(data)
    assert back.n == 4 and back.median == 11.5 and back.ci_rel == data["ci_rel"]


def test_zero_median_gives_null_ci_rel():
    s = summarize([0.0, 0.0, 0.0, 1.0, 2.0])
    assert s.ci_rel == math.inf
    assert s.to_json()["ci_rel"] is None

"""A winner measured over its budget is replaced by the best candidate whose corrected prediction fits.

The device here is a simulated one whose every model runs a fixed factor slower than predicted (a
predictor that is optimistic by that much), so every figure is exact.
"""

from __future__ import annotations

import random

import pytest

from hwlab.errors import BudgetUnmet
from hwlab.search.budget import MAX_TRIES, measured_winner, next_candidate
from hwlab.search.evolution import Candidate, SearchResult
from hwlab.search.space import SearchSpace, arch_key
from hwlab.validate import Validation

SPACE = SearchSpace.of(input_size=16)
BUDGET = 1.0
# (predicted ms, supernet accuracy): the most accurate sit at the budget's edge, as a search leaves them.
CANDIDATES = [(0.99, 0.60), (0.985, 0.59), (0.97, 0.58), (0.95, 0.55), (0.90, 0.50), (0.80, 0.40)]


def result() -> SearchResult:
    archs = [SPACE.sample(random.Random(i)) for i in range(len(CANDIDATES))]
    assert len({arch_key(a) for a in archs}) == len(archs)
    evaluated = [Candidate(a, ms, 0, 0, acc) for a, (ms, acc) in zip(archs, CANDIDATES, strict=True)]
    return SearchResult("evolution", evaluated[0], evaluated, 0, 0, 0.0, 0.0)


def device(slower: float, budget: float | None = BUDGET):  # type: ignore[no-untyped-def]
    measured: list[Candidate] = []

    def measure(candidate: Candidate) -> Validation:
        measured.append(candidate)
        ms = candidate.latency_ms * slower
        return Validation("sim", "onnxruntime", ms, candidate.latency_ms, budget, "t", "k", None, False)

    return measure, measured


def test_a_winner_within_budget_stands_after_one_measurement() -> None:
    measure, measured = device(1.005)
    done = measured_winner(result(), BUDGET, measure)
    assert done.winner is measured[0] and len(done.tries) == 1 and done.note() is None


def test_a_winner_over_budget_is_replaced_by_the_best_that_fits_once_corrected() -> None:
    """3% optimistic: 0.99 measures 1.0197; scaled by 1.03, 0.985 would measure 1.0146 and 0.97 0.9991, so
    0.97 (accuracy 0.58) is measured next, and holds."""
    measure, measured = device(1.03)
    done = measured_winner(result(), BUDGET, measure)
    assert [c.latency_ms for c in measured] == [0.99, 0.97]
    assert done.winner.latency_ms == 0.97 and done.validation.within_budget
    assert [v.measured_ms for v in done.tries] == pytest.approx([0.99 * 1.03, 0.97 * 1.03])
    assert "first winner measured 1.020 ms, over the 1 ms budget" in str(done.note())


def test_measurements_are_bounded_and_a_budget_nothing_meets_says_so() -> None:
    measure, measured = device(1.5)  # nothing measured fits: every corrected prediction is over
    done = measured_winner(result(), BUDGET, measure)
    assert len(measured) == 1 and not done.validation.within_budget  # no candidate fits after correction
    assert next_candidate(result(), BUDGET, 1.5, set()) is None
    drifting = iter([1.02, 1.04, 1.08, 1.2])  # the device looks slower at every measurement

    def slower_each_time(candidate: Candidate) -> Validation:
        ms = candidate.latency_ms * next(drifting)
        return Validation("sim", "onnxruntime", ms, candidate.latency_ms, BUDGET, "t", "k", None, False)

    done = measured_winner(result(), BUDGET, slower_each_time)
    assert len(done.tries) == MAX_TRIES and not done.validation.within_budget


def test_without_a_latency_budget_the_first_measurement_stands() -> None:
    measure, measured = device(2.0, budget=None)
    done = measured_winner(result(), None, measure)
    assert len(measured) == 1 and done.validation.within_budget is None


def test_when_no_scored_candidate_fits_the_search_runs_again_under_the_corrected_budget() -> None:
    """50% optimistic: no scored candidate fits 1.0 / 1.5 once corrected, so the search runs again under that
    budget; its winner (0.6 ms predicted, 0.9 measured) holds."""
    measure, measured = device(1.5)
    asked: list[float] = []
    again = Candidate(SPACE.sample(random.Random(99)), 0.6, 0, 0, 0.3)

    def search_again(budget_ms: float) -> SearchResult:
        asked.append(budget_ms)
        return SearchResult("evolution", again, [again], 0, 0, 0.0, 0.0)

    done = measured_winner(result(), BUDGET, measure, search_again=search_again)
    assert asked == [pytest.approx(BUDGET / 1.5)]
    assert measured[-1] is again and done.winner is again and done.validation.within_budget
    assert len(done.tries) == 2


def test_a_search_again_that_meets_nothing_leaves_the_last_measurement() -> None:
    measure, measured = device(1.5)

    def nothing_meets(budget_ms: float) -> SearchResult:
        raise BudgetUnmet(f"nothing under {budget_ms:.3f} ms")

    done = measured_winner(result(), BUDGET, measure, search_again=nothing_meets)
    assert len(measured) == 1 and not done.validation.within_budget

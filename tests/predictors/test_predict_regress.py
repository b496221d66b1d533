"""Kernel regressors: exported ensembles match scikit-learn, cross-validation chooses deterministically."""

from __future__ import annotations

import numpy as np
import pytest

from hwlab.predictors.kernels import FEATURES
from hwlab.predictors.regress import (
    CANDIDATES,
    FAMILIES,
    Domain,
    TreeEnsemble,
    build_model,
    export_ensemble,
    fit_kernel_regressor,
    fit_work,
    rmspe,
    within,
    work_ms,
)

# Small versions of each family, so the tests stay fast.
QUICK = (
    {"name": "rf-20", "family": "random_forest", "n_estimators": 20, "max_depth": None, "min_samples_leaf": 1},
    {"name": "et-20", "family": "extra_trees", "n_estimators": 20, "max_depth": 8, "min_samples_leaf": 2},
    {"name": "gb-40", "family": "gradient_boosting", "n_estimators": 40, "learning_rate": 0.1, "max_depth": 3,
     "subsample": 0.8},
)  # fmt: skip


def linear_kernels(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Conv-like rows whose latency is a·flops + b with 3% multiplicative noise."""
    rng = np.random.default_rng(seed)
    X = np.zeros((n, len(FEATURES)))
    col = {name: i for i, name in enumerate(FEATURES)}
    X[:, col["h"]] = X[:, col["w"]] = rng.choice([7, 14, 28, 56, 112], n)
    X[:, col["cin"]] = rng.choice([16, 32, 64, 128, 256], n)
    X[:, col["cout"]] = rng.choice([16, 32, 64, 128, 256], n)
    X[:, col["kernel"]] = rng.choice([1, 3, 5], n)
    X[:, col["stride"]] = 1
    X[:, col["groups"]] = 1
    X[:, col["flops"]] = 2 * X[:, col["h"]] ** 2 * X[:, col["cin"]] * X[:, col["cout"]] * X[:, col["kernel"]] ** 2
    y = (2e-8 * X[:, col["flops"]] + 0.05) * rng.normal(1.0, 0.03, n)
    return X, y


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("n_features", [1, 5])
def test_exported_ensemble_matches_sklearn(family: str, n_features: int) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(0, 3, (200, n_features))
    y = np.sin(X[:, 0]) + X[:, -1] ** 2 + rng.normal(0, 0.1, 200)
    cand = next(c for c in QUICK if c["family"] == family)
    model = build_model(cand, seed=3).fit(X, y)
    ensemble = export_ensemble(model)
    assert ensemble.combine == ("boost" if family == "gradient_boosting" else "mean")
    assert ensemble.n_trees == cand["n_estimators"]
    # Rows never seen in training, and values float32 cannot hold exactly (the trees round them).
    fresh = rng.normal(0, 4, (500, n_features))
    np.testing.assert_allclose(ensemble.predict(fresh), model.predict(fresh), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ensemble.predict(X), model.predict(X), rtol=1e-9, atol=1e-12)


def test_ensemble_refuses_arrays_that_are_not_trees() -> None:
    model = build_model(QUICK[0], seed=0).fit(np.arange(20.0)[:, None], np.arange(20.0))
    good = export_ensemble(model)
    arrays = good.to_arrays()
    scalars = {"combine": "mean", "n_features": 1, "base": 0.0, "learning_rate": 1.0}
    TreeEnsemble(**scalars, **arrays)  # the untouched arrays are accepted

    loop = {k: np.array(v) for k, v in arrays.items()}
    loop["children_left"][0] = 0  # the root would be its own child
    with pytest.raises(ValueError, match="not after its parent"):
        TreeEnsemble(**scalars, **loop)
    far = {k: np.array(v) for k, v in arrays.items()}
    far["feature"][0] = 7
    with pytest.raises(ValueError, match="feature outside"):
        TreeEnsemble(**scalars, **far)
    with pytest.raises(ValueError, match="offsets"):
        TreeEnsemble(**scalars, **{**arrays, "offsets": np.array([0, 3])})
    with pytest.raises(ValueError, match="combine"):
        TreeEnsemble(**{**scalars, "combine": "median"}, **arrays)


def test_metrics() -> None:
    true = np.array([1.0, 2.0, 4.0, 10.0])
    pred = np.array([1.04, 2.0, 3.0, 10.7])  # off by 4%, 0, 25%, 7%
    assert rmspe(pred, true) == pytest.approx(np.sqrt((0.04**2 + 0 + 0.25**2 + 0.07**2) / 4))
    assert within(pred, true, 0.10) == 0.75
    assert within(pred, true, 0.05) == 0.5


def test_candidate_table_is_small_and_buildable() -> None:
    assert 1 <= len(CANDIDATES) <= 8
    assert len({c["name"] for c in CANDIDATES}) == len(CANDIDATES)
    assert {c["family"] for c in CANDIDATES} == set(FAMILIES)
    for cand in CANDIDATES:
        build_model(cand)  # every row names valid hyper-parameters


def test_cross_validation_chooses_deterministically() -> None:
    X, y = linear_kernels(120)
    first = fit_kernel_regressor(X, y, seed=7, candidates=QUICK)
    again = fit_kernel_regressor(X, y, seed=7, candidates=QUICK)
    assert first.candidate == again.candidate
    assert first.trials == again.trials
    assert first.cv == "5-fold" and first.rows == 120
    assert first.score == min(first.trials, key=lambda s: s.rmspe)
    np.testing.assert_array_equal(first.predict_ms(X), again.predict_ms(X))
    assert all(np.isfinite(t.rmspe) for t in first.trials)
    assert first.score.rmspe < 0.2
    assert first.trained_with["scikit-learn"]


def test_full_table_fits_an_easy_kernel_well() -> None:
    X, y = linear_kernels(60, seed=2)
    fitted = fit_kernel_regressor(X, y, seed=0)
    assert [t.name for t in fitted.trials] == [c["name"] for c in CANDIDATES]
    assert fitted.candidate in CANDIDATES
    assert np.isfinite(fitted.score.rmspe) and fitted.score.rmspe < 0.2
    assert fitted.score.within_10 > 0.5
    # Refit on all rows: the training rows themselves are predicted closely.
    assert rmspe(fitted.predict_ms(X), y) < 0.1


def test_few_rows_use_the_simplest_candidate_scored_leave_one_out() -> None:
    X, y = linear_kernels(6)
    fitted = fit_kernel_regressor(X, y, seed=0)
    assert fitted.candidate == CANDIDATES[0]
    assert fitted.cv == "leave-one-out"
    assert len(fitted.trials) == 1 and np.isfinite(fitted.score.rmspe)


@pytest.mark.parametrize(
    ("X", "y", "match"),
    [
        (np.ones((5, 2)), np.array([1.0, 2, 0, 1, 1]), "row 2 is 0.0"),
        (np.ones((5, 2)), np.array([1.0, 2, np.nan, 1, 1]), "finite and > 0"),
        (-np.ones((5, 2)), np.ones(5), "finite and >= 0"),
        (np.ones((5, 2)), np.ones(4), "shape"),
        (np.ones((1, 2)), np.ones(1), "at least 2"),
    ],
)
def test_bad_rows_are_refused(X: np.ndarray, y: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_kernel_regressor(X, y)


def test_a_kernel_larger_than_any_measured_is_predicted_by_its_work_line() -> None:
    """Trees alone predict a kernel ten times larger than the largest measured like the largest measured;
    with the work line a latency proportional to flops carries on proportionally."""
    X, y = linear_kernels(200, seed=4)
    fitted = fit_kernel_regressor(X, y, candidates=QUICK[:1])
    col = FEATURES.index("flops")
    big = X[np.argmax(X[:, col])].copy()
    big[col] *= 10
    truth = 2e-8 * big[col] + 0.05
    assert fitted.predict_ms(big[None, :])[0] == pytest.approx(truth, rel=0.15)
    assert fitted.work[1] > 0  # the flops term carries it


def test_the_work_line_never_goes_negative_and_is_constant_without_work() -> None:
    X = np.zeros((12, len(FEATURES)))
    y = np.linspace(0.01, 0.02, 12)
    work = fit_work(X, y)
    assert all(c >= 0 for c in work) and work_ms(work, X).min() > 0


def test_the_domain_is_the_range_of_every_feature_fitted_on() -> None:
    X, y = linear_kernels(60, seed=5)
    fitted = fit_kernel_regressor(X, y, candidates=QUICK[:1])
    assert fitted.domain is not None
    assert fitted.domain.low == tuple(X.min(axis=0)) and fitted.domain.high == tuple(X.max(axis=0))
    assert not fitted.domain.outside(X).any()
    wider = X[:2].copy()
    wider[0, FEATURES.index("cin")] = X[:, FEATURES.index("cin")].max() * 2
    assert fitted.domain.outside(wider).tolist() == [True, False]
    assert Domain(fitted.domain.low, fitted.domain.high) == fitted.domain

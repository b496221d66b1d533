"""Per-kernel latency regressors: choose a tree ensemble by cross-validation, export it as plain arrays.

Why tree ensembles only: a fitted forest or boosted ensemble is nothing but arrays (split feature,
threshold, children, leaf value), so it is stored as ``.npz`` and evaluated with numpy alone. A pickled
scikit-learn model would tie a predictor to the library release that wrote it and run code when loaded.

Scales: latencies span orders of magnitude and what matters is the relative error, so regressors fit
``log(latency_ms)`` (a squared error in log space is close to a squared relative error) and see features
through ``log1p`` (split thresholds then fall at geometric, not arithmetic, midpoints between sizes; ``log1p``
keeps zero-valued features finite).

Trees do not extrapolate: alone, they predict a kernel larger than any measured one like the largest
measured ones (a 224x224 VGG conv came out at 0.4x its time). So each kernel type first gets a *work line*,
``ms = c0 + c1 * flops + c2 * bytes moved + c3 * params`` with non-negative coefficients fitted on relative
error, and the trees fit the log of what the line misses (``log(ms / line)``). Inside the measured range the
trees correct the line wherever it is wrong; outside it the line carries the prediction at the throughput of
the nearest measured kernels, which is what a larger conv does.

A fitted regressor also keeps its *domain*: the lowest and highest value of every feature it was fitted
on, so a prediction can say how much of its time comes from kernels outside what was measured.

scikit-learn is imported inside the fitting functions only, so loading and predicting never import it.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

import numpy as np

# Model families and hyper-parameters tried per kernel type, as data. The first row is the simplest: it is
# used, unchosen, when a kernel type has too few rows for cross-validation to choose anything.
CANDIDATES: tuple[dict[str, Any], ...] = (
    {"name": "rf-100", "family": "random_forest", "n_estimators": 100, "max_depth": None, "min_samples_leaf": 1},
    {"name": "rf-200-d12", "family": "random_forest", "n_estimators": 200, "max_depth": 12, "min_samples_leaf": 1},
    {"name": "rf-300-d20-l2", "family": "random_forest", "n_estimators": 300, "max_depth": 20, "min_samples_leaf": 2},
    {"name": "et-200", "family": "extra_trees", "n_estimators": 200, "max_depth": None, "min_samples_leaf": 1},
    {"name": "et-300-d20-l2", "family": "extra_trees", "n_estimators": 300, "max_depth": 20, "min_samples_leaf": 2},
    {"name": "gb-200-lr0.1-d3", "family": "gradient_boosting", "n_estimators": 200, "learning_rate": 0.1,
     "max_depth": 3, "subsample": 1.0},
    {"name": "gb-300-lr0.05-d4-s0.8", "family": "gradient_boosting", "n_estimators": 300, "learning_rate": 0.05,
     "max_depth": 4, "subsample": 0.8},
    {"name": "gb-400-lr0.03-d5-s0.7", "family": "gradient_boosting", "n_estimators": 400, "learning_rate": 0.03,
     "max_depth": 5, "subsample": 0.7},
)  # fmt: skip

FAMILIES = ("random_forest", "extra_trees", "gradient_boosting")

# The work line's terms, computed from FEATURES (see ``work_terms``).
WORK_TERMS = ("1", "flops", "bytes_in+bytes_out", "params")
# Recorded with every predictor, so a loader can refuse transforms it does not know.
TRANSFORM = {"features": "log1p", "target": "log-ratio-to-work", "work": list(WORK_TERMS)}
# What predictors written before the work line record: their trees fit log(ms) itself (a line of 1 ms).
PLAIN_TRANSFORM = {"features": "log1p", "target": "log"}
PLAIN_WORK = (1.0, 0.0, 0.0, 0.0)
# A line never below this (ms): a kernel with no flops, bytes or params still takes time.
_MIN_WORK_MS = 1e-6

# Below this many rows, choosing among candidates would fit the noise of a few folds.
MIN_ROWS_TO_CHOOSE = 10

# Bound on (trees x rows) cells held at once while predicting.
_CELLS = 1 << 22


def rmspe(pred: np.ndarray, true: np.ndarray) -> float:
    """Root mean squared relative error: the error a latency budget feels, whatever the kernel's size."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return float(np.sqrt(np.mean(((pred - true) / true) ** 2)))


def within(pred: np.ndarray, true: np.ndarray, tol: float = 0.10) -> float:
    """Share of predictions within ±tol (relative) of the truth."""
    pred, true = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(pred - true) <= tol * np.abs(true)))


def transform_features(X: np.ndarray) -> np.ndarray:
    """Features as regressors see them (``log1p``); kernel features are sizes and counts, never negative."""
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"features must be a 2-D array (rows x features), got shape {X.shape}")
    bad = ~np.isfinite(X) | (X < 0)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        raise ValueError(f"feature {col} of row {row} is {float(X[row, col])}; features must be finite and >= 0")
    return np.log1p(X)


@dataclass(frozen=True, eq=False)
class TreeEnsemble:
    """A forest or boosted ensemble as plain arrays: all trees' nodes concatenated, ``offsets`` marks each tree.

    Node arrays follow scikit-learn's tree layout, with children indexed within their own tree and -1 at
    leaves. ``combine`` says how tree outputs add up: ``"mean"`` (forests) or ``"boost"`` (``base`` plus
    ``learning_rate`` times each tree, in order, as gradient boosting does).
    """

    combine: str
    n_features: int
    base: float
    learning_rate: float
    offsets: np.ndarray
    children_left: np.ndarray
    children_right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    value: np.ndarray
    _left: np.ndarray = field(init=False, repr=False)
    _right: np.ndarray = field(init=False, repr=False)
    _feature: np.ndarray = field(init=False, repr=False)
    _steps: int = field(init=False, repr=False)

    ARRAYS = ("offsets", "children_left", "children_right", "feature", "threshold", "value")

    def __post_init__(self) -> None:
        ints = ("offsets", "children_left", "children_right", "feature")
        for name in self.ARRAYS:
            raw = np.asarray(getattr(self, name))
            kind = "iu" if name in ints else "fiu"
            if raw.ndim != 1 or raw.dtype.kind not in kind:
                raise ValueError(f"array {name!r} must be 1-D {'integer' if name in ints else 'numeric'}, "
                                 f"got {raw.dtype} with shape {raw.shape}")  # fmt: skip
            arr = np.array(raw, dtype=np.int64 if name in ints else np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)
        if self.combine not in ("mean", "boost"):
            raise ValueError(f"combine must be 'mean' or 'boost', got {self.combine!r}")
        if int(self.n_features) < 1 or not np.isfinite([self.base, self.learning_rate]).all():
            raise ValueError("n_features must be >= 1 and base, learning_rate finite")
        self._check_structure()

    def _check_structure(self) -> None:
        """Refuse arrays that are not a set of trees, so prediction can neither index out of range nor loop."""
        offsets, n_nodes = self.offsets, len(self.children_left)
        sizes = np.diff(offsets)
        if len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != n_nodes or (sizes < 1).any():
            raise ValueError("offsets must start at 0, grow by at least 1 per tree and end at the node count")
        for name in self.ARRAYS[2:]:
            if len(getattr(self, name)) != n_nodes:
                raise ValueError(f"array {name!r} has {len(getattr(self, name))} nodes, children_left has {n_nodes}")
        tree = np.repeat(np.arange(len(sizes)), sizes)
        local = np.arange(n_nodes) - offsets[tree]
        left, right = self.children_left, self.children_right
        leaf = left == -1
        if not np.array_equal(leaf, right == -1):
            raise ValueError("a node has exactly one child")
        inner = ~leaf
        # A child always comes after its parent within its tree: descents end, and never leave the tree.
        for child in (left, right):
            if ((child[inner] <= local[inner]) | (child[inner] >= sizes[tree][inner])).any():
                raise ValueError("a child index points outside its tree or not after its parent")
        if ((self.feature[inner] < 0) | (self.feature[inner] >= self.n_features)).any():
            raise ValueError(f"a split uses a feature outside 0..{self.n_features - 1}")
        if np.isnan(self.threshold[inner]).any() or not np.isfinite(self.value[leaf]).all():
            raise ValueError("a threshold is NaN or a leaf value is not finite")
        start = offsets[tree]
        object.__setattr__(self, "_left", np.where(inner, left + start, -1))
        object.__setattr__(self, "_right", np.where(inner, right + start, -1))
        object.__setattr__(self, "_feature", np.where(inner, self.feature, 0))
        object.__setattr__(self, "_steps", int(sizes.max()))

    @property
    def n_trees(self) -> int:
        return len(self.offsets) - 1

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in self.ARRAYS}

    def predict(self, X: np.ndarray) -> np.ndarray:
        """The ensemble's output for each row, computed as scikit-learn would, without it."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features, got shape {X.shape}")
        # scikit-learn's trees compare float32 features with float64 thresholds: round the same way.
        X = X.astype(np.float32).astype(np.float64)
        out = np.empty(len(X))
        chunk = max(1, _CELLS // self.n_trees)
        for start in range(0, len(X), chunk):
            out[start : start + chunk] = self._predict_rows(X[start : start + chunk])
        return out

    def _predict_rows(self, X: np.ndarray) -> np.ndarray:
        """Descend every tree for every row at once: one numpy step per tree level."""
        rows = np.arange(len(X))
        node = np.repeat(self.offsets[:-1, None], len(X), axis=1)
        for _ in range(self._steps):
            left = self._left[node]
            inner = left >= 0
            if not inner.any():
                break
            go_left = X[rows, self._feature[node]] <= self.threshold[node]
            node = np.where(inner, np.where(go_left, left, self._right[node]), node)
        leaves = self.value[node]
        if self.combine == "mean":
            return leaves.sum(axis=0) / self.n_trees
        out = np.full(len(X), self.base)
        for tree_out in leaves:  # in order, as boosting adds its stages
            out += self.learning_rate * tree_out
        return out


def work_terms(X: np.ndarray) -> np.ndarray:
    """The work line's terms (WORK_TERMS) of each row of raw features (FEATURES order)."""
    from hwlab.predictors.kernels import FEATURES

    X = np.asarray(X, dtype=np.float64)
    at = {name: i for i, name in enumerate(FEATURES)}
    return np.stack(
        [np.ones(len(X)), X[:, at["flops"]], X[:, at["bytes_in"]] + X[:, at["bytes_out"]], X[:, at["params"]]], axis=1
    )


def work_ms(work: np.ndarray | tuple[float, ...], X: np.ndarray) -> np.ndarray:
    """The work line's latency (ms) of each row of raw features."""
    return np.maximum(work_terms(X) @ np.asarray(work, dtype=np.float64), _MIN_WORK_MS)


def fit_work(X: np.ndarray, y_ms: np.ndarray) -> tuple[float, ...]:
    """Non-negative coefficients of the work line, least squares on relative error (every kernel counts alike)."""
    from scipy.optimize import nnls

    terms = work_terms(X)
    scale = np.maximum(terms.max(axis=0), 1e-30)  # columns of one magnitude: nnls converges
    coef, _ = nnls(terms / scale / y_ms[:, None], np.ones(len(y_ms)), maxiter=50 * terms.shape[1])
    coef = coef / scale
    if not np.isfinite(coef).all() or not (terms @ coef > 0).all():  # degenerate rows: a constant line
        coef = np.array([float(np.exp(np.mean(np.log(y_ms)))), 0.0, 0.0, 0.0])
    return tuple(float(c) for c in coef)


def predict_ms(ensemble: TreeEnsemble, X: np.ndarray, work: tuple[float, ...] | np.ndarray = PLAIN_WORK) -> np.ndarray:
    """Latency (ms) of each row of raw kernel features, undoing the fit's transforms."""
    trees = ensemble.predict(transform_features(X))  # first: it checks the rows' shape
    return work_ms(work, X) * np.exp(trees)


@dataclass(frozen=True)
class Domain:
    """The range of every feature a regressor was fitted on (FEATURES order)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    @classmethod
    def of(cls, X: np.ndarray) -> Domain:
        X = np.asarray(X, dtype=np.float64)
        return cls(tuple(float(v) for v in X.min(axis=0)), tuple(float(v) for v in X.max(axis=0)))

    def outside(self, X: np.ndarray) -> np.ndarray:
        """Whether each row has a feature below or above what was fitted on."""
        X = np.asarray(X, dtype=np.float64)
        return ((np.asarray(self.low) > X) | (np.asarray(self.high) < X)).any(axis=1)

    def to_json(self) -> dict[str, list[float]]:
        return {"low": list(self.low), "high": list(self.high)}


@dataclass(frozen=True)
class Score:
    """Cross-validated accuracy of one candidate on one kernel type (out-of-fold predictions, pooled)."""

    name: str
    rmspe: float
    within_10: float


@dataclass(frozen=True, eq=False)
class FittedRegressor:
    """One kernel type's regressor: the exported ensemble, the candidate chosen and why."""

    ensemble: TreeEnsemble
    candidate: dict[str, Any]
    score: Score
    trials: tuple[Score, ...]
    cv: str
    rows: int
    seed: int
    trained_with: dict[str, str]
    work: tuple[float, ...] = PLAIN_WORK
    domain: Domain | None = None

    def predict_ms(self, X: np.ndarray) -> np.ndarray:
        return predict_ms(self.ensemble, X, self.work)


def build_model(candidate: dict[str, Any], seed: int = 0) -> Any:
    """An unfitted scikit-learn regressor from a row of the candidate table."""
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

    params = {k: v for k, v in candidate.items() if k not in ("name", "family")}
    family = candidate.get("family")
    # One job: on a few hundred rows joblib's threads cost more than they save (1.7x slower on 2 cores).
    if family == "random_forest":
        return RandomForestRegressor(**params, random_state=seed, n_jobs=1)
    if family == "extra_trees":
        return ExtraTreesRegressor(**params, random_state=seed, n_jobs=1)
    if family == "gradient_boosting":
        return GradientBoostingRegressor(**params, random_state=seed)
    raise ValueError(f"candidate {candidate.get('name')!r} has unknown family {family!r}; known: {FAMILIES}")


def export_ensemble(model: Any) -> TreeEnsemble:
    """The arrays of a fitted RandomForest, ExtraTrees or GradientBoosting regressor."""
    from sklearn.ensemble import ExtraTreesRegressor, GradientBoostingRegressor, RandomForestRegressor

    if isinstance(model, RandomForestRegressor | ExtraTreesRegressor):
        trees, combine, base, rate = [e.tree_ for e in model.estimators_], "mean", 0.0, 1.0
    elif isinstance(model, GradientBoostingRegressor):
        trees, combine, rate = [e.tree_ for e in model.estimators_[:, 0]], "boost", float(model.learning_rate)
        zero = np.zeros((1, model.n_features_in_))
        base = 0.0 if isinstance(model.init_, str) else float(np.ravel(model.init_.predict(zero))[0])
    else:
        raise TypeError(f"cannot export {type(model).__name__}: only RandomForest, ExtraTrees, GradientBoosting")
    if any(t.value.shape[1:] != (1, 1) for t in trees):
        raise TypeError("only single-output regressors can be exported")
    return TreeEnsemble(
        combine=combine,
        n_features=int(model.n_features_in_),
        base=base,
        learning_rate=rate,
        offsets=np.concatenate([[0], np.cumsum([t.node_count for t in trees])]),
        children_left=np.concatenate([t.children_left for t in trees]),
        children_right=np.concatenate([t.children_right for t in trees]),
        feature=np.concatenate([t.feature for t in trees]),
        threshold=np.concatenate([t.threshold for t in trees]),
        value=np.concatenate([t.value[:, 0, 0] for t in trees]),
    )


def _check_rows(X: np.ndarray, y_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X, y_ms = np.asarray(X, dtype=np.float64), np.asarray(y_ms, dtype=np.float64)
    if y_ms.ndim != 1 or X.ndim != 2 or len(X) != len(y_ms):
        raise ValueError(f"need X of shape (rows, features) and y of shape (rows,), got {X.shape} and {y_ms.shape}")
    if len(y_ms) < 2:
        raise ValueError(f"need at least 2 measured rows to fit and score a regressor, got {len(y_ms)}")
    bad = ~np.isfinite(y_ms) | (y_ms <= 0)
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"latency of row {row} is {float(y_ms[row])} ms; latencies must be finite and > 0")
    return X, y_ms


def _versions() -> dict[str, str]:
    import sklearn

    return {"python": platform.python_version(), "numpy": np.__version__, "scikit-learn": sklearn.__version__}


def fit_kernel_regressor(
    X: np.ndarray,
    y_ms: np.ndarray,
    *,
    seed: int = 0,
    folds: int = 5,
    candidates: tuple[dict[str, Any], ...] = CANDIDATES,
) -> FittedRegressor:
    """Choose the candidate with the lowest cross-validated RMSPE, refit it on all rows, export it.

    Folds are shuffled with ``seed`` and shared by all candidates; ties go to the earlier table row, so a
    seed always yields the same choice. Scores come from the exported ensembles, i.e. from exactly what a
    loaded predictor computes. With fewer than ``MIN_ROWS_TO_CHOOSE`` rows the first (simplest) candidate is
    used unchosen, and scored by leave-one-out.
    """
    from sklearn.model_selection import KFold

    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    if not candidates:
        raise ValueError("no candidates to choose from")
    X, y_ms = _check_rows(X, y_ms)
    Xt, logs = transform_features(X), np.log(y_ms)
    work = fit_work(X, y_ms)  # on all rows: a line of four non-negative terms hardly overfits a fold
    line = work_ms(work, X)
    yt = logs - np.log(line)
    if len(yt) < MIN_ROWS_TO_CHOOSE:
        pool, splitter, cv = candidates[:1], KFold(n_splits=len(yt)), "leave-one-out"
    else:
        k = min(folds, len(yt))
        pool, splitter, cv = candidates, KFold(n_splits=k, shuffle=True, random_state=seed), f"{k}-fold"
    splits = list(splitter.split(Xt))
    trials = []
    for cand in pool:
        pred = np.empty_like(yt)
        for train, test in splits:
            model = build_model(cand, seed).fit(Xt[train], yt[train])
            pred[test] = export_ensemble(model).predict(Xt[test])
        ms = line * np.exp(pred)
        trials.append(Score(str(cand["name"]), rmspe(ms, y_ms), within(ms, y_ms, 0.10)))
    best = min(range(len(trials)), key=lambda i: trials[i].rmspe)
    ensemble = export_ensemble(build_model(pool[best], seed).fit(Xt, yt))
    return FittedRegressor(
        ensemble=ensemble,
        candidate=dict(pool[best]),
        score=trials[best],
        trials=tuple(trials),
        cv=cv,
        rows=len(yt),
        seed=seed,
        trained_with=_versions(),
        work=work,
        domain=Domain.of(X),
    )

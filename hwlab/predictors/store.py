"""Predictors on disk: JSON plus plain arrays, loaded without running code from the files.

A predictor is a folder ``predictors/<device>/<backend>/`` holding

* ``predictor.json``: format version, writing hwlab version, library versions used for training, features
  and transforms, fusion rules, per kernel type its chosen candidate, arrays file (with sha256) and how to
  combine its trees, its work line and domain (regress.py), an accuracy report, and the caller's meta
  (training tables and their hashes);
* one ``<kernel type>.<hash>.npz`` per kernel type with the ensemble's arrays.

Why not pickle: a pickled model runs code when loaded and breaks on the next scikit-learn release. Arrays
are read with ``allow_pickle=False``; a pickle found where a predictor's file should be (or beside them)
is refused, never opened. Loading imports neither scikit-learn nor joblib.

Saving writes the arrays under fresh names first and ``predictor.json`` last, each via a temporary file and
``os.replace``: the JSON is the commit point, so a crash leaves the old predictor or the new one, never half.
Files the new JSON no longer names are removed afterwards. One writer per folder at a time.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwlab import __version__, jsonfile
from hwlab.errors import PredictorError
from hwlab.npzfile import ArrayFileProblem, read_npz
from hwlab.predictors.kernels import FEATURES, FusionRules
from hwlab.predictors.regress import FAMILIES as REGRESSOR_FAMILIES
from hwlab.predictors.regress import (
    PLAIN_TRANSFORM,
    PLAIN_WORK,
    TRANSFORM,
    WORK_TERMS,
    Domain,
    FittedRegressor,
    TreeEnsemble,
    predict_ms,
)

FORMAT_VERSION = 1
INDEX = "predictor.json"
KERNEL_TYPE = re.compile(r"[a-z0-9]+(\+[a-z0-9]+)*")  # categories joined by '+'
CANDIDATE = re.compile(r"[A-Za-z0-9_.-]{0,64}")  # a regressor's name, e.g. extra_trees-200
PICKLE_SUFFIXES = (".pkl", ".pickle", ".joblib")


def _looks_pickled(head: bytes) -> bool:
    """Pickle protocols 2 and up start with PROTO (0x80) and the protocol number."""
    return len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync_dir(folder: Path) -> None:
    """Make the renames themselves durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _npz_bytes(arrays: Mapping[str, np.ndarray]) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _safe_name(kernel_type: str) -> str:
    return re.sub(r"[^A-Za-z0-9+._-]", "_", kernel_type).strip(".") or "kernel"


def _finite_or_none(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


def save_predictor(
    folder: Path | str,
    regressors: Mapping[str, FittedRegressor],
    rules: FusionRules,
    meta: Mapping[str, Any],
    *,
    features: Sequence[str] = FEATURES,
) -> Path:
    """Write a predictor folder (see the module docstring) and return the path of its ``predictor.json``."""
    folder = Path(folder)
    if not regressors:
        raise PredictorError("no kernel regressors to save", hint="fit at least one kernel type")
    for kernel_type, reg in regressors.items():
        if reg.ensemble.n_features != len(features):
            raise PredictorError(
                f"kernel type {kernel_type!r} was fitted on {reg.ensemble.n_features} features, "
                f"the predictor declares {len(features)}",
                hint="pass the feature names the regressors were trained with",
            )
    try:
        meta_json = json.loads(json.dumps(dict(meta), allow_nan=False))
    except (TypeError, ValueError) as err:
        raise PredictorError(
            f"meta cannot be stored as JSON ({err})", hint="pass strings, numbers, lists, dicts"
        ) from None
    folder.mkdir(parents=True, exist_ok=True)
    kernels: dict[str, Any] = {}
    accuracy: dict[str, Any] = {}
    used: set[str] = set()
    for kernel_type in sorted(regressors):
        reg = regressors[kernel_type]
        data = _npz_bytes(reg.ensemble.to_arrays())
        digest = hashlib.sha256(data).hexdigest()
        name = f"{_safe_name(kernel_type)}.{digest[:12]}.npz"
        while name in used:
            name = f"_{name}"
        used.add(name)
        _write_atomic(folder / name, data)
        ens = reg.ensemble
        kernels[kernel_type] = {
            "file": name,
            "sha256": digest,
            "combine": ens.combine,
            "n_trees": ens.n_trees,
            "n_features": ens.n_features,
            "base": ens.base,
            "learning_rate": ens.learning_rate,
            "candidate": reg.candidate,
            "seed": reg.seed,
            "work": list(reg.work),
        }
        if reg.domain is not None:
            kernels[kernel_type]["domain"] = reg.domain.to_json()
        accuracy[kernel_type] = {
            "rows": reg.rows,
            "cv": reg.cv,
            "rmspe": _finite_or_none(reg.score.rmspe),
            "within_10": _finite_or_none(reg.score.within_10),
            "candidates": [
                {"name": t.name, "rmspe": _finite_or_none(t.rmspe), "within_10": _finite_or_none(t.within_10)}
                for t in reg.trials
            ],
        }
    # Versions at fit time (python, numpy, scikit-learn); kernel types fitted apart may list several.
    libraries = {
        lib: ", ".join(sorted({reg.trained_with.get(lib, "?") for reg in regressors.values()}))
        for lib in ("python", "numpy", "scikit-learn")
    }
    index = {
        "format": FORMAT_VERSION,
        "hwlab_version": __version__,
        "created": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "libraries": libraries,
        "features": list(features),
        "transform": dict(TRANSFORM),
        "kernel_types": sorted(regressors),
        "kernels": kernels,
        "accuracy": accuracy,
        "rules": rules.to_json(),
        "meta": meta_json,
    }
    text = json.dumps(index, indent=2, sort_keys=True, allow_nan=False) + "\n"
    _write_atomic(folder / INDEX, text.encode())
    _fsync_dir(folder)
    for stale in folder.glob("*.npz"):
        if stale.name not in used:
            stale.unlink(missing_ok=True)
    return folder / INDEX


# -- loading ---------------------------------------------------------------------------------------------------

_REWRITE = "retrain the predictor (`hwlab` writes this file; do not edit it by hand)"

_TOP = {
    "format": int, "hwlab_version": str, "created": str, "libraries": dict, "features": list, "transform": dict,
    "kernel_types": list, "kernels": dict, "accuracy": dict, "rules": dict, "meta": dict,
}  # fmt: skip
_ACCURACY = {"rows": int, "rmspe": (int, float), "within_10": (int, float)}
_KERNEL = {
    "file": str, "sha256": str, "combine": str, "n_trees": int, "n_features": int, "base": (int, float),
    "learning_rate": (int, float), "candidate": dict,
}  # fmt: skip


def _check_optional_numbers(where: str, data: dict[str, Any], keys: Sequence[str]) -> None:
    for key in keys:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise PredictorError(f"{where}: {key!r} is {value!r}, not a number", hint=_REWRITE)


def _check_candidate(where: str, candidate: Any) -> None:
    """The regressor's hyper-parameters, as regress.CANDIDATES writes them (recorded, shown, never executed)."""
    _check_fields(f"{where}: candidate", candidate, {"name": str, "family": str})
    if not CANDIDATE.fullmatch(candidate["name"]) or candidate["family"] not in REGRESSOR_FAMILIES:
        raise PredictorError(
            f"{where}: candidate {candidate['name']!r} of family {candidate['family']!r} is not a regressor hwlab"
            f" fits ({', '.join(REGRESSOR_FAMILIES)})",
            hint=_REWRITE,
        )
    for key in ("n_estimators", "max_depth", "min_samples_leaf"):
        value = candidate.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise PredictorError(f"{where}: candidate {key!r} is {value!r}, not a count >= 1", hint=_REWRITE)
    _check_optional_numbers(f"{where}: candidate", candidate, ("learning_rate", "subsample"))


def _check_fields(where: str, data: Any, spec: Mapping[str, type | tuple[type, ...]]) -> None:
    if not isinstance(data, dict):
        raise PredictorError(f"{where} must be a JSON object, got {type(data).__name__}", hint=_REWRITE)
    for key, kind in spec.items():
        if key not in data:
            raise PredictorError(f"{where} lacks the field {key!r}", hint=_REWRITE)
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise PredictorError(f"{where}: field {key!r} has the wrong type ({type(value).__name__})", hint=_REWRITE)


def _refuse_pickles(folder: Path) -> None:
    """A pickle in a predictor folder means someone expects it to be used: say why it will not be."""
    for entry in sorted(folder.iterdir()):
        if not entry.is_file():
            continue
        with open(entry, "rb") as fh:
            head = fh.read(2)
        if entry.suffix.lower() in PICKLE_SUFFIXES or _looks_pickled(head):
            raise PredictorError(
                f"{entry} is a pickle; hwlab never unpickles predictor files (loading a pickle runs its code)",
                hint=f"remove {entry.name} from {folder}, and retrain to get a predictor stored as JSON + .npz",
            )


def _read_index(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise PredictorError(f"no predictor at {path.parent} ({INDEX} is missing)", hint="train one first") from None
    except OSError as err:  # a folder, no permission
        raise PredictorError(f"{path} cannot be read ({err.strerror})", hint=_REWRITE) from None
    try:
        data = jsonfile.loads(raw)
    except (UnicodeDecodeError, ValueError) as err:
        raise PredictorError(f"{path} is not valid JSON ({err})", hint=_REWRITE) from None
    if not isinstance(data, dict):
        raise PredictorError(f"{path} must hold a JSON object", hint=_REWRITE)
    fmt = data.get("format")
    if isinstance(fmt, bool) or not isinstance(fmt, int) or fmt < 1:
        raise PredictorError(f"{path} has no valid format version (got {fmt!r})", hint=_REWRITE)
    if fmt > FORMAT_VERSION:
        writer = data.get("hwlab_version", "an unknown version")
        raise PredictorError(
            f"{path} has format {fmt}, written by hwlab {writer}; this hwlab ({__version__}) reads formats up to "
            f"{FORMAT_VERSION}",
            hint=f"upgrade hwlab to {writer} or newer (pip install -U hwlab)",
        )
    _check_fields(str(path), data, _TOP)
    for name, version in data["libraries"].items():
        if not isinstance(version, str):
            raise PredictorError(f"{path}: the version of library {name!r} is not text", hint=_REWRITE)
    for kernel_type in [*data["kernel_types"], *data["kernels"], *data["accuracy"]]:
        if not isinstance(kernel_type, str) or not KERNEL_TYPE.fullmatch(kernel_type):
            raise PredictorError(f"{path}: {kernel_type!r} is not a kernel type", hint=_REWRITE)
    if data["features"] != list(FEATURES):
        raise PredictorError(
            f"{path}: the predictor takes the features {data['features']}, this hwlab computes {list(FEATURES)}",
            hint="retrain the predictor with this hwlab",
        )
    for kernel_type, acc in data["accuracy"].items():
        where = f"{path}: accuracy[{kernel_type!r}]"
        _check_fields(where, acc, _ACCURACY)
        trials = acc.get("candidates", [])
        if not isinstance(trials, list):
            raise PredictorError(f"{where}: 'candidates' is not a list", hint=_REWRITE)
        for trial in trials:
            _check_fields(f"{where}: a candidate", trial, {"name": str})
            _check_optional_numbers(f"{where}: candidate", trial, ("rmspe", "within_10"))
    for kernel_type, entry in data["kernels"].items():
        where = f"{path}: kernels[{kernel_type!r}]"
        _check_fields(where, entry, _KERNEL)
        _check_candidate(where, entry["candidate"])
        if "seed" in entry and (isinstance(entry["seed"], bool) or not isinstance(entry["seed"], int)):
            raise PredictorError(f"{where}: 'seed' is not a whole number", hint=_REWRITE)
    if not isinstance(data["meta"].get("device", ""), str) or not isinstance(data["meta"].get("backend", ""), str):
        raise PredictorError(f"{path}: meta device and backend must be names", hint=_REWRITE)
    return data


def _load_ensemble(folder: Path, kernel_type: str, entry: dict[str, Any]) -> TreeEnsemble:
    where = f"kernel type {kernel_type!r}"
    name = entry["file"]
    if Path(name).name != name or name.startswith(".") or not name.endswith(".npz"):
        raise PredictorError(f"{where}: arrays file {name!r} is not a plain .npz file name", hint=_REWRITE)
    path = folder / name
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise PredictorError(
            f"{where}: its arrays file {name} is missing from {folder}; the predictor is incomplete",
            hint="restore the file or retrain the predictor",
        ) from None
    except OSError as err:
        raise PredictorError(f"{where}: {path} cannot be read ({err.strerror})", hint=_REWRITE) from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise PredictorError(
            f"{where}: {name} changed since the predictor was saved (sha256 differs)", hint="restore it or retrain"
        )
    if not data.startswith(b"PK"):
        raise PredictorError(f"{where}: {name} is not an .npz archive", hint="restore it or retrain")
    try:
        arrays = read_npz(data)
    except ArrayFileProblem as err:
        raise PredictorError(f"{where}: {name} {err}", hint="retrain the predictor") from None
    extra = set(arrays) - set(TreeEnsemble.ARRAYS)
    if extra:
        raise PredictorError(f"{where}: {name} holds unexpected members {sorted(extra)}", hint=_REWRITE)
    lacking = [key for key in TreeEnsemble.ARRAYS if key not in arrays]
    if lacking:
        raise PredictorError(f"{where}: {name} lacks the array {lacking[0]!r}", hint=_REWRITE)
    try:
        ensemble = TreeEnsemble(
            combine=entry["combine"],
            n_features=entry["n_features"],
            base=float(entry["base"]),
            learning_rate=float(entry["learning_rate"]),
            **arrays,
        )
    except ValueError as err:
        raise PredictorError(f"{where}: {name} is not a valid tree ensemble ({err})", hint=_REWRITE) from None
    if ensemble.n_trees != entry["n_trees"]:
        raise PredictorError(f"{where}: {name} holds {ensemble.n_trees} trees, JSON says {entry['n_trees']}")
    return ensemble


@dataclass(frozen=True, eq=False)
class LoadedPredictor:
    """A predictor read back from disk: per kernel type, latency (ms) from raw kernel features."""

    folder: Path
    rules: FusionRules
    meta: dict[str, Any]
    features: tuple[str, ...]
    trained_with: dict[str, str]
    hwlab_version: str
    created: str
    candidates: dict[str, dict[str, Any]]
    accuracy: dict[str, Any]
    ensembles: Mapping[str, TreeEnsemble]
    works: Mapping[str, tuple[float, ...]]
    domains: Mapping[str, Domain | None]

    @property
    def kernel_types(self) -> tuple[str, ...]:
        return tuple(sorted(self.ensembles))

    def predict(self, kernel_type: str, X: np.ndarray) -> np.ndarray:
        """Latency (ms) of each row of features (in ``self.features`` order); one row may be 1-D."""
        ensemble = self.ensembles.get(kernel_type)
        if ensemble is None:
            raise PredictorError(
                f"the predictor at {self.folder} has no regressor for kernel type {kernel_type!r}; "
                f"known: {', '.join(self.kernel_types)}",
                hint="profile kernels of this type and retrain, or check the fusion rules that produced it",
            )
        X = np.asarray(X, dtype=np.float64)
        try:
            return predict_ms(ensemble, X[None, :] if X.ndim == 1 else X, self.works[kernel_type])
        except ValueError as err:
            raise PredictorError(f"kernel type {kernel_type!r}: {err}", hint=f"features are {self.features}") from None

    def outside(self, kernel_type: str, X: np.ndarray) -> np.ndarray | None:
        """Whether each row lies outside the features its type was fitted on (None: the predictor predates
        domains)."""
        domain = self.domains.get(kernel_type)
        X = np.asarray(X, dtype=np.float64)
        return None if domain is None else domain.outside(X[None, :] if X.ndim == 1 else X)

    def to_json(self) -> dict[str, Any]:
        """What ``hwlab predictors show --json`` prints: provenance, per-type accuracy, rules, overhead."""
        return {
            "folder": str(self.folder),
            "device": self.meta.get("device"),
            "hwlab_version": self.hwlab_version,
            "created": self.created,
            "trained_with": self.trained_with,
            "kernel_types": {
                kt: {"regressor": self.candidates[kt].get("name"), **self.accuracy.get(kt, {})}
                for kt in self.kernel_types
            },
            "rules": self.rules.to_json(),
            "overhead": self.meta.get("overhead"),
        }

    def summary(self) -> str:
        """A few lines for a terminal: what was trained, with which libraries, how accurate."""
        libs = ", ".join(f"{k} {v}" for k, v in sorted(self.trained_with.items()))
        lines = [f"predictor {self.folder} (hwlab {self.hwlab_version}, {self.created}; trained with {libs})"]
        for kt in self.kernel_types:
            acc = self.accuracy.get(kt, {})
            err, hit = acc.get("rmspe"), acc.get("within_10")
            scored = all(isinstance(v, int | float) for v in (err, hit))
            score = f"RMSPE {err:.3f}, within ±10% {hit:.0%}" if scored else "no score"
            name = self.candidates[kt].get("name", "?")
            lines.append(f"  {kt:<16} {name:<24} rows {acc.get('rows')}, {acc.get('cv')} {score}")
        return "\n".join(lines)


def load_predictor(folder: Path | str) -> LoadedPredictor:
    """Read and validate a predictor folder; needs numpy only, whatever scikit-learn trained it."""
    folder = Path(folder)
    if not folder.is_dir():
        raise PredictorError(f"no predictor folder at {folder}", hint="train a predictor for this device first")
    _refuse_pickles(folder)
    path = folder / INDEX
    data = _read_index(path)
    if data["transform"] not in (TRANSFORM, PLAIN_TRANSFORM):
        raise PredictorError(f"{path}: unknown transforms {data['transform']}", hint="upgrade hwlab or retrain")
    plain = data["transform"] == PLAIN_TRANSFORM  # written before work lines: trees alone
    kinds, kernels = data["kernel_types"], data["kernels"]
    missing = [kt for kt in kinds if kt not in kernels]
    if missing or set(kernels) - set(kinds):
        raise PredictorError(
            f"{path}: kernel_types and kernels disagree (listed without an entry: {missing}, "
            f"entries not listed: {sorted(set(kernels) - set(kinds))})",
            hint=_REWRITE,
        )
    features = tuple(str(f) for f in data["features"])
    ensembles, works, domains = {}, {}, {}
    for kt in kinds:
        _check_fields(f"{path}: kernels[{kt!r}]", kernels[kt], _KERNEL)
        ensembles[kt] = _load_ensemble(folder, kt, kernels[kt])
        works[kt] = PLAIN_WORK if plain else _work(f"{path}: kernels[{kt!r}]", kernels[kt].get("work"))
        domains[kt] = _domain(f"{path}: kernels[{kt!r}]", kernels[kt].get("domain"), len(features))
        if ensembles[kt].n_features != len(features):
            raise PredictorError(f"{path}: kernel type {kt!r} takes {ensembles[kt].n_features} features, "
                                 f"the predictor lists {len(features)}", hint=_REWRITE)  # fmt: skip
    try:
        rules = FusionRules.from_json(data["rules"])
    except (KeyError, TypeError, ValueError) as err:
        raise PredictorError(f"{path}: fusion rules are invalid ({err!r})", hint=_REWRITE) from None
    return LoadedPredictor(
        folder=folder,
        rules=rules,
        meta=data["meta"],
        features=features,
        trained_with={str(k): str(v) for k, v in data["libraries"].items()},
        hwlab_version=data["hwlab_version"],
        created=data["created"],
        candidates={kt: kernels[kt]["candidate"] for kt in kinds},
        accuracy=data["accuracy"],
        ensembles=ensembles,
        works=works,
        domains=domains,
    )


def _work(where: str, work: Any) -> tuple[float, ...]:
    if (
        not isinstance(work, list)
        or len(work) != len(WORK_TERMS)
        or not all(isinstance(c, int | float) and not isinstance(c, bool) and 0 <= c < float("inf") for c in work)
    ):
        raise PredictorError(f"{where}: 'work' must be {len(WORK_TERMS)} finite numbers >= 0", hint=_REWRITE)
    return tuple(float(c) for c in work)


def _domain(where: str, domain: Any, features: int) -> Domain | None:
    """A kernel type's fitted feature ranges; None when the predictor predates them."""
    if domain is None:
        return None
    ok = isinstance(domain, dict) and set(domain) == {"low", "high"} and all(
        isinstance(domain[k], list) and len(domain[k]) == features
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in domain[k])
        for k in ("low", "high")
    )  # fmt: skip
    if not ok:
        raise PredictorError(f"{where}: 'domain' must hold 'low' and 'high', {features} numbers each", hint=_REWRITE)
    return Domain(tuple(float(v) for v in domain["low"]), tuple(float(v) for v in domain["high"]))

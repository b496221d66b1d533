"""Predictor folders: round trip, loading without scikit-learn, pickles refused unopened, damage reported."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hwlab.errors import PredictorError
from hwlab.predictors import store
from hwlab.predictors.kernels import FEATURES, FusionEvidence, FusionRules
from hwlab.predictors.regress import FittedRegressor, fit_kernel_regressor
from hwlab.predictors.store import INDEX, load_predictor, save_predictor

RF = {"name": "rf-20", "family": "random_forest", "n_estimators": 20, "max_depth": None, "min_samples_leaf": 1}
GB = {"name": "gb-30", "family": "gradient_boosting", "n_estimators": 30, "learning_rate": 0.1, "max_depth": 3,
      "subsample": 1.0}  # fmt: skip
RULES = FusionRules.from_evidence(
    [FusionEvidence("conv", "relu", 1.0, 0.4, 1.02), FusionEvidence("add", "relu", 0.3, 0.3, 0.6)]
)
META = {"tables": [{"name": "local/onnxruntime/spos", "sha256": "ab" * 32}], "device": "local"}


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.integers(1, 64, (n, len(FEATURES))).astype(np.float64)
    X[:, FEATURES.index("flops")] = rng.uniform(1e5, 1e9, n)
    return X, 1e-8 * X[:, FEATURES.index("flops")] + 0.02


@pytest.fixture(scope="module")
def regressors() -> dict[str, FittedRegressor]:
    X, y = rows(40, 0)
    return {
        "conv+relu": fit_kernel_regressor(X, y, candidates=(RF,)),
        "fc": fit_kernel_regressor(X, 2 * y, candidates=(GB,)),
    }


@pytest.fixture()
def saved(tmp_path: Path, regressors: dict[str, FittedRegressor]) -> Path:
    folder = tmp_path / "predictors" / "local" / "onnxruntime"
    save_predictor(folder, regressors, RULES, META)
    return folder


def edit_index(folder: Path, change: Any) -> None:
    data = json.loads((folder / INDEX).read_text())
    change(data)
    (folder / INDEX).write_text(json.dumps(data))


def test_round_trip_predicts_identically(saved: Path, regressors: dict[str, FittedRegressor]) -> None:
    loaded = load_predictor(saved)
    assert loaded.kernel_types == ("conv+relu", "fc")
    X, _ = rows(25, 1)
    for kernel_type, fitted in regressors.items():
        np.testing.assert_array_equal(loaded.predict(kernel_type, X), fitted.predict_ms(X))
    assert loaded.predict("fc", X[0]).shape == (1,)
    assert loaded.rules == RULES
    assert loaded.meta == META
    assert loaded.candidates == {"conv+relu": RF, "fc": GB}
    assert loaded.accuracy["fc"]["rmspe"] == regressors["fc"].score.rmspe
    assert loaded.trained_with == regressors["fc"].trained_with
    assert loaded.features == FEATURES

    index = json.loads((saved / INDEX).read_text())
    assert set(index) == {"format", "hwlab_version", "created", "libraries", "features", "transform",
                          "kernel_types", "kernels", "accuracy", "rules", "meta"}  # fmt: skip
    assert index["kernels"]["fc"]["combine"] == "boost" and index["kernels"]["conv+relu"]["combine"] == "mean"
    assert sorted(p.name for p in saved.iterdir()) == sorted([INDEX, *(k["file"] for k in index["kernels"].values())])
    with np.load(saved / index["kernels"]["fc"]["file"], allow_pickle=False) as npz:
        assert sorted(npz.files) == sorted(["offsets", "children_left", "children_right", "feature", "threshold",
                                            "value"])  # fmt: skip


def test_loads_and_predicts_without_scikit_learn(saved: Path, regressors: dict[str, FittedRegressor]) -> None:
    edit_index(saved, lambda d: d["libraries"].update({"scikit-learn": "1.2.0"}))  # trained by another release
    script = textwrap.dedent(
        f"""
        import json, sys
        sys.modules["sklearn"] = None  # any import of scikit-learn (or joblib) now fails
        sys.modules["joblib"] = None
        from hwlab.predictors.store import load_predictor
        p = load_predictor({str(saved)!r})
        print(p.summary())
        print(json.dumps(p.predict("conv+relu", json.loads(sys.argv[1])).tolist()))
        """
    )
    X, _ = rows(5, 2)
    out = subprocess.run(
        [sys.executable, "-c", script, json.dumps(X.tolist())], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert "scikit-learn 1.2.0" in lines[0]
    np.testing.assert_array_equal(json.loads(lines[-1]), regressors["conv+relu"].predict_ms(X))


class OpensAFile:
    """Unpickling this creates ``path``: proof, if the file appears, that a loader unpickled it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def test_the_pickle_payload_is_live(tmp_path: Path) -> None:
    """Guards the next test: the payload it plants really would create its marker if unpickled."""
    marker = tmp_path / "control"
    pickle.loads(pickle.dumps(OpensAFile(marker))).close()
    assert marker.exists()


@pytest.mark.parametrize("where", ["npz member", "npz file", "pkl beside", "json", "json protocol 0"])
def test_foreign_pickles_are_refused_unopened(saved: Path, tmp_path: Path, where: str) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(OpensAFile(marker))
    index = json.loads((saved / INDEX).read_text())
    npz_name = index["kernels"]["fc"]["file"]
    match = "pickle"
    if where.startswith("npz"):
        if where == "npz member":
            with np.load(saved / npz_name) as npz:
                arrays = {k: npz[k] for k in npz.files}
            arrays["value"] = np.array([OpensAFile(marker)], dtype=object)
            buf = io.BytesIO()
            np.savez(buf, **arrays)
            payload = buf.getvalue()
        (saved / npz_name).write_bytes(payload)
        edit_index(saved, lambda d: d["kernels"]["fc"].update({"sha256": store.hashlib.sha256(payload).hexdigest()}))
    elif where == "pkl beside":
        (saved / "predictor.pkl").write_bytes(payload)
    elif where == "json":
        (saved / INDEX).write_bytes(payload)
    else:
        (saved / INDEX).write_bytes(pickle.dumps(OpensAFile(marker), protocol=0))
        match = "not valid JSON"
    with pytest.raises(PredictorError, match=match):
        load_predictor(saved)
    assert not marker.exists()


def test_a_future_format_asks_for_an_upgrade(saved: Path) -> None:
    edit_index(saved, lambda d: d.update({"format": store.FORMAT_VERSION + 1, "hwlab_version": "9.1.0"}))
    with pytest.raises(PredictorError, match=r"written by hwlab 9\.1\.0.*\n.*upgrade hwlab to 9\.1\.0"):
        load_predictor(saved)


def test_a_missing_arrays_file_names_its_kernel_type(saved: Path) -> None:
    index = json.loads((saved / INDEX).read_text())
    (saved / index["kernels"]["fc"]["file"]).unlink()
    with pytest.raises(PredictorError, match=r"kernel type 'fc': its arrays file fc\.\w+\.npz is missing"):
        load_predictor(saved)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda d: d.pop("rules"), "lacks the field 'rules'"),
        (lambda d: d["kernels"]["fc"].update({"file": "../fc.npz"}), "not a plain .npz file name"),
        (lambda d: d["kernels"]["fc"].update({"sha256": "0" * 64}), "changed since"),
        (lambda d: d["kernels"]["fc"].update({"n_trees": "30"}), "'n_trees' has the wrong type"),
        (lambda d: d["kernel_types"].append("dwconv"), "disagree"),
        (lambda d: d.update({"format": "1"}), "no valid format version"),
    ],
)
def test_damaged_index_is_reported(saved: Path, change: Any, match: str) -> None:
    edit_index(saved, change)
    with pytest.raises(PredictorError, match=match):
        load_predictor(saved)


def test_unknown_kernel_type_and_bad_features(saved: Path) -> None:
    loaded = load_predictor(saved)
    with pytest.raises(PredictorError, match=r"'dwconv'; known: conv\+relu, fc"):
        loaded.predict("dwconv", np.ones(len(FEATURES)))
    with pytest.raises(PredictorError, match="must be finite and >= 0"):
        loaded.predict("fc", -np.ones(len(FEATURES)))
    with pytest.raises(PredictorError, match="expected rows of 11 features"):
        loaded.predict("fc", np.ones(3))


def test_a_crash_mid_save_keeps_the_old_predictor(
    saved: Path, regressors: dict[str, FittedRegressor], monkeypatch: pytest.MonkeyPatch
) -> None:
    X, _ = rows(10, 3)
    before = load_predictor(saved).predict("fc", X)
    swapped = {"fc": regressors["conv+relu"], "conv+relu": regressors["fc"]}
    real_replace = os.replace

    def crash_at_commit(src: Any, dst: Any) -> None:
        if Path(dst).name == INDEX:
            raise OSError("power lost")
        real_replace(src, dst)

    monkeypatch.setattr(store.os, "replace", crash_at_commit)
    with pytest.raises(OSError, match="power lost"):
        save_predictor(saved, swapped, RULES, META)
    monkeypatch.undo()
    np.testing.assert_array_equal(load_predictor(saved).predict("fc", X), before)
    assert not [p for p in saved.iterdir() if p.name.endswith(".tmp")]

    save_predictor(saved, swapped, RULES, META)  # the next save completes and clears what the crash left
    np.testing.assert_array_equal(load_predictor(saved).predict("fc", X), regressors["conv+relu"].predict_ms(X))
    assert len(list(saved.iterdir())) == 3


def test_meta_that_is_not_json_is_refused_before_writing(tmp_path: Path, regressors: dict[str, Any]) -> None:
    with pytest.raises(PredictorError, match="meta cannot be stored as JSON"):
        save_predictor(tmp_path / "p", regressors, RULES, {"when": object()})
    assert not (tmp_path / "p").exists()


def test_a_predictor_copied_into_another_devices_folder_is_refused_unless_forced(
    tmp_path: Path, regressors: dict[str, FittedRegressor]
) -> None:
    from hwlab.predictors.predictor import Predictor

    save_predictor(tmp_path / "other" / "onnxruntime", regressors, RULES, {**META, "backend": "onnxruntime"})
    with pytest.raises(PredictorError, match="fitted for local/onnxruntime, not other/onnxruntime") as err:
        Predictor.load("other", "onnxruntime", tmp_path)
    assert "--force" in str(err.value)
    assert Predictor.load("other", "onnxruntime", tmp_path, force=True).loaded.kernel_types


def test_backend_all_shows_every_fitted_predictor_of_the_device(
    tmp_path: Path, regressors: dict[str, FittedRegressor], capsys: pytest.CaptureFixture[str]
) -> None:
    from hwlab.cli import main

    for backend in ("onnxruntime", "litert"):
        save_predictor(tmp_path / "local" / backend, regressors, RULES, {**META, "backend": backend})
    (tmp_path / "local" / "stray").mkdir()  # a folder without a predictor is not a backend
    assert main(["predictors", "show", "--device", "local", "--backend", "all", "--predictors-dir", str(tmp_path),
                 "--json"]) == 0  # fmt: skip
    assert [entry["backend"] for entry in json.loads(capsys.readouterr().out)] == ["litert", "onnxruntime"]
    assert main(["predictors", "show", "--device", "elsewhere", "--backend", "all", "--predictors-dir",
                 str(tmp_path)]) == 1  # fmt: skip
    assert "no predictor for 'elsewhere'" in capsys.readouterr().err


def test_work_lines_and_domains_are_kept(saved: Path, regressors: dict[str, FittedRegressor]) -> None:
    loaded = load_predictor(saved)
    X, _ = rows(40, 0)
    for kernel_type, fitted in regressors.items():
        assert loaded.works[kernel_type] == fitted.work and loaded.domains[kernel_type] == fitted.domain
        assert not loaded.outside(kernel_type, X).any()
    beyond = X[:1].copy()
    beyond[0, FEATURES.index("flops")] = 1e12
    assert loaded.outside("fc", beyond).tolist() == [True]


def test_a_predictor_from_before_work_lines_still_loads_and_knows_no_domain(
    saved: Path, regressors: dict[str, FittedRegressor]
) -> None:
    def older(data: dict[str, Any]) -> None:  # what hwlab wrote before: trees alone, no domain
        data["transform"] = {"features": "log1p", "target": "log"}
        for entry in data["kernels"].values():
            del entry["work"], entry["domain"]

    edit_index(saved, older)
    loaded = load_predictor(saved)
    X, _ = rows(5, 2)
    ensemble = regressors["fc"].ensemble
    np.testing.assert_allclose(loaded.predict("fc", X), np.exp(ensemble.predict(np.log1p(X))))
    assert loaded.outside("fc", X) is None


@pytest.mark.parametrize(
    "work",
    [[1.0, 2.0], [1.0, -1.0, 0.0, 0.0], "line", [1.0, 0.0, 0.0, True]],
    ids=["short", "negative", "text", "bool"],
)
def test_a_damaged_work_line_is_refused(saved: Path, work: Any) -> None:
    edit_index(saved, lambda d: d["kernels"]["fc"].update(work=work))
    with pytest.raises(PredictorError, match="'work' must be 4 finite numbers"):
        load_predictor(saved)


def test_a_damaged_domain_is_refused(saved: Path) -> None:
    edit_index(saved, lambda d: d["kernels"]["fc"].update(domain={"low": [0.0], "high": [1.0]}))
    with pytest.raises(PredictorError, match="'domain' must hold"):
        load_predictor(saved)

"""Malformed inputs of every kind, fed through the CLI in-process: a one-line typed error each, files untouched.

For each file kind hwlab reads (an inventory entry, a table's metadata and rows, a predictor's index and
arrays, an ONNX model, an architecture file, a data set, a published lookup table) a valid file is made,
then variants of it are generated here: truncations, binary noise, text that is not UTF-8, JSON of the
wrong shape, fields of the wrong type, markup and ``..`` in names. Each variant goes through the command
that reads that kind. It must end with one ``error:`` line and its ``fix:`` (never a traceback or an
internal error; rc 1, or 2 for an argument refused while parsing), or, where the variant is still a valid
file, succeed, saying what it tolerated; and every file that existed before is byte-identical after.
"""

from __future__ import annotations

import io
import json
import random
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from hwlab.cli import main
from hwlab.predictors.kernels import FEATURES, FusionRules
from hwlab.predictors.regress import fit_kernel_regressor
from hwlab.predictors.store import save_predictor
from hwlab.search.record import ArchRecord
from hwlab.search.space import SearchSpace
from hwlab.tables import LookupTable, TableId
from hwlab.tables.rows import Row

RF = {"name": "rf-10", "family": "random_forest", "n_estimators": 10, "max_depth": None, "min_samples_leaf": 1}


@dataclass(frozen=True)
class Kind:
    """One file kind: where its file lies in the base tree, and the command that reads it."""

    name: str
    target: str  # relative to the base tree
    argv: Callable[[Path], list[str]]
    json: bool = False
    may_pass: tuple[str, ...] = ()  # variants that are valid files (they must then succeed or warn)


def _inventory(base: Path) -> None:
    folder = base / "inventory"
    folder.mkdir()
    # `name` last: every cut lacks it, or holds half of it.
    (folder / "board.yaml").write_text(
        "transport: ssh\nhost: 127.0.0.1\nport: 2222\nuser: lab\nruntimes: [onnxruntime]\nname: board\n"
    )


def _table(base: Path) -> None:
    table = LookupTable.at(base / "tables", TableId("local", "onnxruntime", "t"))
    fixed = {"device": "local", "runtime": "onnxruntime", "runtime_version": "1", "threads": 1, "core_mask": None}
    table.open_for_append(fixed, {"device": "local", "backend": "onnxruntime"})
    for key, ms in (("conv-a", 0.5), ("conv-b", 1.5)):
        table.append(Row(key, {"op": "conv"}, "ok", "local", "onnxruntime", median_ms=ms, n=20))


def _predictor(base: Path) -> None:
    rng = np.random.default_rng(0)
    X = rng.integers(1, 64, (30, len(FEATURES))).astype(np.float64)
    regressor = fit_kernel_regressor(X, 0.01 + X[:, 0] / 100, candidates=(RF,))
    save_predictor(base / "predictors" / "local" / "onnxruntime", {"conv": regressor}, FusionRules(frozenset()),
                   {"device": "local", "backend": "onnxruntime"})  # fmt: skip


def _model(base: Path) -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
    onnx.save(helper.make_model(graph), str(base / "model.onnx"))


def _arch(base: Path) -> None:
    space = SearchSpace.of(input_size=16)
    ArchRecord(space, space.sample(random.Random(0)), {"search": {"latency_budget_ms": 1.0}}).save(base / "arch.json")


def _data(base: Path) -> None:
    rng = np.random.default_rng(0)
    np.savez(base / "data.npz", x=rng.integers(0, 255, (30, 8, 8), dtype=np.uint8), y=np.arange(30) % 10)


def _published(base: Path) -> None:
    entries = {f"Conv-input:{s}x{s}x3-output:{s // 2}x{s // 2}x16": {"count": 10, "mean": 0.5 + s / 100, "std": 0.01}
               for s in (224, 192, 160)}  # fmt: skip
    lines = [f"{k}:\n  count: {v['count']}\n  mean: {v['mean']}\n  std: {v['std']}\n" for k, v in entries.items()]
    (base / "lut.yaml").write_text("".join(lines))


def TRAIN(base: Path) -> list[str]:  # noqa: N802 - a command line, like the lambdas beside it
    """Reads an architecture file and a data set (one epoch on 20 tiny images, nothing exported)."""
    return ["train", str(base / "arch.json"), "--data", str(base / "data.npz"), "--epochs", "1", "--no-export"]


KINDS = [
    Kind("inventory", "inventory/board.yaml", lambda b: ["devices", "--inventory", str(b / "inventory"), "--json"]),
    Kind("table-meta", "tables/local/onnxruntime/t/meta.json",
         lambda b: ["tables", "show", "local/onnxruntime/t", "--tables-dir", str(b / "tables")], json=True),
    Kind("table-rows", "tables/local/onnxruntime/t/ops.jsonl",
         lambda b: ["tables", "show", "local/onnxruntime/t", "--tables-dir", str(b / "tables")],
         may_pass=("cut-1/8", "cut-3/8", "cut-5/8", "cut-7/8", "markup-key")),  # a cut-off last row is a warning
    Kind("predictor-index", "predictors/local/onnxruntime/predictor.json",
         lambda b: ["predictors", "show", "--device", "local", "--predictors-dir", str(b / "predictors")], json=True),
    Kind("predictor-arrays", "predictors/local/onnxruntime/*.npz",
         lambda b: ["predictors", "show", "--device", "local", "--predictors-dir", str(b / "predictors")]),
    Kind("model", "model.onnx",
         lambda b: ["predict", str(b / "model.onnx"), "--predictors-dir", str(b / "predictors"), "--allow-unknown"]),
    Kind("arch", "arch.json", TRAIN, json=True),
    Kind("data", "data.npz", TRAIN),
    Kind("published-table", "lut.yaml",
         lambda b: ["tables", "import", str(b / "lut.yaml"), "--device", "d", "--source", "me @ 0, lut.yaml",
                    "--tables-dir", str(b / "imported")]),
]  # fmt: skip


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _npz_declaring(shape: tuple[int, ...]) -> bytes:
    """An .npz whose member's header declares ``shape`` float64 (10^10 elements: 74 GiB) over a few bytes."""
    header = {"descr": "<f8", "fortran_order": False, "shape": shape}
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(member, header)
    member.write(b"\0" * 64)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("x.npy", member.getvalue())
        archive.writestr("y.npy", member.getvalue())
    return buffer.getvalue()


def variants(kind: Kind, raw: bytes) -> dict[str, bytes]:
    """The malformed versions of ``raw``, generated from a seed of the kind's own."""
    rng = random.Random(kind.name)
    out = {"empty": b"", "noise": bytes(rng.randrange(256) for _ in range(200)), "nul": raw[:5] + b"\0" + raw[5:]}
    out.update({f"cut-{k}/8": raw[: len(raw) * k // 8] for k in (1, 3, 5, 7)})
    if raw[:1] not in (b"\x08", b"P"):  # text kinds: bytes that are not UTF-8
        out["latin-1"] = raw + "\n# caf\u00e9\n".encode("latin-1")
    if kind.json:
        data = json.loads(raw)
        for name, value in {"list": [], "string": "[/x]", "number": 1, "null": None, "nan": float("nan")}.items():
            out[f"json-{name}"] = json.dumps(value).encode()
        for key in sorted(data)[:12]:
            wrong = {"list": [1], "text": "[/x]", "null": None, "object": {"..": 1}}
            kind_of = {list: "list", str: "text", dict: "object"}.get(type(data[key]))
            for name, value in wrong.items():
                if name != kind_of:  # a value of the field's own type may well be valid
                    out[f"field-{key}-{name}"] = json.dumps({**data, key: value}).encode()
    if kind.json:
        data = json.loads(raw)
        for path in rng.sample(_nested_paths(data), min(24, len(_nested_paths(data)))):
            # Not null: many nested fields are optional (null is then valid, e.g. an imported table's threads).
            for name, value in {"text": "[/x]", "object": {"..": 1}}.items():
                if type(_get(data, path)) is not type(value):
                    label = "/".join(map(str, path))
                    out[f"nested-{label}-{name}"] = json.dumps(_set(data, path, value)).encode()
    if kind.name == "table-rows":
        good = raw.decode().splitlines()[0]
        out["row-list"] = (good + "\n[1, 2]\n").encode()
        out["row-no-key"] = (good + '\n{"status": "ok", "median_ms": 1.0}\n').encode()
        out["row-text-number"] = (good + '\n{"key": "k", "status": "ok", "median_ms": "fast"}\n').encode()
        out["row-bool-number"] = (good + '\n{"key": "k", "status": "ok", "n": true}\n').encode()
        out["markup-key"] = (good + '\n{"key": "[/x][bold]", "status": "ok", "median_ms": 1.0}\n').encode()
        del out["empty"]  # an empty rows file is a table with no rows yet
    if kind.name in ("inventory", "published-table"):
        text = raw.decode()
        out["duplicate-key"] = (text + text.splitlines()[0] + "\n").encode()
        levels = [f"a{i}: &a{i} [{', '.join(['*a' if i == 1 else f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)]
        out["alias-bomb"] = ("a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(levels)).encode()
    if kind.name == "inventory":
        out["name-markup"] = raw.replace(b"name: board", b"name: '[/x]'")
        out["name-dotdot"] = raw.replace(b"name: board", b"name: ../board")
        out["host-shell"] = raw.replace(b"host: 127.0.0.1", b"host: '127.0.0.1;touch PWNED'")
    if kind.name == "data":
        x = np.zeros((6, 8, 8), dtype=np.uint8)
        out["lengths-differ"] = _npz(x=x, y=np.arange(4))
        out["no-labels"] = _npz(x=x)
        out["text-labels"] = _npz(x=x, y=np.array(["a"] * 6))
        out["objects"] = _npz(x=x, y=np.array([{"a": 1}] * 6, dtype=object))
        out["huge-declared"] = _npz_declaring((100000, 100000))
    if kind.name == "model":
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 100000, 100000])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 100000, 100000])
        huge = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="r")], "g", [x], [y])
        out["absurd-input"] = helper.make_model(huge).SerializeToString()
        out["no-graph"] = helper.make_model(helper.make_graph([], "g", [], [])).SerializeToString()
    if kind.name == "predictor-arrays":
        out["huge-declared"] = _npz_declaring((100000, 100000))
    return out


def _nested_paths(data: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Paths to the values below the top level (objects' keys, a list's first item), up to depth 4."""
    found: list[tuple[object, ...]] = []
    items = list(data.items()) if isinstance(data, dict) else [(0, data[0])] if isinstance(data, list) and data else []
    for key, value in items:
        path = (*prefix, key)
        if len(path) > 1:
            found.append(path)
        if len(path) < 4:
            found += _nested_paths(value, path)
    return found


def _get(data: object, path: tuple[object, ...]) -> object:
    for key in path:
        data = data[key]  # type: ignore[index]
    return data


def _set(data: object, path: tuple[object, ...], value: object) -> object:
    """A deep copy of ``data`` with the value at ``path`` replaced."""
    copy = json.loads(json.dumps(data))
    parent = _get(copy, path[:-1])
    parent[path[-1]] = value  # type: ignore[index]
    return copy


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("valid")
    for make in (_inventory, _table, _predictor, _model, _arch, _data, _published):
        make(root)
    return root


def _target(tree: Path, kind: Kind) -> Path:
    return next(tree.glob(kind.target)) if "*" in kind.target else tree / kind.target


def _snapshot(tree: Path) -> dict[str, bytes]:
    return {str(p.relative_to(tree)): p.read_bytes() for p in sorted(tree.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_the_valid_file_of_each_kind_is_read_and_used(
    kind: Kind, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The command succeeds on the unmodified tree, so a variant's error can only come from what was changed."""
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    tree = tmp_path / "tree"
    shutil.copytree(base, tree)
    assert main(kind.argv(tree)) == 0, capsys.readouterr().err


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_malformed_files_give_one_typed_line_and_change_nothing(
    kind: Kind, base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "100000")  # one print, one line
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    raw = _target(base, kind).read_bytes()
    cases = variants(kind, raw)
    assert len(cases) >= 8
    failures = []
    for name, content in cases.items():
        tree = tmp_path / name.replace("/", "-")
        shutil.copytree(base, tree)
        _target(tree, kind).write_bytes(content)
        before = _snapshot(tree)
        try:
            rc = main(kind.argv(tree))
        except SystemExit as exit_:  # an argument refused while parsing (argparse's own one line)
            rc = exit_.code
        out, err = capsys.readouterr()
        lines = [line for line in err.splitlines() if line.strip()]
        said = [line for line in lines if line.startswith("error:")]
        if "Traceback" in err or "internal error" in err:
            failures.append(f"{name}: crashed: {err[-400:]}")
        elif rc == 0 and name not in kind.may_pass:
            failures.append(f"{name}: accepted silently (rc 0)")
        elif rc == 0 and "warning:" not in err and name != "markup-key":
            failures.append(f"{name}: accepted without saying what it tolerated")
        elif rc not in (0, 2) and (len(said) != 1 or not any(line.strip().startswith("fix:") for line in lines)):
            failures.append(f"{name}: rc {rc}, not one error line with its fix: {err[-400:]!r}")
        elif rc == 1 and _target(tree, kind).name not in err:
            failures.append(f"{name}: the error does not name {_target(tree, kind).name}: {err[-400:]!r}")
        if _snapshot(tree) != before:
            failures.append(f"{name}: changed files on disk")
        shutil.rmtree(tree)
    assert not failures, "\n".join(failures)

"""`hwlab profile --model FILE [--inputs data.npz]`: model files measured as they are, over real inputs.

Input data is checked on the host against the model's inputs before anything is sent; rows over input data
carry the distribution; a cut-off run resumes with its rows kept, as any table does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
from onnx import TensorProto, helper

from hwlab.cli import main
from hwlab.errors import InputDataError, InvalidRequest
from hwlab.measure.inputs import input_archive
from hwlab.profile import ModelItem, file_items
from hwlab.tables import LookupTable, TableId
from hwlab.zoo.early_exit import write_early_exit, write_early_exit_data

FAST = ["--min-time", "0.01", "--max-time", "1", "--min-count", "16"]


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def two_inputs(path: Path) -> Path:
    """``a`` (?, 4) float32 and ``b`` (4,) int64, a symbolic batch: Add(a, Cast(b))."""
    nodes = [helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT), helper.make_node("Add", ["a", "bf"], ["y"])]
    graph = helper.make_graph(
        nodes, "two", [helper.make_tensor_value_info("a", TensorProto.FLOAT, ["batch", 4]),
                       helper.make_tensor_value_info("b", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_an_archive_is_matched_by_name_or_position_and_read_along_its_first_axis(tmp_path: Path) -> None:
    model = two_inputs(tmp_path / "two.onnx")
    np.savez(tmp_path / "named.npz", b=np.zeros((5, 4), np.int64), a=np.zeros((5, 4), np.float32), label=np.ones(5))
    archive = input_archive(tmp_path / "named.npz", model)
    assert (archive.members, archive.samples) == (("a", "b"), 5)
    assert [(s.shape, s.dtype) for s in archive.inputs] == [((1, 4), "float32"), ((4,), "int64")]
    np.savez(tmp_path / "positional.npz", np.zeros((3, 2, 4), np.float32), np.zeros((3, 4), np.int64))
    archive = input_archive(tmp_path / "positional.npz", model)  # a stored batch of 2 per sample
    assert (archive.members, archive.samples, archive.inputs[0].shape) == (("arr_0", "arr_1"), 3, (2, 4))


@pytest.mark.parametrize(
    ("arrays", "said", "fix"),
    [
        ({"a": np.zeros((5, 4), np.float32)}, "has no array for input 1 'b' of two.onnx (its members: a)",
         "name it after the input (b) or by position (arr_1)"),
        ({"a": np.zeros((5, 4)), "b": np.zeros((5, 4), np.int64)}, "array 'a' is float64; input 'a' of two.onnx"
         " takes float32", "convert it: array.astype(numpy.float32)"),
        ({"a": np.zeros((5, 3), np.float32), "b": np.zeros((5, 4), np.int64)}, "array 'a' has shape (5, 3); input"
         " 'a' of two.onnx is (?, 4), so the array must be (N, ?, 4) or (N, 4) (N samples; ? any size)", "numpy.savez"),
        ({"a": np.zeros((5, 4), np.float32), "b": np.zeros((6, 4), np.int64)}, "the arrays hold 5 and 6 samples",
         "give every input as many samples"),
        ({"a": np.zeros((0, 4), np.float32), "b": np.zeros((0, 4), np.int64)}, "holds no sample for two.onnx", "savez"),
    ],
)  # fmt: skip
def test_an_archive_that_does_not_fit_is_refused_with_the_fix(tmp_path: Path, arrays: dict, said: str, fix: str):
    np.savez(tmp_path / "data.npz", **arrays)
    with pytest.raises(InputDataError) as err:
        input_archive(tmp_path / "data.npz", two_inputs(tmp_path / "two.onnx"))
    assert said in err.value.message and fix in (err.value.hint or "")


def test_a_missing_or_damaged_archive_is_refused(tmp_path: Path) -> None:
    model = two_inputs(tmp_path / "two.onnx")
    with pytest.raises(InputDataError, match="no input data at .*absent.npz"):
        input_archive(tmp_path / "absent.npz", model)
    (tmp_path / "text.npz").write_text("a,b\n1,2\n")
    with pytest.raises(InputDataError, match="is not an .npz archive"):
        input_archive(tmp_path / "text.npz", model)
    np.savez(tmp_path / "pickled.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(InputDataError, match="holds Python objects"):
        input_archive(tmp_path / "pickled.npz", model)


def test_file_items_are_keyed_by_stem_or_key_and_checked_here(tmp_path: Path) -> None:
    model = write_early_exit(tmp_path / "net.onnx")
    (item,) = file_items([model])
    assert (item.key, item.fmt, item.data, item.fields) == ("net", "onnx", None, {"op": "model", "family": "file",
                                                                                 "file": "net.onnx"})  # fmt: skip
    assert item.export("onnx").input_shapes == ((1, 3, 32, 32),)
    write_early_exit_data(tmp_path / "data.npz", count=4)
    (item,) = file_items([model], tmp_path / "data.npz", key="ee")
    assert item.key == "ee" and item.data is not None and item.fields["inputs_file"] == "data.npz"
    with pytest.raises(InvalidRequest, match="--key names one model, not 2"):
        file_items([model, model], key="k")
    with pytest.raises(InvalidRequest, match="not distinct"):
        file_items([model, model])
    with pytest.raises(InvalidRequest, match="net.pt2: no file"):
        file_items([tmp_path / "net.pt2"])


def test_a_file_is_measured_only_by_the_runtime_that_loads_it(tmp_path: Path) -> None:
    item = ModelItem.of_file(write_early_exit(tmp_path / "net.onnx"), "net")
    with pytest.raises(Exception, match=r"net.onnx is a .onnx model; this backend loads .tflite"):
        item.export("tflite")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_profile_over_inputs_writes_the_distribution_and_resumes(capsys: pytest.CaptureFixture[str], tmp_path: Path):
    write_early_exit(tmp_path / "early-exit.onnx")
    early = write_early_exit_data(tmp_path / "data.npz", count=8)
    write_early_exit(tmp_path / "other.onnx")
    tables = str(tmp_path / "t")
    argv = ["profile", "--model", str(tmp_path / "early-exit.onnx"), "--inputs", str(tmp_path / "data.npz"), *FAST,
            "--tables-dir", tables]  # fmt: skip
    rc, out, err = run(capsys, *argv)
    assert rc == 0, err
    assert "latency over the inputs" in out and "early-exit: median per input (ms):" in out
    table = LookupTable.at(Path(tables), TableId("local", "onnxruntime", "models"))
    row = table.lookup("early-exit")
    assert (row["schedule"], row["input_count"], row["inputs_file"]) == ("calls", 8, "data.npz")
    assert row["correction"] == "none" and row["status"] == "ok"
    assert row["median_ms"] == row["p50_ms"] == row["raw_median_ms"] and row["speed_factor"] is None
    assert row["min_ms"] <= row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"] <= row["max_ms"]
    medians = np.array(row["input_median_ms"])
    assert medians[~early].min() >= 2 * medians[early].max()  # late exits: ~350x the work
    assert table.samples("early-exit")["distribution"]["inputs"] == 8
    assert not table.anchor_lines()  # a distribution is reported as timed: no anchor was measured for it

    # Cut the row short, as a kill mid-write would; add a second model: the rerun keeps what is whole.
    rows = table.folder / "ops.jsonl"
    rows.write_bytes(rows.read_bytes()[:-40])
    argv2 = [*argv[:3], "--model", str(tmp_path / "other.onnx"), *argv[3:], "--json"]
    rc, out, err = run(capsys, *argv2)
    assert rc == 0 and "the last line is cut short" in err, err
    (report,) = json.loads(out)
    assert (report["measured"], report["skipped"], report["rows"]) == (2, 0, 2)
    assert {d["key"] for d in report["distributions"]} == {"early-exit", "other"}
    rc, out, err = run(capsys, *argv2)
    assert rc == 0 and json.loads(out)[0]["skipped"] == 2
    frame = pd.read_json(table.folder / "ops.jsonl", lines=True)
    assert set(frame["key"]) == {"early-exit", "other"} and (frame["input_count"] == 8).all()


def test_a_bad_archive_stops_before_anything_is_measured(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    model = write_early_exit(tmp_path / "early-exit.onnx")
    np.savez(tmp_path / "data.npz", x=np.zeros((4, 3, 16, 16), np.float32))
    rc, _, err = run(capsys, "profile", "--model", str(model), "--inputs", str(tmp_path / "data.npz"),
                     "--tables-dir", str(tmp_path / "t"))  # fmt: skip
    assert rc == 1 and "array 'x' has shape (4, 3, 16, 16)" in err and "fix:" in err
    assert not (tmp_path / "t").exists()
    rc, _, err = run(capsys, "profile", "--inputs", str(tmp_path / "data.npz"), "--tables-dir", str(tmp_path / "t"))
    assert rc == 1 and "--inputs and --key go with --model FILE" in err
    rc, _, err = run(capsys, "profile", "--model", str(model), "--backend", "litert", "--tables-dir", str(tmp_path))
    assert rc == 1 and "early-exit.onnx is a .onnx model, which litert cannot load" in err
    assert "add --backend onnxruntime" in err

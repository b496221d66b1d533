"""Exports run in their runtimes and match torch."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from hwlab.errors import BackendUnavailable, ExportError
from hwlab.export import (
    FORMAT_FOR_RUNTIME,
    FORMATS,
    export_module,
    export_spec,
    file_sha256,
    format_for_runtime,
)
from hwlab.space import OpSpec, build_module, example_inputs, example_specs

HAS_LITERT_TORCH = importlib.util.find_spec("litert_torch") is not None
SPOS_BLOCKS = [
    OpSpec("spos_shufflenet", 56, 56, 64, 64, kernel=3, mid=32),
    OpSpec("spos_shufflenet", 28, 28, 64, 160, kernel=7, stride=2, mid=80),
    OpSpec("spos_xception", 14, 14, 320, 320, mid=160),
    OpSpec("spos_xception", 2, 2, 320, 640, stride=2, mid=320),
]


def _reference(spec: OpSpec) -> tuple[list[np.ndarray], np.ndarray]:
    inputs = example_inputs(spec)
    with torch.no_grad():
        out = build_module(spec)(*inputs)
    return [t.numpy() for t in inputs], out.numpy()


@pytest.mark.parametrize("spec", example_specs() + SPOS_BLOCKS, ids=lambda s: s.key)
def test_onnx_matches_torch(spec: OpSpec, tmp_path: Path) -> None:
    model = export_spec(spec, "onnx", tmp_path)
    assert model.path.suffix == ".onnx" and model.fmt == "onnx"
    assert model.input_shapes == tuple(spec.input_shapes())
    assert model.sha256 == file_sha256(model.path)
    session = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
    inputs, expected = _reference(spec)
    names = [i.name for i in session.get_inputs()]
    assert names == [f"input{i}" for i in range(len(inputs))]
    (got,) = session.run(None, dict(zip(names, inputs, strict=True)))
    assert got.shape == spec.output_shape()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spec", [SPOS_BLOCKS[1], OpSpec("concat", 7, 7, 8, 16)], ids=lambda s: s.op)
def test_pt2_loads_and_matches(spec: OpSpec, tmp_path: Path) -> None:
    model = export_spec(spec, "pt2", tmp_path)
    assert model.path.suffix == ".pt2"
    program = torch.export.load(str(model.path))
    inputs = example_inputs(spec)
    with torch.no_grad():
        got = program.module()(*inputs)
        expected = build_module(spec)(*inputs)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.skipif(not HAS_LITERT_TORCH, reason="litert-torch is not installed (pip install 'hwlab[tflite]')")
@pytest.mark.parametrize(
    "spec",
    [SPOS_BLOCKS[0], OpSpec("add", 14, 14, 16, 16), OpSpec("avgpool", 15, 15, 8, 8, kernel=3, stride=2)],
    ids=lambda s: s.op,
)
def test_tflite_runs_in_litert(spec: OpSpec, tmp_path: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    model = export_spec(spec, "tflite", tmp_path)
    assert model.path.suffix == ".tflite"
    interpreter = Interpreter(model_path=str(model.path))
    interpreter.allocate_tensors()
    inputs, expected = _reference(spec)
    details = interpreter.get_input_details()
    assert [tuple(d["shape"]) for d in details] == spec.input_shapes()
    for detail, value in zip(details, inputs, strict=True):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    got = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    assert got.shape == spec.output_shape()
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


def test_missing_tflite_exporter_is_backend_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # makes `import litert_torch` fail
    with pytest.raises(BackendUnavailable) as info:
        export_spec(OpSpec("bn", 7, 7, 8, 8), "tflite", tmp_path)
    assert "hwlab[tflite]" in str(info.value)
    assert not list(tmp_path.rglob("*.tflite"))


def test_format_names() -> None:
    assert set(FORMATS) == {"onnx", "tflite", "pt2"}
    assert FORMAT_FOR_RUNTIME == {"onnxruntime": "onnx", "litert": "tflite", "torch": "pt2"}
    assert format_for_runtime("litert") == "tflite"
    with pytest.raises(ExportError, match="runtime 'tvm'"):
        format_for_runtime("tvm")


def test_unknown_format(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_spec(OpSpec("bn", 7, 7, 8, 8), "coreml", tmp_path)
    assert "onnx, tflite, pt2" in str(info.value)


def test_export_module_takes_a_single_tensor(tmp_path: Path) -> None:
    module = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU())
    model = export_module(module, torch.randn(1, 3, 8, 8), "onnx", tmp_path, name="tiny")
    assert model.path.name.startswith("tiny-") and model.input_shapes == ((1, 3, 8, 8),)
    with pytest.raises(ExportError, match="tensor"):
        export_module(module, [], "onnx", tmp_path)

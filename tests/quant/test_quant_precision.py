"""Precisions: int8 models that onnxruntime really runs in int8, the boundary models, the errors, and a
precision table that resumes."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from hwlab.errors import PrecisionUnsupported
from hwlab.export import export_spec
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile_space
from hwlab.quant.boundary import export_boundary
from hwlab.quant.onnx_qdq import qlinear_nodes, random_batches
from hwlab.quant.precision import parse_precisions, require_deployable, require_writable
from hwlab.quant.space import at_precisions, precision_ratios
from hwlab.space import OpSpec

CONV = OpSpec("conv", 14, 14, 16, 32, kernel=3, prec="int8")


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def _session(path: Path, optimized: Path | None = None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def test_an_int8_conv_runs_as_qlinearconv_and_matches_its_fp32_twin(tmp_path: Path) -> None:
    int8, fp32 = export_spec(CONV, "onnx"), export_spec(replace(CONV, prec="fp32"), "onnx")
    assert "QuantizeLinear" in {n.op_type for n in onnx.load(str(int8.path)).graph.node}  # QDQ format
    optimized = tmp_path / "optimized.onnx"
    quantised = _session(int8.path, optimized)
    assert qlinear_nodes([n.op_type for n in onnx.load(str(optimized)).graph.node]) == ["QLinearConv"]
    feed = random_batches(fp32.path)[0]  # inside the calibrated ranges: nothing clipped
    want, got = _session(fp32.path).run(None, feed)[0], quantised.run(None, feed)[0]
    # measured: 0.7% with reduce_range; 13% without it on an x86 CPU without VNNI (saturating vpmaddubsw)
    assert np.max(np.abs(got - want)) < 0.02 * (want.max() - want.min())
    assert export_spec(CONV, "onnx").from_cache  # the second export is the cached file


def test_boundary_models_quantise_and_come_back() -> None:
    shape = (1, 8, 5, 5)
    quantize = export_boundary("quantize", shape, "onnx", "q")
    qdq = export_boundary("qdq", shape, "onnx", "qdq")
    x = np.random.default_rng(0).uniform(-3.9, 3.9, shape).astype(np.float32)
    q = _session(quantize.path).run(None, {"x": x})[0]
    assert q.dtype == np.uint8 and q.shape == shape
    back = _session(qdq.path).run(None, {"x": x})[0]
    assert back.dtype == np.float32 and np.max(np.abs(back - x)) <= 0.5 * 8.0 / 255.0 + 1e-6


def test_a_precision_no_runtime_executes_or_hwlab_cannot_write_is_a_clear_error() -> None:
    with pytest.raises(PrecisionUnsupported, match="int4 has a BitOps cost only") as info:
        require_deployable("int4", "exporting conv")
    assert "--bitops" in (info.value.hint or "")
    with pytest.raises(PrecisionUnsupported, match="int4"):
        export_spec(replace(CONV, prec="int4"), "onnx")
    with pytest.raises(PrecisionUnsupported, match="torch cannot be profiled at int8"):
        require_writable("torch", ["fp32", "int8"])
    with pytest.raises(PrecisionUnsupported, match="unknown precision 'fp8'"):
        parse_precisions("fp32,fp8")
    with pytest.raises(PrecisionUnsupported, match="twice"):
        parse_precisions("int8,int8")
    assert parse_precisions(" fp32, int8 ") == ("fp32", "int8")


def test_a_space_at_two_precisions_has_each_op_twice_and_its_boundaries() -> None:
    add = OpSpec("add", 7, 7, 8, 8)
    items = at_precisions([CONV.__class__("conv", 14, 14, 16, 32, kernel=3), add], ("fp32", "int8"), "onnxruntime")
    keys = [getattr(i, "key", None) for i in items]
    assert keys[:4] == [replace(CONV, prec="fp32").key, add.key, CONV.key, add.key + "-prec:int8"]
    boundaries = sorted(k for k in keys if k.startswith("boundary-"))
    shapes = ("14x14x16", "14x14x32", "7x7x8")
    assert boundaries == sorted(f"boundary-{kind}-input:{s}-prec:int8" for kind in ("qdq", "quantize") for s in shapes)


def test_precision_ratios_per_op_type() -> None:
    rows = [
        {"key": "conv-a", "op": "conv", "status": "ok", "median_ms": 1.0},
        {"key": "conv-a-prec:int8", "op": "conv", "status": "ok", "median_ms": 0.5},
        {"key": "dwconv-b", "op": "dwconv", "status": "ok", "median_ms": 0.1},
        {"key": "dwconv-b-prec:int8", "op": "dwconv", "status": "ok", "median_ms": 0.15},
        {"key": "dwconv-c-prec:int8", "op": "dwconv", "status": "error", "error": "failed to load"},
        {"key": "boundary-quantize-input:7x7x8-prec:int8", "op": "boundary-quantize", "status": "ok", "median_ms": 1},
    ]
    conv, dwconv = precision_ratios(rows)
    assert (conv.op, conv.ratio, conv.pairs, conv.faster, conv.pays) == ("conv", 0.5, 1, 1, True)
    assert (dwconv.ratio, dwconv.failed, dwconv.pays) == (pytest.approx(1.5), 1, False)


def test_a_precision_table_is_one_table_that_resumes(tmp_path: Path) -> None:
    specs = [OpSpec("pwconv", 7, 7, 8, 16), OpSpec("dwconv", 7, 7, 16, 16, kernel=3)]
    base = ProfileRequest(
        device=LOCAL_DEFAULT, backend="", specs=specs, space="generic", tables_root=tmp_path / "t",
        settings=stopping(min_time_s=0.02, max_time_s=0.2, min_count=5),
    )  # fmt: skip
    fp32_only = profile_space(replace(base, space_params={"count": 2, "seed": 5}), ["onnxruntime"])
    first = fp32_only.reports[0]
    assert first.errors == [] and all("-prec:" not in r["key"] for r in first.measured)
    both = profile_space(replace(base, space_params={"count": 2, "seed": 5}), ["onnxruntime"], None, ("fp32", "int8"))
    second = both.reports[0]
    assert second.skipped == len(first.measured)  # the fp32 rows are reused, only int8 and boundaries are new
    assert second.errors == [] and all("-prec:int8" in r["key"] for r in second.measured)
    rows = {r["key"]: r for r in second.table}
    assert all(r["prec"] == "int8" for k, r in rows.items() if k.endswith("-prec:int8") and not k.startswith("b"))
    again = profile_space(replace(base, space_params={"count": 2, "seed": 5}), ["onnxruntime"], None, ("fp32", "int8"))
    assert again.reports[0].measured == []


def test_the_int8_check_measures_reference_layers_at_both_precisions(tmp_path: Path) -> None:
    from hwlab.quant.int8_check import REFERENCE_LAYERS, measure_int8_ratio

    quick = ProfileRequest.of(LOCAL_DEFAULT, "onnxruntime", settings=stopping(min_time_s=0.02, max_time_s=0.2))
    check = measure_int8_ratio(LOCAL_DEFAULT, tmp_path / "t", quick)
    assert [layer.key for layer in check.layers] == [spec.key for spec in REFERENCE_LAYERS]
    for layer in check.layers:
        assert layer.error is None and layer.fp32_ms > 0 and layer.int8_ms > 0
        assert layer.ratio == pytest.approx(layer.int8_ms / layer.fp32_ms)
    assert isinstance(check.features, list)  # this host's /proc/cpuinfo is readable
    assert check.to_json()["layers"][0]["ratio"] == check.layers[0].ratio


def test_litert_int8_models_come_from_the_quantizer_and_an_op_it_cannot_quantise_is_an_error_row(
    tmp_path: Path,
) -> None:
    """A conv at int8 as .tflite (LiteRT quantizer: int8 in, int8 out, CONV_2D on int8) is profiled on litert
    next to its fp32 twin; an avgpool the quantizer refuses becomes an error row, the run goes on."""
    pytest.importorskip("ai_edge_quantizer")
    from ai_edge_litert.interpreter import Interpreter

    conv = OpSpec("conv", 8, 8, 8, 16, kernel=3)
    int8 = export_spec(replace(conv, prec="int8"), "tflite")
    interpreter = Interpreter(model_path=str(int8.path))
    interpreter.allocate_tensors()
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert "CONV_2D" in [op["op_name"] for op in interpreter._get_ops_details()]
    pool = OpSpec("avgpool", 16, 16, 8, 8, kernel=3, stride=2)
    request = ProfileRequest(
        device=LOCAL_DEFAULT, backend="litert", specs=at_precisions([conv, pool], ["fp32", "int8"], "litert"),
        space="mixed", tables_root=tmp_path / "t", settings=stopping(min_time_s=0.02, max_time_s=0.2, min_count=5),
    )  # fmt: skip
    from hwlab.profile import profile

    rows = {r["key"]: r for r in profile(request).table}
    assert not any(k.startswith("boundary-") for k in rows)  # a LiteRT int8 row holds no Q/DQ to price apart
    assert rows[conv.key]["status"] == rows[replace(conv, prec="int8").key]["status"] == "ok"
    failed = rows[replace(pool, prec="int8").key]
    assert failed["status"] == "error" and "LiteRT quantizer could not quantise" in failed["error"]
    assert rows[pool.key]["status"] == "ok"

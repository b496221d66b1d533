"""The cost of switching precisions: QuantizeLinear and Quantize->Dequantize models at a tensor's shape.

A mixed network pays, where an int8 layer follows an fp32 one, a QuantizeLinear on that tensor, and
where an fp32 layer follows an int8 one, a DequantizeLinear; between two int8 layers onnxruntime
passes uint8 straight through. A single op at int8 is measured between fp32 neighbours (its own Q
and DQ: the row ``...-prec:int8``), so the op inside an int8 run costs that row less its Q and DQ.
Both are measured here as models of their own, per tensor shape: ``quantize`` (fp32 in, uint8 out)
and ``qdq`` (fp32 in, a Quantize then a Dequantize, fp32 out), so DQ = qdq - quantize. The models are
written with onnx's helpers (torch has no standalone quantize op to export); the scale and zero point
are those of a standard-normal tensor, as the single-op models are calibrated on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from hwlab.errors import BackendUnavailable
from hwlab.export.cache import atomic_target, cache_digest, file_sha256, model_path

BOUNDARY_KINDS = ("quantize", "qdq")
_BUILD_VERSION = 1
_SCALE, _ZERO = 8.0 / 255.0, 128  # uint8 over [-4, 4): a standard-normal tensor's range


def boundary_key(kind: str, channels: int, height: int, width: int, prec: str = "int8") -> str:
    """``boundary-quantize-input:14x14x32-prec:int8``."""
    return f"boundary-{kind}-input:{height}x{width}x{channels}-prec:{prec}"


def boundary_fields(kind: str, channels: int, height: int, width: int, prec: str = "int8") -> dict[str, Any]:
    return {"op": f"boundary-{kind}", "input_h": height, "input_w": width, "cin": channels, "cout": channels,
            "prec": prec}  # fmt: skip


def _graph(kind: str, shape: tuple[int, ...]) -> onnx.ModelProto:
    scale = numpy_helper.from_array(np.array(_SCALE, dtype=np.float32), "scale")
    zero = numpy_helper.from_array(np.array(_ZERO, dtype=np.uint8), "zero_point")
    nodes = [helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["q"], name="quantize")]
    out, out_type = "q", TensorProto.UINT8
    if kind == "qdq":
        nodes.append(helper.make_node("DequantizeLinear", ["q", "scale", "zero_point"], ["y"], name="dequantize"))
        out, out_type = "y", TensorProto.FLOAT
    graph = helper.make_graph(
        nodes, f"boundary-{kind}", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info(out, out_type, list(shape))], initializer=[scale, zero],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="hwlab")
    onnx.checker.check_model(model)
    return model


def export_boundary(kind: str, shape: tuple[int, ...], fmt: str, name: str, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The boundary model's file in the export cache (onnx only: a .tflite boundary needs the LiteRT quantizer)."""
    from hwlab.export.api import ExportedModel

    if kind not in BOUNDARY_KINDS:
        raise ValueError(f"boundary kind {kind!r} is not one of {BOUNDARY_KINDS}")
    if fmt != "onnx":
        raise BackendUnavailable(f"precision boundaries are written for onnx only so far, not {fmt}",
                                 hint="profile precisions on onnxruntime (--backend onnxruntime)")  # fmt: skip
    digest = cache_digest(f"boundary:{kind}:v{_BUILD_VERSION}", fmt, f"onnx-{onnx.__version__}", [shape])
    path = model_path(cache_dir, fmt, ".onnx", name, digest)
    if not path.is_file():
        with atomic_target(path) as tmp:
            onnx.save(_graph(kind, shape), str(tmp))
    return ExportedModel(path, file_sha256(path), fmt, (shape,), name)


def boundary_exporter(kind: str, shape: tuple[int, ...], name: str) -> Callable[[str], Any]:
    return lambda fmt: export_boundary(kind, shape, fmt, name)

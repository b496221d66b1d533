"""An OpSpec at a precision other than fp32 -> its quantised model file, cached like every export.

The quantised model is made from the fp32 twin's export (the same weights: a spec's weights are seeded
from its fp32 key), so an int8 row and its fp32 row measure the same op. The cache name changes with
the fp32 file, the quantiser's version and the recipe: onnxruntime's quantiser for ONNX (``onnx_qdq``), the
LiteRT quantizer for .tflite (``litert_int8``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import version
from pathlib import Path

from hwlab.errors import BackendUnavailable
from hwlab.export.cache import atomic_target, cache_digest, file_sha256, model_path
from hwlab.quant.onnx_qdq import RECIPE, quantize_onnx
from hwlab.quant.precision import require_deployable
from hwlab.space.opspec import OpSpec


def export_quantized_spec(spec: OpSpec, fmt: str, cache_dir: Path | None = None):  # type: ignore[no-untyped-def]
    """The model file of ``spec`` at its precision (``spec.prec`` is not fp32)."""
    from hwlab.export.api import ExportedModel, export_spec

    require_deployable(spec.prec, f"exporting {spec.key}")
    if fmt not in QUANTISERS:
        raise BackendUnavailable(
            f"{spec.prec} models are written for {' and '.join(QUANTISERS)} only, not {fmt}",
            hint="profile int8 on onnxruntime or litert",
        )
    fp32 = export_spec(replace(spec, prec="fp32"), fmt, cache_dir)
    exporter, suffix, quantise = QUANTISERS[fmt]()
    digest = cache_digest(f"quantised:{fp32.sha256}:{spec.prec}", fmt, exporter, fp32.input_shapes)
    path = model_path(cache_dir, fmt, suffix, spec.key, digest)
    if path.is_file():
        return ExportedModel(path, file_sha256(path), fmt, fp32.input_shapes, spec.key, from_cache=True)
    with atomic_target(path) as tmp:
        quantise(fp32.path, tmp)
    return ExportedModel(path, file_sha256(path), fmt, fp32.input_shapes, spec.key)


def _onnx() -> tuple[str, str, Callable[[Path, Path], Path]]:
    return f"onnxruntime-{version('onnxruntime')}-{RECIPE}", ".onnx", lambda src, dst: quantize_onnx(src, dst)


def _tflite() -> tuple[str, str, Callable[[Path, Path], Path]]:
    from hwlab.quant import litert_int8

    litert_int8.require_quantizer()
    return (f"ai-edge-quantizer-{version('ai-edge-quantizer')}-{litert_int8.RECIPE}", ".tflite",
            litert_int8.quantize_tflite)  # fmt: skip


# format -> (exporter id for the cache, file suffix, quantise(fp32 file, target))
QUANTISERS: dict[str, Callable[[], tuple[str, str, Callable[[Path, Path], Path]]]] = {"onnx": _onnx, "tflite": _tflite}

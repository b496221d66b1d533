"""Static int8 .tflite models through the LiteRT quantizer (``ai-edge-quantizer``, in the ``tflite`` extra).

The recipe is the quantizer's ``static_wi8_ai8``: int8 weights per channel (symmetric) and int8 activations
per tensor, calibrated on seeded random inputs for a single op. The quantizer also quantises the model's
own inputs and outputs, so an int8 .tflite takes and returns int8 tensors: unlike an onnxruntime int8 row,
its row holds no Quantize or Dequantize (the runner feeds each model the dtype it declares). The
quantizer prints a summary on stdout; it is kept off hwlab's output.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwlab.errors import BackendUnavailable, ExportError

RANDOM_CALIBRATION_BATCHES = 8
RECIPE = "aeq-static-wi8-ai8"  # what a cached file's name must change with


def require_quantizer() -> None:
    """BackendUnavailable naming the extra when the LiteRT quantizer is not installed."""
    _modules()


def _modules():  # type: ignore[no-untyped-def]
    try:
        from ai_edge_litert.interpreter import Interpreter
        from ai_edge_quantizer import quantizer, recipe
    except ImportError as exc:
        raise BackendUnavailable(
            f"int8 .tflite models need the LiteRT quantizer ({exc.name} is missing)",
            hint="install the tflite extra: pip install -e '.[tflite]'",
        ) from None
    return Interpreter, quantizer, recipe


def quantize_tflite(fp32_path: Path, out_path: Path, seed: int = 0) -> Path:
    """Write the static int8 model of ``fp32_path`` to ``out_path``."""
    interpreter_cls, _, _ = _modules()
    signatures = interpreter_cls(model_path=str(fp32_path)).get_signature_list()
    if len(signatures) != 1:
        raise ExportError(f"{fp32_path.name} has {len(signatures)} signatures; the quantizer needs one",
                          hint="export the model with a single signature")  # fmt: skip
    (key,) = signatures
    runner = interpreter_cls(model_path=str(fp32_path)).get_signature_runner(key)
    shapes = {name: tuple(detail["shape"]) for name, detail in runner.get_input_details().items()}
    rng = np.random.default_rng(seed)
    batches = [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
               for _ in range(RANDOM_CALIBRATION_BATCHES)]  # fmt: skip
    return _quantize(fp32_path, out_path, key, batches, ())


def _quantize(fp32_path: Path, out_path: Path, key: str, feeds: list[dict[str, np.ndarray]],
              float_scopes: Sequence[tuple[str, str]]) -> Path:  # fmt: skip
    """Run the quantizer's static int8 recipe, with ``float_scopes`` ((regex, TFLite op name)) left float; its
    prints, progress bar and warnings (calibration keeps every tensor and says so) are kept off hwlab's output."""
    _, quantizer, recipe = _modules()
    from ai_edge_quantizer import algorithm_manager, qtyping

    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            qt = quantizer.Quantizer(str(fp32_path))
            qt.load_quantization_recipe(recipe.static_wi8_ai8())
            for scope, op in float_scopes:
                qt.update_quantization_recipe(scope, qtyping.TFLOperationName(op),
                                              algorithm_key=algorithm_manager.AlgorithmName.NO_QUANTIZE)  # fmt: skip
            result = qt.quantize(qt.calibrate({key: feeds}))
    except Exception as exc:
        raise ExportError(
            f"the LiteRT quantizer could not quantise {fp32_path.name}: {type(exc).__name__}: {exc}",
            hint="check that the fp32 model runs in ai_edge_litert; report the model if it does",
        ) from exc
    out_path.write_bytes(bytes(result.quantized_model))
    return out_path


def module_scope(path: str) -> str:
    """A regex for a torch module's ops in a litert-torch model: their tensor names carry the module path as
    ``<class>_<attribute>`` segments after the root module's class (``torch...Sequential/hwlab.zoo.blocks.
    BasicBlock_3/..._shortcut/..._0``), several such paths joined by ``;`` for fused ops. Anchored at the
    root: ``0.0`` must not match the ``..._0/..._0`` inside every block."""
    return r"(^|;)[^/;]*/" + "/".join(rf"[^/;]*_{re.escape(part)}" for part in path.split(".")) + r"(;|$)"


def quantize_tflite_layers(
    fp32_path: Path,
    out_path: Path,
    layers: Sequence[tuple[str, bool]],
    batches: Sequence[np.ndarray],
    int8: Sequence[bool],
) -> Path:
    """The static int8 model of ``fp32_path`` with only the chosen layers at int8: ``layers`` are (torch module
    path, is a Linear) in order, ``int8`` says which; the others stay float (the quantizer's NO_QUANTIZE for
    their scope, which puts a Dequantize and a Quantize around them). Calibrated on ``batches`` (NCHW)."""
    interpreter_cls, quantizer, recipe = _modules()
    interpreter_cls, _, _ = _modules()
    ((key, signature),) = interpreter_cls(model_path=str(fp32_path)).get_signature_list().items()
    name = signature["inputs"][0]
    # The classifier's output is the graph's output, named after the signature, not the module.
    float_scopes = [(".*", "FULLY_CONNECTED") if linear else (module_scope(path), "*")
                    for (path, linear), low in zip(layers, int8, strict=True) if not low]  # fmt: skip
    return _quantize(fp32_path, out_path, key, [{name: b.astype(np.float32)} for b in batches], float_scopes)


def int8_layer_ops(path: Path) -> int:
    """Conv and fully-connected ops of a .tflite whose weights are int8: the layers that run int8."""
    interpreter_cls, _, _ = _modules()
    interpreter = interpreter_cls(model_path=str(path))
    interpreter.allocate_tensors()
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    kinds = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED")
    return sum(1 for op in interpreter._get_ops_details()
               if op["op_name"] in kinds and dtypes.get(op["inputs"][1]) == np.int8)  # fmt: skip


def litert_top1(path: Path, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 of a .tflite on (x, y), one image per call; an int8 input is quantised with the model's own
    scale and zero point, as a deployment does."""
    interpreter_cls, _, _ = _modules()
    interpreter = interpreter_cls(model_path=str(path))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    scale, zero = inp["quantization"]
    correct = 0
    for image, label in zip(x, y, strict=True):
        batch = image[None].astype(np.float32)
        if inp["dtype"] != np.float32:
            info = np.iinfo(inp["dtype"])
            batch = np.clip(np.round(batch / scale) + zero, info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        correct += int(np.argmax(interpreter.get_tensor(out["index"])) == label)
    return correct / max(len(y), 1)

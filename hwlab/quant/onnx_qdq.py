"""Static int8 ONNX models in the QDQ format, through onnxruntime's own quantiser.

The recipe is the one onnxruntime recommends for CPUs: ``quantize_static`` in the QDQ format,
activations uint8 (per tensor, asymmetric), weights int8 per channel (symmetric), MinMax
calibration. ``reduce_range`` (7-bit weights) is on by default: on x86 without VNNI onnxruntime
multiplies uint8 by int8 with AVX2's saturating ``vpmaddubsw``, and measured here on a 3x3 conv
(14x14x16 -> 32) the int8 output then strayed from fp32 by up to 13% of the output's range;
with reduce_range, 0.7%. It changes the weights' values, not the kernel onnxruntime picks
(QLinearConv either way); a device with VNNI (or an Arm CPU) can take full 8-bit weights with
``reduce_range=False``. onnxruntime fuses DequantizeLinear -> Conv -> QuantizeLinear into
QLinearConv when it loads the model, on the device: the optimised graph shows it (``qlinear_nodes``).
Calibration data: seeded random inputs for single ops (their latency does not depend on the ranges),
the caller's batches for whole models. ``nodes_to_exclude`` keeps chosen nodes in fp32: that is how a
mixed-precision assignment becomes one model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx

from hwlab.errors import ExportError

# Calibration batches of seeded random data for a single op: enough for stable MinMax ranges.
RANDOM_CALIBRATION_BATCHES = 8
RECIPE = "qdq-u8s8-perchannel-minmax-reducerange-noidentity"  # what a cached file's name must change with


def _reader(batches: Sequence[dict[str, np.ndarray]]):  # type: ignore[no-untyped-def]
    from onnxruntime.quantization import CalibrationDataReader

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._left: Iterator[dict[str, np.ndarray]] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._left, None)

        def rewind(self) -> None:
            self._left = iter(batches)

    return Batches()


def random_batches(model_path: Path, count: int = RANDOM_CALIBRATION_BATCHES, seed: int = 0) -> list[dict]:  # type: ignore[type-arg]
    """``count`` feeds of seeded standard-normal float32 data for the model's inputs."""
    model = onnx.load(str(model_path), load_external_data=False)
    rng = np.random.default_rng(seed)
    shapes = {
        i.name: tuple(d.dim_value or 1 for d in i.type.tensor_type.shape.dim) for i in model.graph.input
    }  # fmt: skip
    return [{name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
            for _ in range(count)]  # fmt: skip


def without_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with its Identity nodes bypassed. torch's exporter passes some weights through Identity
    nodes; the quantiser then sees a computed weight, quantises it per tensor as an activation, and
    onnxruntime runs that conv in fp32 between Dequantize nodes (measured: 12 of a ResNet's 15 convs)."""
    outputs = {o.name for o in model.graph.output}
    alias = {n.output[0]: n.input[0] for n in model.graph.node
             if n.op_type == "Identity" and n.output[0] not in outputs}  # fmt: skip
    if not alias:
        return model
    kept = [n for n in model.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for node in kept:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    del model.graph.node[:]
    model.graph.node.extend(kept)
    return model


def quantize_onnx(
    fp32_path: Path,
    out_path: Path,
    batches: Sequence[dict[str, np.ndarray]] | None = None,
    nodes_to_exclude: Sequence[str] = (),
    reduce_range: bool = True,
    op_types: Sequence[str] | None = None,
) -> Path:
    """Write the int8 QDQ model of ``fp32_path`` to ``out_path`` (every node but ``nodes_to_exclude``;
    only nodes of ``op_types`` when given)."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    feeds = list(batches) if batches is not None else random_batches(fp32_path)
    if not feeds:
        raise ExportError("no calibration batches to quantise with", hint="give at least one batch of inputs")
    source = out_path.with_name(f".{out_path.name}.fp32.onnx")
    onnx.save(without_identities(onnx.load(str(fp32_path))), str(source))
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # its advice to pre-process, once per model, on the root logger
    try:
        quantize_static(
            str(source), str(out_path), _reader(feeds), quant_format=QuantFormat.QDQ, per_channel=True,
            reduce_range=reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=list(nodes_to_exclude) or None,
            op_types_to_quantize=list(op_types) if op_types else None,
            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
        )  # fmt: skip
    except Exception as exc:
        raise ExportError(
            f"onnxruntime could not quantise {fp32_path.name} to int8: {type(exc).__name__}: {exc}",
            hint="check that the fp32 model runs in onnxruntime; report the model if it does",
        ) from exc
    finally:
        logging.disable(previous)
        source.unlink(missing_ok=True)
    return out_path


def qlinear_nodes(optimized_types: Sequence[str]) -> list[str]:
    """The node types of an optimised graph that compute in int8 (QLinearConv, MatMulInteger, QGemm, ...)."""
    return [t for t in optimized_types if t.startswith("QLinear") or t in ("MatMulInteger", "ConvInteger", "QGemm")]

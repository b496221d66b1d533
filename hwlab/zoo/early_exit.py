"""A small early-exit CNN in plain ONNX (an ``If`` node): the test model of a latency that depends on the input.

A cheap first stage (one stride-2 convolution, global pooling, a classifier) answers when it is sure:
its largest softmax probability above ``threshold``. Otherwise an ``If`` runs a second stage many
times heavier (full-resolution convolutions) on the input. The model also outputs which way it went
(``early``), so a test can check that both branches really run.

Built with the ``onnx`` helper API alone (no torch, nothing downloaded); weights are seeded. The
first stage has no biases, so a low-contrast input (near zero) gives near-uniform logits and goes
on to the second stage, and a high-contrast one gives confident logits and exits early:
:func:`early_exit_inputs` draws a seeded mix of both.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

INPUT = "x"
CLASSES = 10
STEM_CHANNELS = 8
OPSET = 17  # onnxruntime >= 1.13, as a board's older wheel may be
IR_VERSION = 8
EARLY_SCALE = 1.0  # input contrast of a sample meant to exit early (confident first stage)
LATE_SCALE = 0.01  # and of one meant to go on (first-stage logits near zero: uniform softmax)


@dataclass(frozen=True)
class EarlyExit:
    """The model's size: a ``size`` x ``size`` RGB input; the second stage has ``heavy_layers`` 3x3
    convolutions of ``heavy_channels`` at full resolution."""

    size: int = 32
    threshold: float = 0.5
    heavy_channels: int = 32
    heavy_layers: int = 3
    seed: int = 0

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (1, 3, self.size, self.size)

    def macs(self) -> tuple[int, int]:
        """(first stage, second stage) multiply-accumulates: how much more a late exit computes."""
        half = (self.size + 1) // 2
        early = half * half * STEM_CHANNELS * 27 + STEM_CHANNELS * CLASSES
        c, pixels = self.heavy_channels, self.size * self.size
        late = pixels * c * 27 + (self.heavy_layers - 1) * pixels * c * c * 9 + c * CLASSES
        return early, late


def _init(name: str, array: np.ndarray) -> onnx.TensorProto:
    return numpy_helper.from_array(array.astype(np.float32), name)


def _he(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int, gain: float = 1.0) -> np.ndarray:
    return rng.standard_normal(shape) * gain * np.sqrt(2.0 / fan_in)


def early_exit_model(spec: EarlyExit = EarlyExit()) -> onnx.ModelProto:
    """The early-exit network as an ONNX model: input ``x`` (1, 3, size, size); outputs ``logits`` (1, 10)
    and ``early`` (a bool scalar: the first stage answered)."""
    rng = np.random.default_rng(spec.seed)
    c = spec.heavy_channels
    inits = [
        _init("stem_w", _he(rng, (STEM_CHANNELS, 3, 3, 3), 27)),
        _init("head1_w", _he(rng, (CLASSES, STEM_CHANNELS), STEM_CHANNELS, gain=10.0)),  # confident on contrast
        _init("head1_b", np.zeros(CLASSES)),
        _init("threshold", np.array(spec.threshold)),
        _init("heavy_w0", _he(rng, (c, 3, 3, 3), 27)),
        *(_init(f"heavy_w{i}", _he(rng, (c, c, 3, 3), 9 * c)) for i in range(1, spec.heavy_layers)),
        _init("head2_w", _he(rng, (CLASSES, c), c)),
        _init("head2_b", np.zeros(CLASSES)),
    ]
    stage1 = [
        helper.make_node("Conv", [INPUT, "stem_w"], ["stem"], kernel_shape=[3, 3], strides=[2, 2], pads=[1] * 4),
        helper.make_node("Relu", ["stem"], ["stem_relu"]),
        helper.make_node("GlobalAveragePool", ["stem_relu"], ["stem_pool"]),
        helper.make_node("Flatten", ["stem_pool"], ["stem_flat"]),
        helper.make_node("Gemm", ["stem_flat", "head1_w", "head1_b"], ["logits1"], transB=1),
        helper.make_node("Softmax", ["logits1"], ["probs1"], axis=1),
        helper.make_node("ReduceMax", ["probs1"], ["confidence"], keepdims=0),
        helper.make_node("Greater", ["confidence", "threshold"], ["early"]),
    ]
    logits = helper.make_tensor_value_info
    then_branch = helper.make_graph(
        [helper.make_node("Identity", ["logits1"], ["then_logits"])],
        "early_exit_then",
        [],
        [logits("then_logits", TensorProto.FLOAT, [1, CLASSES])],
    )
    heavy, previous = [], INPUT
    for i in range(spec.heavy_layers):
        heavy += [
            helper.make_node("Conv", [previous, f"heavy_w{i}"], [f"heavy{i}"], kernel_shape=[3, 3], pads=[1] * 4),
            helper.make_node("Relu", [f"heavy{i}"], [f"heavy{i}_relu"]),
        ]
        previous = f"heavy{i}_relu"
    heavy += [
        helper.make_node("GlobalAveragePool", [previous], ["heavy_pool"]),
        helper.make_node("Flatten", ["heavy_pool"], ["heavy_flat"]),
        helper.make_node("Gemm", ["heavy_flat", "head2_w", "head2_b"], ["else_logits"], transB=1),
    ]
    else_branch = helper.make_graph(
        heavy, "early_exit_else", [], [logits("else_logits", TensorProto.FLOAT, [1, CLASSES])]
    )
    branch = helper.make_node("If", ["early"], ["logits"], then_branch=then_branch, else_branch=else_branch)
    graph = helper.make_graph(
        [*stage1, branch],
        "early_exit",
        [logits(INPUT, TensorProto.FLOAT, list(spec.input_shape))],
        [logits("logits", TensorProto.FLOAT, [1, CLASSES]), logits("early", TensorProto.BOOL, [])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="hwlab")
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def write_early_exit(path: Path, spec: EarlyExit = EarlyExit()) -> Path:
    """Save the model to ``path`` (the same bytes for the same spec)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(early_exit_model(spec), str(path))
    return path


def early_exit_inputs(
    count: int = 8, early_fraction: float = 0.5, seed: int = 0, spec: EarlyExit = EarlyExit()
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` inputs (N, 3, size, size) float32 and which of them are meant to exit early, in a seeded
    order: high-contrast samples (confident first stage) and near-zero ones (uniform first stage)."""
    rng = np.random.default_rng(seed)
    early = np.zeros(count, dtype=bool)
    early[: round(count * early_fraction)] = True
    rng.shuffle(early)
    scale = np.where(early, EARLY_SCALE, LATE_SCALE)[:, None, None, None]
    x = rng.standard_normal((count, *spec.input_shape[1:])) * scale
    return x.astype(np.float32), early


def write_early_exit_data(
    path: Path, count: int = 8, early_fraction: float = 0.5, seed: int = 0, spec: EarlyExit = EarlyExit()
) -> np.ndarray:
    """Save :func:`early_exit_inputs` as an ``--inputs`` archive (member ``x``: the sample axis is the batch
    axis); returns which samples are meant to exit early."""
    x, early = early_exit_inputs(count, early_fraction, seed, spec)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{INPUT: x})
    return early

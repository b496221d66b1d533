"""Predicted latency of SPOS architectures at search speed: one table lookup per layer.

A search scores tens of thousands of architectures of one space. Every block op
of the space is predicted once (cached by its key); an architecture is then its
base (stem, head and the model-level overhead, taken from one whole-network
prediction) plus 20 lookups, vectorised over a batch of architectures.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from hwlab.export import export_module, export_spec
from hwlab.predictors.graph import onnx_kernels
from hwlab.predictors.kernels import Kernel
from hwlab.predictors.predictor import Predictor
from hwlab.space import SPOS_CHOICES, SposConfig, spos_block_op
from hwlab.space.build import random_input


class SposLatencyTable:
    """Per-(layer, choice, scale) predicted block latencies of one SPOS space on one device."""

    def __init__(self, predictor: Predictor, config: SposConfig) -> None:
        self.config = config
        self.scales = tuple(config.channel_scales)
        layers = config.layers()
        self._by_key: dict[str, float] = {}
        # Predicted ms of every distinct block op and of one whole network, and how much of it comes from
        # kernels outside the predictor's domain (None: the predictor records no domain).
        self._predicted_ms = 0.0
        self._outside_ms: float | None = 0.0
        self.blocks = np.zeros((len(layers), len(SPOS_CHOICES), len(self.scales)))
        for i, layer in enumerate(layers):
            for c in range(len(SPOS_CHOICES)):
                for s, scale in enumerate(self.scales):
                    op = spos_block_op(layer, c, scale)
                    if op.key not in self._by_key:
                        self._by_key[op.key] = self._block_ms(predictor, export_spec(op, "onnx").path)
                    self.blocks[i, c, s] = self._by_key[op.key]
        reference = [0] * len(layers)
        whole = self._whole_ms(predictor, reference)
        self.base_ms = whole - float(self.blocks[np.arange(len(layers)), reference, self._scale_index(None)].sum())

    def _count(self, predictor: Predictor, kernels: list[Kernel], times: list[float]) -> None:
        self._predicted_ms += sum(times)
        outside = predictor.outside_domain(kernels)
        if outside is None or self._outside_ms is None:
            self._outside_ms = None
        else:
            self._outside_ms += sum(ms for ms, out in zip(times, outside, strict=True) if out)

    def _block_ms(self, predictor: Predictor, path) -> float:  # type: ignore[no-untyped-def]
        kernels = onnx_kernels(path, predictor.rules)
        times, _ = predictor.kernel_ms(kernels)
        self._count(predictor, kernels, times)
        return sum(times) + predictor.overhead.per_kernel_ms * len(kernels)

    def _whole_ms(self, predictor: Predictor, choices: Sequence[int]) -> float:
        from hwlab.zoo import SposNet

        net = SposNet(self.config, choices)
        path = export_module(net, random_input(net.input_shape), "onnx", name=net.name).path
        prediction = predictor.predict_onnx(path)
        self._count(predictor, [k for k, _ in prediction.kernels], [ms for _, ms in prediction.kernels])
        return prediction.total_ms

    @property
    def outside_share(self) -> float | None:
        """Share of the space's predicted time (every block op once, one whole network) that comes from kernels
        outside the predictor's domain; None when the predictor records no domain."""
        if self._outside_ms is None:
            return None
        return self._outside_ms / self._predicted_ms if self._predicted_ms > 0 else 0.0

    def _scale_index(self, scales: Sequence[float] | None) -> np.ndarray:
        if scales is None:
            return np.full(len(self.blocks), self.scales.index(1.0) if 1.0 in self.scales else 0)
        return np.array([self.scales.index(s) for s in scales])

    @property
    def distinct_ops(self) -> int:
        return len(self._by_key)

    def latency_ms(self, choices: Sequence[int], scales: Sequence[float] | None = None) -> float:
        """One architecture's predicted latency."""
        rows = np.arange(len(self.blocks))
        return self.base_ms + float(self.blocks[rows, np.asarray(choices), self._scale_index(scales)].sum())

    def batch_ms(self, choices: np.ndarray, scale_index: np.ndarray | None = None) -> np.ndarray:
        """Latencies of N architectures at once: ``choices`` and ``scale_index`` are (N, 20) integer arrays."""
        rows = np.arange(self.blocks.shape[0])[None, :]
        scale_index = np.zeros_like(choices) + self._scale_index(None)[None, :] if scale_index is None else scale_index
        return self.base_ms + self.blocks[rows, choices, scale_index].sum(axis=1)

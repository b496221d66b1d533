"""What a per-layer precision assignment costs: BitOps always, latency composed from measured rows.

BitOps (the SPOS paper's constraint): per layer, MACs x weight bits x activation bits.

Latency is composed from the device's precision table (``hwlab.quant.space``) around the measured fp32
network, so the ops that are not searched (pooling, Add, Concat, shuffle) and the runtime's fixed cost
are measured, never modelled:

    latency = fp32 network
            + sum over int8 layers of (int8 row - fp32 row)       [each int8 row holds its own Q and DQ]
            - Q(input)   of an int8 layer whose producers are all int8   [uint8 flows straight in]
            - DQ(output) of an int8 layer whose readers are all int8     [and straight out]

Q and DQ are the boundary rows of the layer's input and output tensor shapes (DQ = qdq - quantize; Q less
the runtime's fixed cost per inference, which a boundary inside a network does not pay).
An assignment with a width no runtime executes (int4, int2) has no latency.

Two effects of a real network are not in single-op rows, and are fitted on a few calibration networks
measured in the same job as the rows (uniform int8 and eight random mixed assignments, never the ones a
check scores): alone, each fp32 conv pays layout reorders that a chain of fp32 convs shares, so the rows
overstate what int8 saves (``scale`` of the summed int8 terms); and each switch left in the network (an
int8 layer's Q or DQ at an fp32 neighbour) costs more than its isolated model (``per_boundary_ms``, from
reorders around it and one more node). Measured on the ResNet, 50 random mixed assignments: unfitted,
composed/measured had median 0.88 (26% within +-10%); with the scale alone 0.92 (68%); with both terms
fitted on 6 to 10 other assignments 1.01 (97% within +-10%, 83% within +-5%).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from hwlab.errors import TableError
from hwlab.quant.boundary import boundary_key
from hwlab.quant.network import GRAPH_INPUT, Layer
from hwlab.quant.precision import precision
from hwlab.space.opspec import OpSpec


def layer_bitops(macs: int, prec: str) -> int:
    p = precision(prec)
    return macs * p.weight_bits * p.activation_bits


def bitops(layers: Sequence[Layer], assignment: Sequence[str]) -> int:
    """BitOps of the whole assignment (fp32 layers count 32 x 32 bits per MAC)."""
    return sum(layer_bitops(layer.macs, p) for layer, p in zip(layers, assignment, strict=True))


def _tensor(spec: OpSpec, output: bool) -> tuple[int, int, int]:
    """(channels, height, width) of the spec's input or output tensor."""
    shape = spec.output_shape() if output else spec.input_shapes()[0]
    return (shape[1], shape[2], shape[3]) if len(shape) == 4 else (shape[1], 1, 1)


@dataclass(frozen=True)
class LayerCost:
    """One layer's measured figures (ms): the int8 row less the fp32 row, and its Q and DQ."""

    delta_int8: float
    quantize_in: float
    dequantize_out: float


@dataclass(frozen=True)
class ComposedLatency:
    """The measured fp32 network plus each layer's measured int8 change and boundaries (module doc)."""

    network_fp32_ms: float
    layers: tuple[Layer, ...]
    costs: tuple[LayerCost, ...]
    scale: float = 1.0  # of the summed int8 terms, fitted on calibration networks
    per_boundary_ms: float = 0.0  # each Q or DQ left between an int8 layer and an fp32 neighbour

    @classmethod
    def from_rows(cls, layers: Sequence[Layer], network_fp32_ms: float, ms: Mapping[str, float]) -> ComposedLatency:
        """From measured figures by key (``ms``: the table's ok rows); a missing row is an error naming it."""

        def row(key: str) -> float:
            if key not in ms:
                raise TableError(
                    f"the precision table has no measured row {key}",
                    hint="profile the network's layers at fp32 and int8 first (hwlab qsearch does)",
                )
            return ms[key]

        # Every single-op row holds the runtime's fixed cost of one inference; a boundary inside a network
        # does not. The smallest quantize row (the classifier's 1x1xC tensor) is little else: it is taken off.
        fixed = min(row(boundary_key("quantize", *_tensor(layer.spec, output=out))) for layer in layers
                    for out in (False, True))  # fmt: skip
        costs = []
        for layer in layers:
            fp32 = layer.spec
            int8 = replace(fp32, prec="int8")
            cin, hin, win = _tensor(fp32, output=False)
            cout, hout, wout = _tensor(fp32, output=True)
            q_in = max(0.0, row(boundary_key("quantize", cin, hin, win)) - fixed)
            q_out = row(boundary_key("quantize", cout, hout, wout))
            dq_out = max(0.0, row(boundary_key("qdq", cout, hout, wout)) - q_out)
            costs.append(LayerCost(row(int8.key) - row(fp32.key), q_in, dq_out))
        return cls(network_fp32_ms, tuple(layers), tuple(costs))

    def terms(self, assignment: Sequence[str]) -> tuple[float, int]:
        """(summed int8 terms in ms, boundaries left) of a deployable assignment."""
        int8 = [p == "int8" for p in assignment]
        total, boundaries = 0.0, 0
        for layer, cost, low in zip(self.layers, self.costs, int8, strict=True):
            if not low:
                continue
            total += cost.delta_int8
            if all(p != GRAPH_INPUT and int8[p] for p in layer.producers):
                total -= cost.quantize_in
            else:
                boundaries += 1
            if all(c != GRAPH_INPUT and int8[c] for c in layer.consumers):
                total -= cost.dequantize_out
            else:
                boundaries += 1
        return total, boundaries

    def fitted(self, measured: Sequence[tuple[Sequence[str], float]]) -> ComposedLatency:
        """``scale`` and ``per_boundary_ms`` by least squares on measured (assignment, ms) networks; both
        are kept non-negative (a term that fits negative is dropped and the other refitted)."""
        x = np.array([self.terms(a) for a, _ in measured], dtype=float)
        y = np.array([ms - self.network_fp32_ms for _, ms in measured], dtype=float)
        if len(y) == 0:
            return self
        coef = np.linalg.lstsq(x, y, rcond=None)[0] if len(y) >= 2 else np.array([y[0] / x[0, 0], 0.0])
        if coef[1] < 0 or len(y) < 2:
            coef = np.array([float(x[:, 0] @ y / max(x[:, 0] @ x[:, 0], 1e-12)), 0.0])
        if coef[0] < 0:
            coef = np.array([0.0, max(0.0, float(x[:, 1] @ y / max(x[:, 1] @ x[:, 1], 1e-12)))])
        return replace(self, scale=float(coef[0]), per_boundary_ms=float(coef[1]))

    def __call__(self, assignment: Sequence[str]) -> float | None:
        """Composed latency (ms) of ``assignment``; None when a layer is at a width with no latency."""
        if any(not precision(p).deployable for p in assignment):
            return None
        total, boundaries = self.terms(assignment)
        return self.network_fp32_ms + self.scale * total + self.per_boundary_ms * boundaries

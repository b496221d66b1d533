"""Fake quantisation: a network whose convolutions and classifier run at a bit-width chosen per forward pass.

The quantisation-aware supernet of SPOS's bit-width search: every searchable layer keeps one set of
full-precision weights (shared by all widths), and each forward pass quantises them on the fly to the
width the sampled path gives that layer, so training with uniformly sampled widths trains one set of
weights for every assignment.

- Weights: per output channel, symmetric, ``2**(bits-1) - 1`` levels each side. At int8 the levels are
  those of the deployed recipe (``onnx_qdq``: 7-bit weights, ``reduce_range``), so the fake-quantised
  network computes what onnxruntime's int8 model computes.
- Activations (the layer's input): per tensor, asymmetric (unsigned levels with a zero point, onnxruntime's
  uint8), over a range tracked as an exponential moving average of the batch minimum and maximum while
  training; the running range is used as is in eval mode. One range per layer and width.
- Gradients pass straight through the rounding (STE); the range clips them, as in LSQ/PACT's hard form.

Widths below 8 bits (int4, int2) are the paper's BitOps-only choices: no runtime here executes them, so they
have a BitOps cost and never a latency (``hwlab.quant.precision``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.errors import SearchError
from hwlab.quant.precision import precision

RANGE_MOMENTUM = 0.1  # EMA of the activation range per training batch
INT8_WEIGHT_LEVELS = 63  # reduce_range: onnxruntime's int8 weights use 7 bits (see onnx_qdq)


def weight_levels(bits: int) -> int:
    """Positive levels of a symmetric weight grid at ``bits`` (the deployed int8 recipe keeps 7 bits)."""
    return INT8_WEIGHT_LEVELS if bits == 8 else 2 ** (bits - 1) - 1


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def fake_quant_weight(weight: torch.Tensor, bits: int) -> torch.Tensor:
    """Per-output-channel symmetric fake quantisation of a conv or linear weight."""
    levels = weight_levels(bits)
    flat = weight.detach().reshape(weight.shape[0], -1).abs().amax(dim=1)
    scale = (flat / levels).clamp_min(1e-12).reshape(-1, *([1] * (weight.dim() - 1)))
    return torch.clamp(_round_ste(weight / scale), -levels, levels) * scale


def activation_grid(low: float, high: float, bits: int) -> tuple[float, float]:
    """(scale, zero point) of an unsigned grid over [low, high] that holds 0 exactly, as onnxruntime's
    MinMax calibration makes it."""
    low, high = min(low, 0.0), max(high, 0.0)
    top = 2**bits - 1
    scale = max((high - low) / top, 1e-12)
    return scale, float(min(max(round(-low / scale), 0), top))


def fake_quant_activation(x: torch.Tensor, low: float, high: float, bits: int) -> torch.Tensor:
    """Per-tensor asymmetric fake quantisation of ``x`` over [low, high]."""
    scale, zero = activation_grid(low, high, bits)
    q = torch.clamp(_round_ste(x / scale) + zero, 0, 2**bits - 1)
    return (q - zero) * scale


class QuantLayer(nn.Module):
    """A conv or linear layer that quantises its weight and input to ``self.bits`` (None: fp32)."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, widths: Sequence[int]) -> None:
        super().__init__()
        self.layer = layer
        self.bits: int | None = None
        self.track = True  # update the range in training mode (off while BN is recalibrated)
        self.widths = tuple(widths)
        # Per width: (min, max) of the input seen in training; NaN until the first batch.
        self.register_buffer("ranges", torch.full((len(self.widths), 2), float("nan")))

    def _range(self, x: torch.Tensor, bits: int) -> tuple[float, float]:
        row = self.widths.index(bits)
        if self.training and self.track:
            low, high = float(x.detach().min()), float(x.detach().max())
            old = self.ranges[row]
            if not torch.isnan(old).any():
                low = float(old[0]) + RANGE_MOMENTUM * (low - float(old[0]))
                high = float(old[1]) + RANGE_MOMENTUM * (high - float(old[1]))
            self.ranges[row] = torch.tensor([low, high])
        low, high = (float(v) for v in self.ranges[row])
        if low != low:  # never trained at this width: the batch's own range
            low, high = float(x.detach().min()), float(x.detach().max())
        return low, high

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bits is None:
            return self.layer(x)
        x = fake_quant_activation(x, *self._range(x, self.bits), self.bits)
        w = fake_quant_weight(self.layer.weight, self.bits)
        if isinstance(self.layer, nn.Linear):
            return F.linear(x, w, self.layer.bias)
        c = self.layer
        return F.conv2d(x, w, c.bias, c.stride, c.padding, c.dilation, c.groups)


class QuantNet(nn.Module):
    """``net`` with every Conv2d and Linear wrapped in a :class:`QuantLayer`, in the order a forward pass
    runs them (the order of the exported graph's Conv and Gemm nodes). ``forward(x, precisions)`` runs
    the network with layer ``i`` at ``precisions[i]`` ("fp32", "int8", "int4", "int2")."""

    def __init__(self, net: nn.Module, example: torch.Tensor, precisions: Sequence[str]) -> None:
        super().__init__()
        widths = sorted({precision(p).weight_bits for p in precisions if p != "fp32"})
        order: list[nn.Module] = []
        hooks = [m.register_forward_hook(lambda m, i, o: order.append(m))
                 for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]  # fmt: skip
        with torch.no_grad():
            net.eval()(example)
        for h in hooks:
            h.remove()
        if len(set(map(id, order))) != len(order):
            raise SearchError("a layer runs twice in one forward pass", hint="search networks whose layers run once")
        wrapped = {id(m): QuantLayer(m, widths) for m in order}
        for parent in list(net.modules()):
            for name, child in list(parent.named_children()):
                if id(child) in wrapped:
                    setattr(parent, name, wrapped[id(child)])
        self.net = net
        self.layers = nn.ModuleList(wrapped[id(m)] for m in order)

    def layer_paths(self) -> list[tuple[str, bool]]:
        """(module path of each layer's conv or linear inside ``self.net``, whether it is a Linear), in order."""
        names = {id(m): n for n, m in self.net.named_modules()}
        return [(names[id(q.layer)], isinstance(q.layer, nn.Linear)) for q in self.layers]

    @property
    def track_ranges(self) -> bool:
        return all(layer.track for layer in self.layers)

    @track_ranges.setter
    def track_ranges(self, on: bool) -> None:
        for layer in self.layers:
            layer.track = on

    def set_precisions(self, precisions: Sequence[str]) -> None:
        if len(precisions) != len(self.layers):
            raise SearchError(f"{len(precisions)} precisions for {len(self.layers)} layers",
                              hint="give one precision per searchable layer")  # fmt: skip
        for layer, prec in zip(self.layers, precisions, strict=True):
            layer.bits = None if prec == "fp32" else precision(prec).weight_bits

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor]) -> None:
        """Every layer's activation range from the fp32 network's inputs over ``batches`` (global min and
        max, as onnxruntime's MinMax calibration of the deployed model), for every width."""
        seen: dict[int, tuple[float, float]] = {}

        def record(index: int):  # type: ignore[no-untyped-def]
            def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                low, high = float(inputs[0].min()), float(inputs[0].max())
                old = seen.get(index, (low, high))
                seen[index] = (min(old[0], low), max(old[1], high))

            return hook

        hooks = [layer.register_forward_pre_hook(record(i)) for i, layer in enumerate(self.layers)]
        self.eval()
        try:
            for x in batches:
                self(x, ["fp32"] * len(self.layers))
        finally:
            for h in hooks:
                h.remove()
        for i, layer in enumerate(self.layers):
            if i in seen:
                layer.ranges[:] = torch.tensor(seen[i])

    def forward(self, x: torch.Tensor, precisions: Sequence[str] | None = None) -> torch.Tensor:
        if precisions is not None:
            self.set_precisions(precisions)
        return self.net(x)

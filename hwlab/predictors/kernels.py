"""Kernels: what a runtime actually executes once it has fused neighbouring ops.

A model's latency is predicted per kernel, not per op: onnxruntime runs a
Conv followed by a Relu as one FusedConv, so their latencies do not add. Which
pairs fuse is measured per (device, backend) and kept as :class:`FusionRules`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

# Op categories the graph splitter knows (ONNX op types map onto these).
CATEGORIES = (
    "conv", "dwconv", "fc", "bn", "relu", "relu6", "hswish", "sigmoid", "swish", "add", "mul", "concat",
    "maxpool", "avgpool", "gap", "reshape", "transpose", "slice", "gather", "split", "flatten", "pad",
    "convtranspose", "matmul", "leakyrelu", "prelu", "tanh", "hsigmoid", "clip", "minmax", "div", "softmax",
    "reduce", "resize", "dynconv",
)  # fmt: skip

# The numeric features of every kernel, in the order regressors see them.
FEATURES = (
    "h", "w", "cin", "cout", "kernel", "stride", "groups", "flops", "params", "bytes_in", "bytes_out",
)  # fmt: skip

DEFAULT_ALPHA = 0.5


@dataclass(frozen=True)
class FusionEvidence:
    """One measured pair: each op alone and the two together (ms), and the runtime's fixed cost of
    one inference (``overhead_ms``, measured on a model that does almost nothing).

    Every standalone model pays that fixed cost once, so without removing it two
    ops measured apart always look "fused" by exactly that much.
    """

    first: str
    second: str
    t_first_ms: float
    t_second_ms: float
    t_pair_ms: float
    overhead_ms: float = 0.0

    @property
    def saving_ms(self) -> float:
        """(T1 - O) + (T2 - O) - (T12 - O): what running them together saves, fixed cost removed."""
        return self.t_first_ms + self.t_second_ms - self.t_pair_ms - self.overhead_ms

    def fused(self, alpha: float = DEFAULT_ALPHA) -> bool:
        """nn-Meter's test on overhead-free times: fused when the saving exceeds alpha * min(T1, T2)."""
        return self.saving_ms > alpha * min(self.t_first_ms - self.overhead_ms, self.t_second_ms - self.overhead_ms)


@dataclass(frozen=True)
class FusionRules:
    """The (first, second) category pairs a runtime fuses, with the measurements that decided them.

    ``seen_in_graph``: the pairs decided by the runtime's own optimised graph (it ran the two ops as one node,
    or as two) rather than by timing; timing evidence is kept for them too, as a cross-check.
    """

    fused: frozenset[tuple[str, str]]
    alpha: float = DEFAULT_ALPHA
    evidence: tuple[FusionEvidence, ...] = field(default=())
    seen_in_graph: frozenset[tuple[str, str]] = frozenset()

    def fuses(self, first: str, second: str) -> bool:
        return (first, second) in self.fused

    @property
    def fixed_cost_ms(self) -> float | None:
        """The runtime's measured fixed cost of one inference (None when no pair was measured)."""
        return self.evidence[0].overhead_ms if self.evidence else None

    @classmethod
    def from_evidence(cls, evidence: list[FusionEvidence], alpha: float = DEFAULT_ALPHA) -> FusionRules:
        return cls(frozenset((e.first, e.second) for e in evidence if e.fused(alpha)), alpha, tuple(evidence))

    def to_json(self) -> dict[str, Any]:
        return {
            "alpha": self.alpha,
            "fused": sorted(list(p) for p in self.fused),
            "evidence": [e.__dict__ for e in self.evidence],
            "seen_in_graph": sorted(list(p) for p in self.seen_in_graph),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FusionRules:
        """Rules read back from a file; raises ValueError on anything that is not a category or a finite number."""
        if not isinstance(data, dict):
            raise ValueError("fusion rules must be an object")
        pairs, seen = data["fused"], data.get("seen_in_graph", [])
        for name, value in (("fused", pairs), ("seen_in_graph", seen)):
            if not isinstance(value, list) or not all(
                isinstance(p, list) and len(p) == 2 and all(c in CATEGORIES for c in p) for p in value
            ):
                raise ValueError(f"'{name}' must be a list of [category, category] pairs of known categories")
        evidence = data.get("evidence", [])
        if not isinstance(evidence, list):
            raise ValueError("'evidence' must be a list")
        for e in evidence:
            if (
                not isinstance(e, dict)
                or set(e) - _EVIDENCE_FIELDS
                or e.get("first") not in CATEGORIES
                or (e.get("second") not in CATEGORIES)
            ):
                raise ValueError(f"evidence {e!r} is not a measured pair of known categories")
            if not all(_finite_number(e.get(f)) for f in _EVIDENCE_FIELDS - {"first", "second", "overhead_ms"}) or (
                not _finite_number(e.get("overhead_ms", 0.0))
            ):
                raise ValueError(f"evidence {e.get('first')}+{e.get('second')}: times must be finite numbers")
        alpha = data["alpha"]
        if not _finite_number(alpha):
            raise ValueError("'alpha' must be a finite number")
        return cls(
            frozenset((a, b) for a, b in pairs),
            float(alpha),
            tuple(FusionEvidence(**e) for e in evidence),
            frozenset((a, b) for a, b in seen),
        )


_EVIDENCE_FIELDS = frozenset(("first", "second", "t_first_ms", "t_second_ms", "t_pair_ms", "overhead_ms"))


def _finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class Kernel:
    """One executed kernel: its type (categories joined by '+'), the ONNX nodes in it, its features."""

    type: str
    nodes: tuple[str, ...]
    features: dict[str, float]

    def vector(self) -> list[float]:
        return [float(self.features.get(name, 0.0)) for name in FEATURES]

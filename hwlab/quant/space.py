"""A space at several precisions: every op at each, plus the boundary models its int8 ops need.

``hwlab profile --space spos --precisions fp32,int8`` measures into the same table as fp32 alone
(fp32 keys are unchanged), so a table profiled at fp32 yesterday resumes with only the int8 rows
and boundaries missing. ``precision_ratios`` reads such a table back: per op type, int8 over fp32.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hwlab.quant.boundary import BOUNDARY_KINDS, boundary_exporter, boundary_fields, boundary_key
from hwlab.quant.precision import require_writable
from hwlab.space.opspec import OpSpec

BOUNDARY_BACKENDS = ("onnxruntime",)  # where boundary models are written and an int8 row holds its Q and DQ


def _tensor_shapes(spec: OpSpec) -> set[tuple[int, int, int]]:
    """(channels, height, width) of the spec's inputs and output: where a precision switch can happen."""
    shapes = {(s[1], s[2], s[3]) if len(s) == 4 else (s[1], 1, 1) for s in spec.input_shapes()}
    out = spec.output_shape()
    shapes.add((out[1], out[2], out[3]) if len(out) == 4 else (out[1], 1, 1))
    return shapes


def boundary_items(specs: Iterable[OpSpec], prec: str = "int8") -> list[Any]:
    """One quantize and one qdq model per distinct tensor shape of ``specs``."""
    from hwlab.profile import ModelItem

    shapes: set[tuple[int, int, int]] = set()
    for spec in specs:
        shapes |= _tensor_shapes(spec)
    items = []
    for channels, height, width in sorted(shapes):
        for kind in BOUNDARY_KINDS:
            key = boundary_key(kind, channels, height, width, prec)
            shape = (1, channels, height, width) if (height, width) != (1, 1) else (1, channels)
            items.append(ModelItem(key, boundary_fields(kind, channels, height, width, prec),
                                   boundary_exporter(kind, shape, key)))  # fmt: skip
    return items


def at_precisions(specs: Sequence[Any], precisions: Sequence[str], backend: str) -> list[Any]:
    """Every OpSpec of ``specs`` at each precision (other items as they are), then the boundaries; a precision
    hwlab cannot write for ``backend`` is refused first. Boundary models are written for onnxruntime only: a
    LiteRT int8 model takes and returns int8 (``litert_int8``), so its boundaries are not in its rows."""
    require_writable(backend, list(precisions))
    out: list[Any] = []
    ops = [s for s in specs if isinstance(s, OpSpec)]
    for prec in precisions:
        out += [replace(s, prec=prec) for s in ops]
    out += [s for s in specs if not isinstance(s, OpSpec)]
    for prec in precisions:
        if prec != "fp32" and backend in BOUNDARY_BACKENDS:
            out += boundary_items(ops, prec)
    return out


@dataclass(frozen=True)
class PrecisionRatio:
    """int8 over fp32 for one op type: the median ratio of matched rows, how many, and how many failed."""

    op: str
    prec: str
    ratio: float | None
    pairs: int
    failed: int
    faster: int  # pairs where the lower precision ran faster

    @property
    def pays(self) -> bool | None:
        return None if self.ratio is None else self.ratio < 1.0


def precision_ratios(rows: Iterable[dict[str, Any]], prec: str = "int8") -> list[PrecisionRatio]:
    """Per op type, the measured ``prec``/fp32 latency ratio over ops measured at both (and failures at ``prec``)."""
    by_key = {r["key"]: r for r in rows}
    ratios: dict[str, list[float]] = defaultdict(list)
    failed: dict[str, int] = defaultdict(int)
    suffix = f"-prec:{prec}"
    for key, row in by_key.items():
        if not key.endswith(suffix) or key.startswith("boundary-"):
            continue
        op = row.get("op") or key.split("-")[0]
        twin = by_key.get(key[: -len(suffix)])
        if row.get("status") != "ok":
            failed[op] += 1
            continue
        if twin is not None and twin.get("status") == "ok" and twin.get("median_ms"):
            ratios[op].append(row["median_ms"] / twin["median_ms"])
    return [
        PrecisionRatio(
            op,
            prec,
            statistics.median(ratios[op]) if ratios[op] else None,
            len(ratios[op]),
            failed[op],
            sum(r < 1.0 for r in ratios[op]),
        )  # fmt: skip
        for op in sorted(set(ratios) | set(failed))
    ]

"""The precisions an op may run at, and which of them a runtime can execute at all.

On CPUs the precisions that pay off per convolution are fp32 and static int8 (W8A8: per-channel
symmetric int8 weights, per-tensor uint8 activations), so those are the deployable ones. The lower
widths of the SPOS paper's quantisation experiment (4 and 2 bits) are searched for their BitOps cost
only: no runtime hwlab drives executes them, so they never get a latency, and asking to export or
measure one is an error saying so. Whether int8 is *faster* on a device is measured, never assumed
(``hwlab doctor``; the int8/fp32 ratio per op type in a precision table).
"""

from __future__ import annotations

from dataclasses import dataclass

from hwlab.errors import PrecisionUnsupported
from hwlab.space.kinds import PRECISIONS


@dataclass(frozen=True)
class Precision:
    """A precision: its weight and activation bit widths, and whether a runtime can execute it."""

    name: str
    weight_bits: int
    activation_bits: int
    deployable: bool


_ALL = {
    "fp32": Precision("fp32", 32, 32, True),
    "int8": Precision("int8", 8, 8, True),
    "int4": Precision("int4", 4, 4, False),
    "int2": Precision("int2", 2, 2, False),
}
assert tuple(_ALL) == PRECISIONS, "kinds.PRECISIONS and the precisions described here must agree"

DEPLOYABLE: tuple[str, ...] = tuple(name for name, p in _ALL.items() if p.deployable)
BITOPS_ONLY = "BitOps cost only: no runtime hwlab drives executes it, so it has no latency"


def precision(name: str) -> Precision:
    """The precision called ``name``; an error listing the known ones otherwise."""
    try:
        return _ALL[name]
    except (KeyError, TypeError):
        raise PrecisionUnsupported(f"unknown precision {name!r}", hint=f"use one of: {', '.join(PRECISIONS)}") from None


def require_deployable(name: str, what: str) -> Precision:
    """``name``'s precision when a runtime can execute it; else an error naming it and ``what`` wanted it."""
    found = precision(name)
    if not found.deployable:
        raise PrecisionUnsupported(
            f"{what} at {name}: {name} has a {BITOPS_ONLY}",
            hint=f"measure or export at {' or '.join(DEPLOYABLE)}; search {name} under --bitops",
        )
    return found


def parse_precisions(text: str) -> tuple[str, ...]:
    """``"fp32,int8"`` -> ("fp32", "int8"): each deployable, none twice."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    if not names:
        raise PrecisionUnsupported("no precision given", hint=f"e.g. --precisions {','.join(DEPLOYABLE)}")
    if len(set(names)) != len(names):
        raise PrecisionUnsupported(f"a precision is named twice in {text!r}", hint="name each once")
    for name in names:
        require_deployable(name, "measuring")
    return names


# The precisions hwlab can write a model at, per runtime. Whether the runtime then executes it, and
# faster, is measured (a model that fails to load is an error row; the ratio is in precision_ratios).
WRITABLE: dict[str, tuple[str, ...]] = {"onnxruntime": ("fp32", "int8"), "litert": ("fp32", "int8"), "torch": ("fp32",)}


def require_writable(backend: str, names: tuple[str, ...] | list[str]) -> None:
    """Refuse, before anything is exported, a precision hwlab cannot write a model at for ``backend``."""
    for name in names:
        require_deployable(name, "profiling")
        if name not in WRITABLE.get(backend, ("fp32",)):
            raise PrecisionUnsupported(
                f"{backend} cannot be profiled at {name}: hwlab writes {name} models for"
                f" {', '.join(b for b, p in WRITABLE.items() if name in p)} only so far",
                hint=f"profile {name} with --backend onnxruntime, or {backend} with --precisions fp32",
            )

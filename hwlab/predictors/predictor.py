"""Predict a model's latency: split it into kernels, predict each, add the learned overhead.

    total = sum of kernel predictions + per_kernel_ms * kernels + fixed_ms

Standalone kernels were measured one model each, so each kernel prediction holds
one inference's fixed cost, which a real graph does not pay per kernel:
per_kernel_ms takes it back. It is the fixed cost measured on a model that does
almost nothing (with the fusion rules, or beside the calibration models), not a fitted number: a fitted one drifts with
whichever calibration models it sees. fixed_ms, fitted on whole models measured
end to end, adds what a graph pays once. That fixed cost is also the floor of
every kernel and every model (no inference took less): no prediction is below it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwlab.errors import InvalidRequest, PredictorError, UnknownKernelError
from hwlab.names import inside, name_problem
from hwlab.predictors.graph import UNKNOWN_PREFIX, onnx_kernels
from hwlab.predictors.kernels import Kernel
from hwlab.predictors.store import LoadedPredictor, load_predictor


@dataclass(frozen=True)
class Overhead:
    """The model-level term: per_kernel_ms for each kernel, plus fixed_ms once.

    ``floor_ms`` is the runtime's measured fixed cost of one inference (0: unknown). No kernel measured
    alone took less, so no such kernel is predicted below it, and no model: its kernels' net times are then
    never negative and ``fixed_ms`` is fitted no lower than it. Kernels learned inside whole models
    (ingraph.py) hold no fixed cost: ``kernel_floor_ms`` is 0 for them and ``fixed_ms`` adds it once.
    """

    per_kernel_ms: float = 0.0
    fixed_ms: float = 0.0
    floor_ms: float = 0.0
    kernel_floor_ms: float | None = None  # None: floor_ms (kernels measured alone); 0 for kernels in graphs

    @property
    def kernel_floor(self) -> float:
        return self.floor_ms if self.kernel_floor_ms is None else self.kernel_floor_ms

    def __call__(self, kernels: int) -> float:
        return self.per_kernel_ms * kernels + self.fixed_ms


@dataclass
class Prediction:
    """A model's predicted latency with its per-kernel breakdown."""

    total_ms: float
    kernels: list[tuple[Kernel, float]]
    overhead_ms: float
    missing: list[str] = field(default_factory=list)  # kernel types predicted as 0 (lower bound)
    outside: list[bool] | None = None  # per kernel: outside the features its type was fitted on (None: unknown)

    @property
    def lower_bound(self) -> bool:
        return bool(self.missing)

    @property
    def outside_ms(self) -> float | None:
        """Predicted time of the kernels outside the predictor's domain (None: it records no domain)."""
        if self.outside is None:
            return None
        return sum(ms for (_, ms), out in zip(self.kernels, self.outside, strict=True) if out)

    @property
    def outside_share(self) -> float | None:
        """Share of the kernels' predicted time that comes from kernels outside the domain: extrapolated."""
        outside, total = self.outside_ms, sum(ms for _, ms in self.kernels)
        return None if outside is None else (outside / total if total > 0 else 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "latency_ms": self.total_ms,
            "lower_bound": self.lower_bound,
            "missing_kernel_types": sorted(set(self.missing)),
            "overhead_ms": self.overhead_ms,
            "outside_domain_share": self.outside_share,
            "kernels": [
                {"type": k.type, "nodes": list(k.nodes), "latency_ms": ms, "features": k.features,
                 "outside_domain": None if self.outside is None else self.outside[i]}
                for i, (k, ms) in enumerate(self.kernels)
            ],
        }  # fmt: skip


def predictor_dir(root: Path, device: str, backend: str) -> Path:
    """``root/device/backend``: two safe names, never a folder outside ``root``."""
    for what, value in (("device", device), ("backend", backend)):
        problem = name_problem(value)
        if problem:
            raise PredictorError(f"{what} {problem}", hint="predictors are found by device and backend name")
    return inside(Path(root), device, backend)


def fitted_backends(root: Path, device: str) -> list[str]:
    """The backends with a predictor fitted for ``device`` under ``root`` (by folder; each is checked when loaded)."""
    problem = name_problem(device)
    if problem:
        raise PredictorError(f"device {problem}", hint="predictors are found by device and backend name")
    folder = inside(Path(root), device)
    return sorted(p.parent.name for p in folder.glob("*/predictor.json") if not name_problem(p.parent.name))


class Predictor:
    """A loaded predictor for one (device, backend)."""

    def __init__(self, loaded: LoadedPredictor) -> None:
        self.loaded = loaded
        self.rules = loaded.rules
        self.overhead = Overhead(**loaded.meta.get("overhead", {}))

    @classmethod
    def load(
        cls, device: str, backend: str, root: str | os.PathLike[str] = "predictors", *, force: bool = False
    ) -> Predictor:
        """The predictor fitted for ``device`` and ``backend``; one whose own metadata names another device
        or backend (a folder copied or renamed) is refused unless ``force``."""
        folder = predictor_dir(Path(root), device, backend)
        if not (folder / "predictor.json").exists():
            raise PredictorError(
                f"no predictor for {device}/{backend} in {root}",
                hint=f"train one: hwlab predictors fit --device {device} --backend {backend}",
            )
        loaded = load_predictor(folder)
        fitted = (loaded.meta.get("device"), loaded.meta.get("backend"))
        if fitted != (device, backend) and not force:
            raise PredictorError(
                f"{folder} holds a predictor fitted for {fitted[0]}/{fitted[1]}, not {device}/{backend}",
                hint=f"fit one for {device}/{backend} (hwlab predictors fit), or pass --force to use it anyway",
            )
        return cls(loaded)

    def kernel_ms(self, kernels: list[Kernel], allow_unknown: bool = False) -> tuple[list[float], list[str]]:
        """Predicted ms per kernel (batched per type), and the types predicted as 0 for want of a regressor."""
        known = set(self.loaded.kernel_types)
        missing = sorted({k.type for k in kernels if k.type not in known})
        if missing and not allow_unknown:
            raise UnknownKernelError(
                f"the predictor has no regressor for kernel type(s) {', '.join(missing)}",
                hint="profile kernels of these types (hwlab predictors fit with models that contain them),"
                " or pass --allow-unknown for a lower bound",
            )
        out = [0.0] * len(kernels)
        by_type: dict[str, list[int]] = {}
        for i, k in enumerate(kernels):
            if k.type in known:
                by_type.setdefault(k.type, []).append(i)
        floor = self.overhead.kernel_floor
        for kernel_type, idx in by_type.items():
            X = np.array([kernels[i].vector() for i in idx])
            for i, ms in zip(idx, self.loaded.predict(kernel_type, X), strict=True):
                out[i] = max(float(ms), floor)
        return out, [k.type for k in kernels if k.type not in known]

    def outside_domain(self, kernels: list[Kernel]) -> list[bool] | None:
        """Per kernel, whether a feature lies outside what its type was fitted on (an unknown type is outside);
        None when the predictor records no domains (fitted before they were kept)."""
        flags: list[bool] = []
        for k in kernels:
            if k.type not in self.loaded.ensembles:
                flags.append(True)
                continue
            out = self.loaded.outside(k.type, np.array(k.vector()))
            if out is None:
                return None
            flags.append(bool(out[0]))
        return flags

    def predict_kernels(self, kernels: list[Kernel], allow_unknown: bool = False) -> Prediction:
        times, missing = self.kernel_ms(kernels, allow_unknown)
        overhead = self.overhead(len(kernels))
        total = max(sum(times) + overhead, self.overhead.floor_ms)
        kernel_times = list(zip(kernels, times, strict=True))
        return Prediction(total, kernel_times, overhead, missing, self.outside_domain(kernels))

    def predict_onnx(self, path: str | os.PathLike[str], allow_unknown: bool = False) -> Prediction:
        kernels = onnx_kernels(Path(path), self.rules, allow_unknown=allow_unknown)
        if any(k.type.startswith(UNKNOWN_PREFIX) for k in kernels) and not allow_unknown:
            raise UnknownKernelError("the model holds ops hwlab cannot categorise", hint="pass --allow-unknown")
        return self.predict_kernels(kernels, allow_unknown)

    def predict(self, model: Any, example_inputs: Any = None, allow_unknown: bool = False) -> Prediction:
        """A path to an .onnx file, or a torch module with its example inputs."""
        if isinstance(model, (str, os.PathLike)):
            return self.predict_onnx(model, allow_unknown)
        if example_inputs is None:
            raise InvalidRequest("a torch module needs example inputs to be exported", hint="pass example_inputs=")
        from hwlab.export import export_module

        return self.predict_onnx(export_module(model, example_inputs, "onnx").path, allow_unknown)


def predict(
    model: Any,
    *,
    device: str = "local",
    backend: str = "onnxruntime",
    example_inputs: Any = None,
    root: str | os.PathLike[str] = "predictors",
    allow_unknown: bool = False,
) -> Prediction:
    """``hwlab.predict(model, device=..., backend=...)``: the latency of an .onnx file or a torch module."""
    return Predictor.load(device, backend, root).predict(model, example_inputs, allow_unknown)

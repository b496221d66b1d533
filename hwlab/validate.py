"""Validate a found architecture on the device: export it, measure it end to end, compare with the prediction.

A search trusts predicted latency; this is where the prediction meets the device. The architecture's
standalone network (with its trained weights when ``hwlab train`` made some) is exported to the backend's
format and measured through the runner like any profiled model, over the device's own transport, into the
table ``tables/<device>/<backend>/validate``. The predicted latency comes from the device's predictor on the
whole exported graph (when one is fitted for that backend). The outcome is appended to the architecture file.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import MeasureSettings
from hwlab.profile import Measuring, ModelItem, ProfileRequest, profile
from hwlab.progress import Progress
from hwlab.search.record import ArchRecord
from hwlab.space.build import random_input
from hwlab.transport import Transport


@dataclass(frozen=True)
class Validation:
    device: str
    backend: str
    measured_ms: float
    predicted_ms: float | None
    budget_ms: float | None
    table: str
    key: str
    measured_at: str | None
    emulated: bool

    @property
    def error(self) -> float | None:
        """(predicted - measured) / measured."""
        return None if self.predicted_ms is None else self.predicted_ms / self.measured_ms - 1.0

    @property
    def within_budget(self) -> bool | None:
        return None if self.budget_ms is None else self.measured_ms <= self.budget_ms

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "error": self.error, "within_budget": self.within_budget,
                "validated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}  # fmt: skip


def standalone_network(record: ArchRecord) -> torch.nn.Module:
    """The architecture's SposNet: trained weights when the record has them, else the seeded ones."""
    from hwlab.search.train import load_weights
    from hwlab.zoo import SposNet

    net = SposNet(record.space.config, record.arch.choices, record.arch.scales)
    weights = record.extra.get("weights")
    return load_weights(net, Path(weights)) if weights else net


def measure_network(
    net: torch.nn.Module,
    key: str,
    fields: dict[str, Any],
    device: DeviceSpec,
    backend: str,
    *,
    tables_root: Path = Path("tables"),
    settings: MeasureSettings = MeasureSettings(),
    measuring: Measuring = Measuring(),
    progress: Progress | None = None,
    transport: Transport | None = None,
) -> dict[str, Any]:
    """Export ``net`` to the backend's format and measure it on ``device`` into the ``validate`` table; its row."""
    from hwlab.export import export_module

    inputs = random_input(net.input_shape)
    item = ModelItem(key, {"op": "model", **fields}, lambda fmt: export_module(net, inputs, fmt, name=key))
    request = ProfileRequest.of(device, backend, measuring, specs=[item], space="validate", table_name="validate",
                                tables_root=tables_root, settings=settings)  # fmt: skip
    report = profile(request, progress, transport=transport)
    return {**report.table.lookup(key), "table": str(report.table.folder)}


def validate(
    arch_file: Path,
    device: DeviceSpec,
    backend: str = "onnxruntime",
    *,
    budget_ms: float | None = None,
    predictors_root: Path = Path("predictors"),
    tables_root: Path = Path("tables"),
    settings: MeasureSettings = MeasureSettings(),
    measuring: Measuring = Measuring(),
    progress: Progress | None = None,
    transport: Transport | None = None,
    force: bool = False,
) -> Validation:
    """Measure ``arch_file``'s network on ``device`` and append the outcome to the file."""
    from hwlab.export import export_module
    from hwlab.predictors.predictor import Predictor, predictor_dir

    record = ArchRecord.load(arch_file)
    net = standalone_network(record)
    key = record.name
    row = measure_network(net, key, {"family": "spos", "macs": record.space.cost(record.arch)[0]}, device, backend,
                          tables_root=tables_root, settings=settings, measuring=measuring, progress=progress,
                          transport=transport)  # fmt: skip
    predicted = None
    if (predictor_dir(Path(predictors_root), device.name, backend) / "predictor.json").exists():
        onnx = export_module(net, random_input(net.input_shape), "onnx", name=key).path
        predicted = Predictor.load(device.name, backend, predictors_root, force=force).predict_onnx(onnx).total_ms
    budget = budget_ms if budget_ms is not None else (record.extra.get("search") or {}).get("latency_budget_ms")
    result = Validation(device.name, backend, float(row["median_ms"]), predicted, budget, row["table"], key,
                        row.get("measured_at"), bool(row.get("emulated")))  # fmt: skip
    record.extra.setdefault("validations", []).append(result.to_json())
    record.save(arch_file)
    return result

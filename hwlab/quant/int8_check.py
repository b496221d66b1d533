"""Whether int8 can pay off on a device: its CPU's int8 features and the measured int8/fp32 ratio.

``hwlab doctor --int8`` measures reference layers of a mobile CNN at fp32 and static int8 on
onnxruntime, interleaved in one job like any table (``tables/<device>/onnxruntime/int8-check``), and
reports int8/fp32 per layer. A dense 3x3 convolution is where int8 usually pays (4x less data per
multiply-add); a depthwise one, memory-bound and small, is where it often does not.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from hwlab.inventory import DeviceSpec
from hwlab.progress import Progress
from hwlab.space.opspec import OpSpec

REFERENCE_LAYERS: tuple[OpSpec, ...] = (
    OpSpec("conv", 28, 28, 64, 64, kernel=3),
    OpSpec("pwconv", 28, 28, 64, 128),
    OpSpec("dwconv", 28, 28, 128, 128, kernel=3),
)
BACKEND = "onnxruntime"


@dataclass(frozen=True)
class LayerRatio:
    key: str  # the fp32 key
    fp32_ms: float | None
    int8_ms: float | None
    error: str | None = None

    @property
    def ratio(self) -> float | None:
        return None if not self.fp32_ms or self.int8_ms is None else self.int8_ms / self.fp32_ms


@dataclass(frozen=True)
class Int8Check:
    device: str
    features: list[str] | None  # from the device's /proc/cpuinfo; None when unreadable
    layers: tuple[LayerRatio, ...]
    table: Path

    def to_json(self) -> dict[str, Any]:
        return {"device": self.device, "int8_features": self.features, "table": str(self.table),
                "layers": [{**layer.__dict__, "ratio": layer.ratio} for layer in self.layers]}  # fmt: skip


def measure_int8_ratio(
    device: DeviceSpec, tables_root: Path, base: Any = None, progress: Progress | None = None
) -> Int8Check:
    """Profile REFERENCE_LAYERS at fp32 and int8 (resumable) and read back the ratios."""
    from hwlab.profile import ProfileRequest, profile
    from hwlab.quant.space import at_precisions

    request = replace(
        base or ProfileRequest.of(device, BACKEND), device=device, backend=BACKEND,
        specs=at_precisions(list(REFERENCE_LAYERS), ("fp32", "int8"), BACKEND), space="int8-check",
        table_name="int8-check", tables_root=tables_root,
    )  # fmt: skip
    report = profile(request, progress)
    rows = {r["key"]: r for r in report.table}
    layers = []
    for spec in REFERENCE_LAYERS:
        fp32, int8 = rows.get(spec.key, {}), rows.get(replace(spec, prec="int8").key, {})
        failed = next((r.get("error") for r in (fp32, int8) if r.get("status") != "ok"), None)
        layers.append(LayerRatio(spec.key, fp32.get("median_ms"), int8.get("median_ms"), failed))
    features = report.table.meta().get("device_facts", {}).get("int8_features")
    return Int8Check(device.name, features, tuple(layers), report.table.folder)

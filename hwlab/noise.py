"""The device's noise floor: how well two measuring runs some minutes apart agree, raw and corrected.

No predictor can agree with a measurement better than two measurements of the same model agree
with each other, so this is the ceiling every predictor evaluation is printed beside. Two runs of
the same reference models (SPOS architectures of the default search space and the project's CNN
families) are measured ``gap_s`` apart, each a normal profile into a table of its own; their raw
medians and their corrected figures (floors and anchors) are compared model by model. Steal time
and the device's temperatures and frequencies are read where the device has them.

The report is stored beside the device's tables in ``<tables>/<device>/noise.json``, newest last.
"""

from __future__ import annotations

import math
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hwlab.errors import InvalidRequest, TableError
from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import MeasureSettings
from hwlab.names import inside
from hwlab.profile import ProfileReport, ProfileRequest, profile
from hwlab.progress import Progress
from hwlab.space.spos import SposConfig
from hwlab.tables.store import read_device_list, write_json_atomic
from hwlab.transport import Transport, connect
from hwlab.zoo import FAMILIES, ZooModel, sample_family
from hwlab.zoo.spos import random_spos_arch, spos_model

NOISE_FILE = "noise.json"
DEFAULT_SPACE = SposConfig(input_size=32, width=0.25, num_classes=10, stem_stride=1)  # the search's default


@dataclass(frozen=True)
class NoisePlan:
    """What to measure twice and how far apart."""

    models: int = 100
    gap_s: float = 600.0
    seed: int = 7
    settings: MeasureSettings = MeasureSettings()

    def __post_init__(self) -> None:
        if self.models < 2:
            raise InvalidRequest(
                f"--models {self.models}: two runs of fewer than 2 models say nothing", hint="ask for >= 2"
            )
        if not math.isfinite(self.gap_s) or self.gap_s < 0:
            raise InvalidRequest(f"--gap {self.gap_s} must be a finite number of seconds >= 0", hint="e.g. --gap 600")


@dataclass(frozen=True)
class Agreement:
    """Share of models whose two figures agree within ±5 % and ±10 %, and the median |difference|."""

    within_5: float
    within_10: float
    median_abs: float

    @classmethod
    def of(cls, ratios: Sequence[float]) -> Agreement:
        dev = np.abs(np.asarray(ratios, dtype=float) - 1.0)
        return cls(float(np.mean(dev <= 0.05)), float(np.mean(dev <= 0.10)), float(np.median(dev)))


@dataclass
class NoiseReport:
    device: str
    backend: str
    models: int
    gap_s: float
    raw: Agreement
    raw_common_factor: float  # median of second/first raw medians: the runs' common speed difference
    raw_after_common: Agreement  # raw, after dividing out that one common factor
    corrected: Agreement
    state_factors: list[float]  # each group's anchors over the device's reference (geometric mean), both runs
    steal: list[float | None] = field(default_factory=list)  # share of CPU time stolen during each run
    temp_c: list[float] = field(default_factory=list)  # hottest zone seen, per run (empty: unreadable)
    freq_mhz: list[float] = field(default_factory=list)  # lowest mean frequency seen, per run
    tables: list[str] = field(default_factory=list)
    measured_at: str = ""

    @property
    def state_spread(self) -> float:
        """Largest over smallest state factor, minus 1: how far the machine's state moved between groups."""
        factors = [f for f in self.state_factors if f]
        return max(factors) / min(factors) - 1.0 if factors else math.nan

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state_spread": None if math.isnan(self.state_spread) else self.state_spread}

    def summary(self) -> str:
        """One line: the ceiling a predictor evaluation is printed beside."""
        return ceiling_line(self.to_json())


def reference_models(count: int, seed: int) -> list[ZooModel]:
    """Half SPOS architectures of the default search space, half the CNN families at their sizes."""
    rng = random.Random(seed)
    spos = [spos_model(DEFAULT_SPACE, *random_spos_arch(rng, DEFAULT_SPACE)) for _ in range(count - count // 2)]
    per_family = -(-(count // 2) // len(FAMILIES))
    family = [m for f in FAMILIES for m in sample_family(f, per_family, seed)][: count // 2]
    return spos + family


def _cpu_times(transport: Transport) -> list[int] | None:
    """The aggregate ``cpu`` line of /proc/stat (None where it is unreadable: not Linux, no permission)."""
    try:
        out = transport.run(["cat", "/proc/stat"], timeout=30).stdout
    except Exception:  # a device without /proc is a device without steal figures, not a failed measurement
        return None
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] == "cpu":
            return [int(p) for p in parts[1:] if p.isdigit()]
    return None


def steal_share(before: list[int] | None, after: list[int] | None) -> float | None:
    """Stolen over all CPU time between two /proc/stat readings (the 8th field); None when unknown."""
    if not before or not after or len(before) < 8 or len(after) < 8:
        return None
    delta = [b - a for a, b in zip(before[:8], after[:8], strict=True)]
    total = sum(delta)
    return delta[7] / total if total > 0 else None


def _run(
    request: ProfileRequest, name: str, transport: Transport, progress: Progress | None
) -> tuple[ProfileReport, float | None]:
    before = _cpu_times(transport)
    report = profile(replace(request, table_name=name), progress, transport=transport)
    return report, steal_share(before, _cpu_times(transport))


def _ok(report: ProfileReport) -> dict[str, dict[str, Any]]:
    return {r["key"]: r for r in report.table if r.get("status") == "ok" and r.get("median_ms")}


def compare(first: ProfileReport, second: ProfileReport) -> tuple[Agreement, float, Agreement, Agreement, int]:
    """(raw, raw common factor, raw after it, corrected, models compared) of two runs of the same models."""
    a, b = _ok(first), _ok(second)
    keys = sorted(a.keys() & b.keys())
    if len(keys) < 2:
        raise TableError(
            f"only {len(keys)} model(s) measured in both runs", hint="see the runs' errors with `hwlab tables show`"
        )
    raw = [b[k]["raw_median_ms"] / a[k]["raw_median_ms"] for k in keys]
    common = statistics.median(raw)
    corrected = [b[k]["median_ms"] / a[k]["median_ms"] for k in keys]
    return Agreement.of(raw), common, Agreement.of([r / common for r in raw]), Agreement.of(corrected), len(keys)


def measure_noise(
    device: DeviceSpec,
    backend: str,
    plan: NoisePlan,
    tables_root: Path,
    *,
    base: ProfileRequest | None = None,
    progress_for: Callable[[str], Progress] | None = None,
    sleep: Callable[[float], object] = time.sleep,
) -> NoiseReport:
    """Measure the reference models twice, ``plan.gap_s`` apart, compare, and store the report."""
    from hwlab.predictors.train import model_item  # the predictors' whole-model item; imports torch

    models = reference_models(plan.models, plan.seed)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    request = replace(
        base or ProfileRequest.of(device, backend),
        device=device, backend=backend, specs=[model_item(m) for m in models], space="noise",
        space_params={"models": plan.models, "seed": plan.seed}, tables_root=tables_root, settings=plan.settings,
    )  # fmt: skip
    transport = connect(device)
    try:
        first, steal_a = _run(
            request, f"noise-{stamp}-a", transport, progress_for("first run") if progress_for else None
        )
        sleep(plan.gap_s)
        second, steal_b = _run(
            request, f"noise-{stamp}-b", transport, progress_for("second run") if progress_for else None
        )
    finally:
        transport.close()
    raw, common, after_common, corrected, compared = compare(first, second)
    report = NoiseReport(
        device=device.name, backend=backend, models=compared, gap_s=plan.gap_s, raw=raw, raw_common_factor=common,
        raw_after_common=after_common, corrected=corrected,
        state_factors=sorted([*first.speed_states, *second.speed_states]),
        steal=[steal_a, steal_b], temp_c=_extremes(first, second, "temp_c", max),
        freq_mhz=_extremes(first, second, "freq_mhz", min), tables=[str(first.table.folder), str(second.table.folder)],
        measured_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )  # fmt: skip
    store_noise(tables_root, report)
    return report


def _extremes(first: ProfileReport, second: ProfileReport, column: str, pick: Callable[..., float]) -> list[float]:
    out = []
    for report in (first, second):
        values = [r[column] for r in _ok(report).values() if r.get(column) is not None]
        if values:
            out.append(pick(values))
    return out


def _path(root: Path, device: str) -> Path:
    return inside(Path(root), device) / NOISE_FILE


def stored_noise(root: Path, device: str) -> list[dict[str, Any]]:
    """Every noise report stored for ``device``, oldest first."""
    hint = "move it aside and run `hwlab doctor --noise` again"
    return read_device_list(_path(root, device), "reports", hint)


def store_noise(root: Path, report: NoiseReport) -> None:
    path = _path(root, report.device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": 1, "reports": [*stored_noise(root, report.device), report.to_json()]})


def ceiling_line(report: dict[str, Any]) -> str:
    """A stored report as one line: corrected and raw agreement of its two runs."""
    c, raw = report["corrected"], report["raw"]
    when = f", {report['measured_at']}" if report.get("measured_at") else ""
    return (
        f"noise floor of {report['device']} ({report['backend']}{when}): two runs {report['gap_s'] / 60:.0f} min"
        f" apart agree {c['within_10']:.0%} within ±10% and {c['within_5']:.0%} within ±5% corrected"
        f" (raw {raw['within_10']:.0%} / {raw['within_5']:.0%}) on {report['models']} models"
    )


def noise_ceiling(root: Path, device: str, backend: str) -> str:
    """The line an evaluation prints beside its accuracy: the latest noise floor, or how to measure one."""
    reports = [r for r in stored_noise(root, device) if r.get("backend") == backend]
    if not reports:
        return f"noise floor of {device} ({backend}): not measured; run `hwlab doctor --device {device} --noise`"
    return ceiling_line(reports[-1])

"""The device's reference state, and each job's state against it, from the anchor models.

A device's first measuring run (per backend, runtime version, threads, core mask and compute
device) stores its anchors' figures (their floors: runners/hwlab_runner/rounds.py) as the device's reference in
``<tables>/<device>/speed-reference.json``. Every later job measures the same anchors in every
group, and each of its models is moved onto the reference state.

How much a change of the machine's state moves a model depends on its *grain*, its time per executed
node: measured here, between two jobs minutes apart, a chain of tiny kernels (1 µs a node) ran 2.0x
slower, a depthwise block 1.7x, an fc 1.5x, a small convolution 1.4x and a large one (1.5 ms) 1.2x, in
that order, on a line in log(time per node). So a group's anchors, which span the grains a CNN has,
give that line: log(anchor / reference) = a + b log(reference µs per node), least squares over the
anchors, and each model is divided by exp(a + b log(its µs per node)), its grain clipped to the
anchors' range (never extrapolated). Where a model's node count is unknown (a TFLite file), the
runner's sensitivities are used instead: the shift that moves the reference anchors onto this group's
(log(anchor / reference) = sensitivity x shift) times the model's own sensitivity (see
runners/hwlab_runner/rounds.py). The reference is never rewritten: a new one starts only for a setting
that has none.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwlab.errors import TableError
from hwlab.measure.anchors import ANCHOR_SET
from hwlab.names import inside
from hwlab.tables.rows import figure_us
from hwlab.tables.store import read_device_list, write_json_atomic

REFERENCE_FILE = "speed-reference.json"
FORMAT = 1


@dataclass(frozen=True)
class Setting:
    """What must match for two jobs' anchors to be compared: the same code on the same cores."""

    backend: str
    runtime_version: str | None
    threads: int
    core_mask: str | None
    compute: str = "cpu"
    anchor_set: str = ANCHOR_SET
    statistic: str = "floor"  # the anchors' figure the reference holds (an older reference's: a median)


def _path(root: Path, device: str) -> Path:
    return inside(Path(root), device) / REFERENCE_FILE


def references(root: Path, device: str) -> list[dict[str, Any]]:
    """Every reference stored for ``device`` (none yet: an empty list)."""
    hint = "restore it, or move it aside to set a new reference"
    entries = read_device_list(_path(root, device), "references", hint)
    if not all(isinstance(e.get("anchors_us"), dict) for e in entries):
        raise TableError(f"{_path(root, device)} has a reference without anchors_us", hint=hint)
    return entries


def reference_for(root: Path, device: str, setting: Setting) -> dict[str, Any] | None:
    wanted = asdict(setting)
    for entry in references(root, device):
        if all(entry.get(k) == v for k, v in wanted.items()):
            return entry
    return None


def set_reference(
    root: Path,
    device: str,
    setting: Setting,
    anchors_us: Mapping[str, float],
    set_by: str,
    sensitivities: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Store ``anchors_us`` (and their sensitivities) as the reference of ``setting`` (atomically, beside the
    device's tables)."""
    entry = {
        **asdict(setting),
        "anchors_us": dict(anchors_us),
        "anchors_sensitivity": dict(sensitivities or {}),
        "set_by": set_by,
        "set_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = _path(root, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": FORMAT, "references": [*references(root, device), entry]})
    return entry


def state_shift(
    anchors_us: Mapping[str, float], reference_us: Mapping[str, float], sensitivity: Mapping[str, float] | None = None
) -> float | None:
    """The state that moves the reference anchors onto these (log units; 0.2 at sensitivity 1: 22 % slower):
    the least-squares fit of log(anchor / reference) = sensitivity x shift, with the anchors'
    sensitivities in this job (the unit its models' sensitivities are in; 1 where unknown). None with
    no anchor in common."""
    pairs = [(math.log(anchors_us[k] / reference_us[k]), (sensitivity or {}).get(k, 1.0))
             for k in anchors_us.keys() & reference_us.keys() if anchors_us[k] > 0 and reference_us[k] > 0]  # fmt: skip
    weight = sum(b * b for _, b in pairs)
    return sum(d * b for d, b in pairs) / weight if pairs and weight > 0 else None


def grain_line(
    anchors_us: Mapping[str, float], reference_us: Mapping[str, float], nodes: Mapping[str, int]
) -> tuple[float, float, float, float] | None:
    """(a, b, lowest grain, highest grain) of log(anchor / reference) = a + b grain, grain the log of the
    reference µs per node, over the anchors with a node count; None with fewer than two distinct grains."""
    points = [
        (math.log(reference_us[k] / nodes[k]), math.log(anchors_us[k] / reference_us[k]))
        for k in anchors_us.keys() & reference_us.keys()
        if anchors_us[k] > 0 and reference_us[k] > 0 and nodes.get(k, 0) > 0
    ]
    fitted = fit_line(points)
    if fitted is None:
        return None
    return *fitted, min(g for g, _ in points), max(g for g, _ in points)


def fit_line(points: Sequence[tuple[float, float]]) -> tuple[float, float] | None:
    """(intercept, slope) of y on x by least squares; None with fewer than two distinct x."""
    if len({round(x, 9) for x, _ in points}) < 2:
        return None
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    slope = sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)
    return mean_y - slope * mean_x, slope


def sensitivity_of(result: Mapping[str, Any]) -> float:
    """A line's sensitivity to the machine's state (1 for a block measured alone, or an older runner)."""
    value = (result.get("rounds") or {}).get("sensitivity")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 1.0


@dataclass
class SpeedScale:
    """Each group's anchors as they arrive, turned into that group's speed factor.

    The anchors of a group arrive before its models (the runner writes them first). With no
    reference for the setting yet, the first complete group sets it: its factor is 1.
    """

    root: Path
    device: str
    setting: Setting
    set_by: str
    nodes: dict[str, int] = field(default_factory=dict)  # key -> node count, where known (ONNX models)
    anchors: dict[Any, dict[str, float]] = field(default_factory=dict)  # group -> key -> µs
    sensitivities: dict[Any, dict[str, float]] = field(default_factory=dict)  # group -> key -> beta
    note: str | None = None  # said once: this run set the reference, or why there is no factor
    states: dict[Any, float] = field(default_factory=dict)  # group -> geometric mean of anchor / reference
    _reference: dict[str, Any] | None = field(default=None, repr=False)  # read once, then kept

    def add_anchor(self, result: Mapping[str, Any]) -> None:
        value = figure_us(result)[0] if result.get("status") == "ok" else None
        if value is not None:
            self.anchors.setdefault(_group(result), {})[str(result["key"])] = value
            self.sensitivities.setdefault(_group(result), {})[str(result["key"])] = sensitivity_of(result)

    def factor_for(self, result: Mapping[str, Any]) -> float | None:
        """The factor ``result`` is divided by: exp(a + b x its grain) of its group's grain line, or
        exp(its sensitivity x its group's shift) where its grain is unknown; None when no anchor of its
        group was measured."""
        group = _group(result)
        measured = self.anchors.get(group)
        if not measured:
            self.note = "no anchor was measured with these models: figures are not on the device's reference scale"
            return None
        if self._reference is None:
            self._reference = reference_for(self.root, self.device, self.setting)
        if self._reference is None:
            self._reference = set_reference(self.root, self.device, self.setting, measured, self.set_by,
                                            self.sensitivities.get(group))  # fmt: skip
            self.note = f"this run set the reference speed of {self.device} for this setting"
        reference = self._reference["anchors_us"]
        if group not in self.states:
            ratios = [math.log(measured[k] / reference[k]) for k in measured.keys() & reference.keys()]
            if ratios:
                self.states[group] = math.exp(sum(ratios) / len(ratios))
        key, value = str(result.get("key")), figure_us(result)[0]
        line = grain_line(measured, reference, self.nodes)
        if line is not None and self.nodes.get(key, 0) > 0 and value:
            a, b, low, high = line
            # Its grain on the reference scale, where the anchors' are: log(value / nodes) = grain + a + b grain.
            today = math.log(value / self.nodes[key])
            grain = (today - a) / (1.0 + b) if b > -0.9 else today
            return math.exp(a + b * min(max(grain, low), high))
        shift = state_shift(measured, reference, self.sensitivities.get(group))
        return None if shift is None else math.exp(sensitivity_of(result) * shift)


def _group(result: Mapping[str, Any]) -> Any:
    return (result.get("rounds") or {}).get("group")

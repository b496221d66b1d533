"""The device's reference speed, and each job's speed against it, from the anchor models.

A device's first measuring run (per backend, runtime version, threads, core mask and compute
device) stores its anchors' medians as the device's reference in
``<tables>/<device>/speed-reference.json``. Every later job measures the same anchors; the
median ratio of its anchors to the reference is the job's speed factor, and every figure of
that job is divided by it, so jobs measured hours apart sit on one scale. The reference is
never rewritten: a new one starts only for a setting that has none.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwlab.errors import TableError
from hwlab.measure.anchors import ANCHOR_SET
from hwlab.names import inside
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
    root: Path, device: str, setting: Setting, anchors_us: Mapping[str, float], set_by: str
) -> dict[str, Any]:
    """Store ``anchors_us`` as the reference of ``setting`` (atomically, beside the device's tables)."""
    entry = {
        **asdict(setting),
        "anchors_us": dict(anchors_us),
        "set_by": set_by,
        "set_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    path = _path(root, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"format": FORMAT, "references": [*references(root, device), entry]})
    return entry


def speed_factor(anchors_us: Mapping[str, float], reference_us: Mapping[str, float]) -> float | None:
    """The median ratio of the anchors to their reference (1.2: this job ran 20 % slow); None with none in common."""
    logs = [math.log(anchors_us[k] / reference_us[k]) for k in anchors_us.keys() & reference_us.keys()
            if anchors_us[k] > 0 and reference_us[k] > 0]  # fmt: skip
    return math.exp(statistics.median(logs)) if logs else None


def anchor_median_us(result: Mapping[str, Any]) -> float | None:
    """An anchor line's figure: its rounds-corrected median, or the median of its block."""
    rounds = result.get("rounds") or {}
    value = rounds.get("corrected_median_us") or (result.get("summary") or {}).get("median_us")
    return float(value) if value else None


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
    anchors: dict[Any, dict[str, float]] = field(default_factory=dict)  # group -> key -> µs
    note: str | None = None  # said once: this run set the reference, or why there is no factor
    _reference: dict[str, Any] | None = field(default=None, repr=False)  # read once, then kept

    def add_anchor(self, result: Mapping[str, Any]) -> None:
        value = anchor_median_us(result) if result.get("status") == "ok" else None
        if value is not None:
            self.anchors.setdefault(_group(result), {})[str(result["key"])] = value

    def factor_for(self, result: Mapping[str, Any]) -> float | None:
        """The speed factor of the group ``result`` belongs to (None: no anchor of it was measured)."""
        measured = self.anchors.get(_group(result))
        if not measured:
            self.note = "no anchor was measured with these models: figures are not on the device's reference scale"
            return None
        if self._reference is None:
            self._reference = reference_for(self.root, self.device, self.setting)
        if self._reference is None:
            self._reference = set_reference(self.root, self.device, self.setting, measured, self.set_by)
            self.note = f"this run set the reference speed of {self.device} for this setting"
        return speed_factor(measured, self._reference["anchors_us"])


def _group(result: Mapping[str, Any]) -> Any:
    return (result.get("rounds") or {}).get("group")

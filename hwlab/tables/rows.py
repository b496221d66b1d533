"""The one row type of every table: measured rows and imported rows have the same columns.

A row is what was measured (``key`` and the ``fields`` that describe it: an op's
shapes, a kernel's features) and then the same provenance and statistics columns
for every row of every table, null where unknown, so ``pandas.read_json`` of any
table sees one schema. A runner result line becomes a row here, in one place.

``median_ms`` is the figure everything uses, and ``correction`` says what it is. Measured in rounds
by a current runner (``"floor+anchors"``): the model's floor, its time in the machine's quiet state
(the geometric mean of its fastest rounds, see runners/hwlab_runner/rounds.py), divided by the job's
``speed_factor`` against the device's reference state (hwlab/measure/speed.py). Disturbance only
adds time, and the quiet state is what a rerun finds again: on a VM whose speed drifts by up to
1.6x, floors of 100 models ten minutes apart agreed within ±5% for 96. ``"rounds+anchors"`` (an
older runner): the median in the group's median state instead. Beside it, ``raw_median_ms`` is
what was timed, disturbances and all. The other summary columns (p10, p90, IQR, mean, std, min, max)
are of the raw samples. A row of an older table has no ``correction``: its median is raw.

A model measured over input data (``schedule`` ``"calls"``: a dynamic model, call by call) has no single
latency: its ``median_ms`` is the p50 of all its calls, as timed (no speed factor: a distribution is
reported as it was), beside ``p50_ms``, ``p90_ms``, ``p99_ms``, the number of samples (``input_count``)
and each sample's median (``input_median_ms``), which say which inputs are slow. Its ``unstable`` is the
noise within each sample's calls, not the spread between samples, which is the model's own.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hwlab.errors import TableError

UNSTABLE_IQR_REL = 0.10  # IQR/median above this is flagged as unstable
SUMMARY_COLUMNS = ("median", "p10", "p90", "iqr", "mean", "std", "min", "max")
RAW_DETAILS = ("power", "governor", "op_profile", "providers", "io", "gpu")


@dataclass(frozen=True)
class Row:
    """One table row; every column but ``fields`` is present in every row, null when unknown."""

    key: str
    fields: Mapping[str, Any]
    status: str  # "ok" or "error"
    device: str
    backend: str
    emulated: bool = False
    error: str | None = None
    source: str = "measured"  # "measured" by hwlab, or "imported" from a published table
    source_device: str | None = None  # the device as an imported table's source names it
    imported_from: str | None = None  # "owner/repo @ commit, path"
    statistic: str | None = None  # what an imported table publishes, e.g. "mean/std/count"
    imported_at: str | None = None
    runtime: str | None = None
    runtime_module: str | None = None
    runtime_version: str | None = None
    threads: int | None = None
    threads_requested: int | None = None
    compute: str | None = None  # "cpu" or "cuda"
    core_mask: str | None = None  # "4,5"
    governor: str | None = None
    governor_note: str | None = None
    temp_c: float | None = None
    temp_c_after: float | None = None
    freq_mhz: float | None = None
    n: int | None = None
    median_ms: float | None = None  # corrected (rounds and anchors) when ``correction`` says so, else raw
    raw_median_ms: float | None = None  # the median of the raw samples, as timed
    speed_factor: float | None = None  # what the machine's state did to this model against the device's reference
    sensitivity: float | None = None  # how strongly this model follows the machine's state (anchors' mean: 1)
    schedule: str | None = None  # "rounds" (interleaved with the job's other models) or "single" (one block)
    rounds: int | None = None
    correction: str | None = None  # what median_ms is: "floor+anchors", "rounds+anchors", "anchors", ...
    p10_ms: float | None = None
    p90_ms: float | None = None
    iqr_ms: float | None = None
    mean_ms: float | None = None
    std_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    p50_ms: float | None = None  # over input data (schedule "calls"): the distribution of every call
    p99_ms: float | None = None
    input_count: int | None = None  # samples of the input data
    input_median_ms: list[float | None] | None = None  # each sample's median, in the data's order
    ci_rel: float | None = None  # of median_ms: between rounds for "rounds", within the block for "single"
    unstable: bool | None = None
    block: int | None = None
    stop_reason: str | None = None
    timer: str | None = None
    power_w: float | None = None
    energy_mj: float | None = None
    dynamic_energy_mj: float | None = None
    idle_w: float | None = None
    power_sensor: str | None = None
    power_sample_hz: float | None = None
    power_note: str | None = None
    measured_at: str | None = field(default=None)

    def __post_init__(self) -> None:
        clash = sorted(set(self.fields) & COLUMNS)
        if clash:
            raise TableError(
                f"row {self.key!r}: fields {clash} would overwrite the columns of the same name",
                hint="rename those fields of what is measured (an op's or kernel's description)",
            )

    def to_json(self) -> dict[str, Any]:
        """The line a table stores: the key, the fields, then every column."""
        columns = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("key", "fields")}
        return {"key": self.key, **self.fields, **columns}


COLUMNS = frozenset(f.name for f in fields(Row)) - {"fields"}
NUMBER_COLUMNS = frozenset(
    f.name for f in fields(Row) if f.type in ("int | None", "float | None") or f.name in ("threads", "n")
)


def line_problem(line: object) -> str | None:
    """Why a stored line cannot be a row (None when it can): read back from a file, it is checked first."""
    if not isinstance(line, dict):
        return f"is {type(line).__name__}, not a row object"
    if not isinstance(line.get("key"), str) or not line["key"]:
        return "has no key"
    if not isinstance(line.get("status", "ok"), str):
        return f"status {line['status']!r} is not text"
    for column in NUMBER_COLUMNS & line.keys():
        value = line[column]
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"column {column!r} holds {value!r}, not a number"
    return None


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 6)


def _hottest(readings: dict[str, float] | None) -> float | None:
    return max(readings.values()) if readings else None


def _mean_mhz(freqs: dict[str, int] | None) -> float | None:
    return round(sum(freqs.values()) / len(freqs) / 1000.0, 1) if freqs else None


def _power_columns(power: dict[str, Any] | None) -> dict[str, Any]:
    """Power and energy, or empty columns with the reason: never a zero for "not measured"."""
    if not power or power.get("power_w") is None:  # no sensor, or one that failed: say why
        reason = (power or {}).get("reason") or "power was not measured"
        return {"power_sensor": (power or {}).get("sensor"), "power_note": reason}
    return {
        "power_w": power.get("power_w"),
        "energy_mj": power.get("energy_mj"),
        "dynamic_energy_mj": power.get("dynamic_energy_mj"),
        "idle_w": power.get("idle_w"),
        "power_sensor": power["sensor"],
        "power_sample_hz": power.get("sample_hz"),
    }


def _governor(result: dict[str, Any]) -> str | None:
    governors = result.get("governors") or {}
    return ",".join(sorted(set(governors.values()))) or None


def _governor_note(request: dict[str, Any] | None) -> str | None:
    """Why a requested governor is not in force (None when none was asked for, or it was set)."""
    if not request or request.get("applied"):
        return None
    return f"{request.get('requested')} not applied: {request.get('reason')}"


def figure_us(result: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """A result line's figure (µs) before any speed factor, and what it is: the rounds' floor (``"floor"``),
    from an older runner the median in the group's median state (``"rounds"``), else the block's median
    (None). Rows and the anchors' reference both take it from here."""
    rounds = result.get("rounds") or {}
    if rounds.get("floor_us"):
        return float(rounds["floor_us"]), "floor"
    if rounds.get("corrected_median_us"):
        return float(rounds["corrected_median_us"]), "rounds"
    median = (result.get("summary") or {}).get("median_us")
    return (float(median) if median else None), None


def _corrected(result: dict[str, Any], speed_factor: float | None) -> dict[str, Any]:
    """median_ms and its provenance: the line's figure (figure_us), then divided by the job's speed factor."""
    s, rounds = result["summary"], result.get("rounds")
    raw = s.get("median_us")
    median, statistic = figure_us(result)
    applied = ([statistic] if statistic else []) + (["anchors"] if speed_factor else [])
    if median is not None and speed_factor:
        median = median / speed_factor
    return {
        "median_ms": _ms(median),
        "raw_median_ms": _ms(raw),
        "speed_factor": round(speed_factor, 6) if speed_factor else None,
        "sensitivity": rounds.get("sensitivity") if rounds else None,
        "schedule": result.get("schedule", "single"),
        "rounds": rounds.get("n") if rounds else None,
        "correction": "+".join(applied) or "none",
        "ci_rel": rounds.get("floor_ci_rel" if statistic == "floor" else "ci_rel") if rounds else s.get("ci_rel"),
    }


def _unstable(result: dict[str, Any], median: float | None, iqr: float | None) -> bool | None:
    """Spread beyond UNSTABLE_IQR_REL: of the corrected rounds (raw samples hold the drift), within each input
    (over input data: the inputs' own spread is the model's), else the IQR."""
    distribution = result.get("distribution")
    if distribution:
        spread = distribution.get("input_spread_rel")
        return None if spread is None else bool(spread > UNSTABLE_IQR_REL)
    rounds = result.get("rounds")
    if rounds:
        spread = rounds.get("spread_rel")
        return None if spread is None else bool(spread > UNSTABLE_IQR_REL)
    return bool(iqr / median > UNSTABLE_IQR_REL) if median and iqr is not None else None


def _distribution_columns(distribution: dict[str, Any] | None) -> dict[str, Any]:
    """The columns of a model measured over input data (none for another row)."""
    if not distribution:
        return {}
    return {
        "p50_ms": _ms(distribution.get("p50_us")),
        "p99_ms": _ms(distribution.get("p99_us")),
        "input_count": distribution.get("inputs"),
        "input_median_ms": [_ms(m) for m in distribution.get("input_median_us") or []],
    }


def row_from_result(
    result: dict[str, Any],
    key: str,
    fields: Mapping[str, Any],
    *,
    device: str,
    backend: str,
    emulated: bool,
    speed_factor: float | None = None,
) -> tuple[Row, dict[str, Any] | None]:
    """The table row for a runner-protocol result line (``fields`` describe what was measured), and the
    raw data to store beside it (None for an error). ``speed_factor`` is the job's, from its anchors."""
    common: dict[str, Any] = {
        "key": key,
        "fields": dict(fields),
        "status": result.get("status", "error"),
        "error": result.get("error"),
        "device": device,
        "emulated": emulated,
        "backend": backend,
        "runtime": result.get("runtime"),
        "runtime_module": result.get("runtime_module"),
        "runtime_version": result.get("runtime_version"),
        "threads": result.get("threads"),
        "threads_requested": result.get("threads_requested"),
        "compute": result.get("device", "cpu"),
        "core_mask": ",".join(map(str, result["core_mask"])) if result.get("core_mask") else None,
        "governor": _governor(result),
        "governor_note": _governor_note(result.get("governor")),
        "temp_c": _hottest(result.get("temp_c_before")),
        "temp_c_after": _hottest(result.get("temp_c_after")),
        "freq_mhz": _mean_mhz(result.get("freq_khz_before")),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **_power_columns(result.get("power")),
    }
    if common["status"] != "ok":
        return Row(**common), None
    s = result["summary"]
    median, iqr = s.get("median_us"), s.get("iqr_us")
    row = Row(
        **common,
        **{f"{name}_ms": _ms(s.get(f"{name}_us")) for name in SUMMARY_COLUMNS if name != "median"},
        **_corrected(result, speed_factor),
        n=s["n"],
        block=result.get("block"),
        stop_reason=result.get("stop_reason"),
        timer=result.get("timer"),
        unstable=_unstable(result, median, iqr),
        **_distribution_columns(result.get("distribution")),
    )
    raw = {"samples_us": result.get("samples_us") or [], "block": result.get("block")}
    for detail in ("rounds", "distribution"):
        if result.get(detail):
            raw[detail] = result[detail]
    raw.update({detail: result[detail] for detail in RAW_DETAILS if result.get(detail) is not None})
    return row, raw


def uncorrected_note(rows: Iterable[Mapping[str, Any]]) -> str | None:
    """What to say of rows whose median is raw (older tables, or a job without anchors); None if there are none."""
    ok = [r for r in rows if r.get("status") == "ok" and r.get("source", "measured") == "measured"]
    old = sum(1 for r in ok if r.get("correction") is None)
    if old:
        return (
            f"{old} of {len(ok)} rows were measured before drift correction: their median_ms is the raw median,"
            " not on the device's reference scale; profile them again into a new table to correct them"
        )
    bare = sum(1 for r in ok if r.get("correction") in ("none", "rounds", "floor"))
    if bare:
        return f"{bare} of {len(ok)} rows had no anchor measured with them: not on the device's reference scale"
    return None

"""Turn one device result line into one table row with its provenance."""

from __future__ import annotations

import time
from typing import Any

UNSTABLE_IQR_REL = 0.10  # IQR/median above this is flagged as unstable
SUMMARY_COLUMNS = ("median", "p10", "p90", "iqr", "mean", "std", "min")


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
        return {"power_w": None, "energy_mj": None, "power_sensor": (power or {}).get("sensor"), "power_note": reason}
    return {
        "power_w": power.get("power_w"),
        "energy_mj": power.get("energy_mj"),
        "dynamic_energy_mj": power.get("dynamic_energy_mj"),
        "idle_w": power.get("idle_w"),
        "power_sensor": power["sensor"],
        "power_sample_hz": power.get("sample_hz"),
        "power_note": None,
    }


def _governor(result: dict[str, Any]) -> str | None:
    governors = result.get("governors") or {}
    return ",".join(sorted(set(governors.values()))) or None


def _governor_note(request: dict[str, Any] | None) -> str | None:
    """Why a requested governor is not in force (None when none was asked for, or it was set)."""
    if not request or request.get("applied"):
        return None
    return f"{request.get('requested')} not applied: {request.get('reason')}"


def row_from_result(
    result: dict[str, Any], key: str, fields: dict[str, Any], *, device: str, backend: str, emulated: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The table row for a result (``fields`` describe what was measured, e.g. an OpSpec's), and the raw
    data to store beside it (None for an error)."""
    row: dict[str, Any] = {
        "key": key,
        **fields,
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
    }
    if row["status"] != "ok":
        return row, None
    s = result["summary"]
    row.update({f"{name}_ms": _ms(s.get(f"{name}_us")) for name in SUMMARY_COLUMNS})
    median, iqr = s.get("median_us"), s.get("iqr_us")
    row.update(
        n=s["n"],
        ci_rel=s.get("ci_rel"),
        block=result.get("block"),
        stop_reason=result.get("stop_reason"),
        timer=result.get("timer"),
        unstable=bool(iqr / median > UNSTABLE_IQR_REL) if median and iqr is not None else None,
        **_power_columns(result.get("power")),
    )
    raw = {"samples_us": result.get("samples_us") or [], "block": result.get("block")}
    for detail in ("power", "governor", "op_profile", "providers", "io", "gpu"):
        if result.get(detail) is not None:
            raw[detail] = result[detail]
    return row, raw

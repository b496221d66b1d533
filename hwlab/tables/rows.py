"""Turn one runner result line into one table row with its provenance."""

from __future__ import annotations

import time
from typing import Any

from hwlab.space import OpSpec

UNSTABLE_IQR_REL = 0.10  # IQR/median above this is flagged as unstable


def _ms(us: float | None) -> float | None:
    return None if us is None else round(us / 1000.0, 6)


def _hottest(readings: dict[str, float] | None) -> float | None:
    return max(readings.values()) if readings else None


def row_from_result(
    result: dict[str, Any], spec: OpSpec, *, device: str, backend: str, emulated: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The table row for a result, and the raw samples to store beside it (None for an error)."""
    row: dict[str, Any] = {
        "key": spec.key,
        **spec.fields(),
        "status": result.get("status", "error"),
        "error": result.get("error"),
        "device": device,
        "emulated": emulated,
        "backend": backend,
        "runtime": result.get("runtime"),
        "runtime_version": result.get("runtime_version"),
        "runtime_module": result.get("runtime_module"),
        "threads": result.get("threads"),
        "core_mask": ",".join(map(str, result["core_mask"])) if result.get("core_mask") else None,
        "temp_c": _hottest(result.get("temp_c_before")),
        "temp_c_after": _hottest(result.get("temp_c_after")),
        "freq_mhz": _mean_mhz(result.get("freq_khz_before")),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if row["status"] != "ok":
        return row, None
    s = result["summary"]
    row.update(
        median_ms=_ms(s["median_us"]),
        p10_ms=_ms(s["p10_us"]),
        p90_ms=_ms(s["p90_us"]),
        iqr_ms=_ms(s["iqr_us"]),
        mean_ms=_ms(s["mean_us"]),
        std_ms=_ms(s["std_us"]),
        min_ms=_ms(s["min_us"]),
        n=s["n"],
        ci_rel=s["ci_rel"],
        block=result.get("block"),
        stop_reason=result.get("stop_reason"),
        unstable=bool(s["median_us"] and s["iqr_us"] / s["median_us"] > UNSTABLE_IQR_REL),
    )
    samples = {"samples_us": result["samples_us"], "block": result.get("block")}
    return row, samples


def _mean_mhz(freqs: dict[str, int] | None) -> float | None:
    return round(sum(freqs.values()) / len(freqs) / 1000.0, 1) if freqs else None

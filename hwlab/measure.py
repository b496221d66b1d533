"""How long and how carefully to measure: the rules a job sends to the device."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class MeasureSettings:
    """Warm-up, stop and cooldown rules sent to the runner (see runners/PROTOCOL.md)."""

    warmup_count: int = 10
    warmup_time_s: float = 0.05
    min_count: int = 20
    min_time_s: float = 0.2
    max_time_s: float = 3.0
    ci_rel: float = 0.02
    confidence: float = 0.95
    max_count: int = 100_000
    block_min_time_s: float = 0.0002
    max_temp_c: float | None = None
    pause_s: float = 0.0
    cooldown_timeout_s: float = 60.0
    seed: int = 0

    def job_fields(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "warmup": {"min_count": self.warmup_count, "min_time_s": self.warmup_time_s},
            "stop": {
                "min_count": self.min_count,
                "min_time_s": self.min_time_s,
                "max_time_s": self.max_time_s,
                "ci_rel": self.ci_rel,
                "confidence": self.confidence,
                "max_count": self.max_count,
            },
            "block_min_time_s": self.block_min_time_s,
            "cooldown": {
                "max_temp_c": self.max_temp_c,
                "pause_s": self.pause_s,
                "timeout_s": self.cooldown_timeout_s,
            },
        }

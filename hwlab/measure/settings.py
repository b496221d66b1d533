"""How long and how carefully to measure: the runner's own rule classes, so host and device share one set.

The host never restates a default: ``MeasureSettings()`` here is the object a job
file that leaves every rule out means on the device (runners/PROTOCOL.md).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hwlab_runner.job import Cooldown, MeasureSettings, PowerRule, RoundRule, StopRule, Warmup

__all__ = ["Cooldown", "MeasureSettings", "PowerRule", "RoundRule", "StopRule", "Warmup", "single", "stopping"]


DEFAULT = MeasureSettings()


def stopping(settings: MeasureSettings = DEFAULT, **stop: Any) -> MeasureSettings:
    """``settings`` with some stop-rule fields changed: ``stopping(min_time_s=0.3, ci_rel=0.003)``.

    ``max_time_s`` (a model's measuring time at most) and ``ci_rel`` (the CI to stop at) mean the same in
    both schedules, so they change the rounds' rule too: a quick rule is quick either way.
    """
    rounds = settings.rounds
    if rounds is not None:
        rounds = replace(rounds, **{k: v for k, v in stop.items() if k in ("max_time_s", "ci_rel")})
    return replace(settings, stop=replace(settings.stop, **stop), rounds=rounds)


def single(settings: MeasureSettings = DEFAULT) -> MeasureSettings:
    """``settings`` measuring each model in one block of its own (no rounds)."""
    return replace(settings, rounds=None)

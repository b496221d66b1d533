"""Turn an inventory's wishes into the settings a job runs with, from what the device reports.

The core mask may name a cluster (``big``/``little``) that only the device's
sysfs can resolve; threads never exceed the cores they are pinned to.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

from hwlab.errors import InvalidRequest


@dataclass(frozen=True)
class Placement:
    """Where and how wide a job runs, and why (for the table's metadata)."""

    core_mask: tuple[int, ...] | None
    threads: int
    notes: tuple[str, ...] = ()


def resolve_core_mask(wish: tuple[int, ...] | str | None, facts: dict[str, Any]) -> tuple[tuple[int, ...] | None, str]:
    """CPU ids for a mask wish: explicit ids, ``big``/``little`` (fastest/slowest cluster), or all."""
    if wish is None or wish == "all":
        return None, "all CPUs"
    if not isinstance(wish, str):
        online = set(facts.get("online_cpus") or [])
        missing = sorted(set(wish) - online) if online else []
        if missing:
            raise InvalidRequest(
                f"core mask {list(wish)} names CPUs {missing} that the device does not have (online: {sorted(online)})",
                hint="fix core_mask in the inventory or --core-mask",
            )
        return tuple(wish), "explicit"
    clusters = facts.get("clusters") or []
    if not clusters:
        warnings.warn(
            f"core mask {wish!r} asked for, but the device reports no CPU clusters (no cpufreq in sysfs):"
            " running on all CPUs",
            stacklevel=2,
        )
        return None, f"{wish} (unresolved: no cpufreq)"
    ordered = sorted(clusters, key=lambda c: c["max_khz"])
    chosen = ordered[-1] if wish == "big" else ordered[0]
    return tuple(sorted(chosen["cpus"])), f"{wish} cluster ({chosen['max_khz'] / 1e6:.2f} GHz)"


def place(wish_mask: tuple[int, ...] | str | None, threads: int, facts: dict[str, Any]) -> Placement:
    """Where a job runs: the mask resolved on the device, threads capped at its CPUs."""
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InvalidRequest(f"threads must be a whole number >= 1, not {threads!r}", hint="pass --threads 1 or more")
    mask, how = resolve_core_mask(wish_mask, facts)
    notes = [f"core mask: {how}"]
    width = len(mask) if mask else len(facts.get("affinity") or facts.get("online_cpus") or []) or threads
    if threads > width:
        notes.append(f"threads capped from {threads} to {width}: the mask has {width} CPUs")
        warnings.warn(notes[-1], stacklevel=2)
        threads = width
    return Placement(mask, threads, tuple(notes))

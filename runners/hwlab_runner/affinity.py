"""Pinning the runner to the job's CPUs.

Applied once, before any runtime is imported, so every thread a runtime
creates later inherits the mask. Where the OS has no affinity API (macOS) the
mask cannot be applied and the affinity in force is reported as unknown (None).
"""

from __future__ import annotations

import os
from typing import Sequence


class AffinityError(RuntimeError):
    """The core mask cannot be applied on this device."""


def current_affinity() -> list[int] | None:
    """CPUs the calling thread may run on, or None where the OS cannot tell."""
    getter = getattr(os, "sched_getaffinity", None)
    if getter is None:
        return None
    try:
        return sorted(getter(0))
    except OSError:
        return None


def apply_core_mask(mask: Sequence[int] | None) -> list[int] | None:
    """Pin to ``mask`` (None leaves affinity alone); return the affinity now in force.

    Raises :class:`AffinityError` when the kernel refuses the mask (a CPU that is
    offline or does not exist) so a job is not measured on the wrong cores.
    """
    if mask is not None:
        setter = getattr(os, "sched_setaffinity", None)
        if setter is None:
            return None
        try:
            setter(0, set(mask))
        except (OSError, ValueError) as e:
            allowed = current_affinity()
            raise AffinityError(
                f"core_mask {sorted(mask)} cannot be applied ({e}); CPUs allowed here: {allowed}"
            ) from None
    return current_affinity()

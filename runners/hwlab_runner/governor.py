"""The cpufreq governor: set for the measurement, put back exactly as it was afterwards.

Shaped like pyperf's system tuning operations: ``available()``, ``show()``,
then ``apply()`` and ``undo()``. A cpufreq policy is usually shared by the CPUs
of a cluster, so writing one CPU's ``scaling_governor`` changes its siblings:
:meth:`CpuGovernor.apply` re-reads each CPU before writing and only writes
those still different, and :meth:`CpuGovernor.undo` writes those back in
reverse order, which leaves every policy as it was found.
"""

from __future__ import annotations

import errno
import os
from typing import Any, Sequence

CPU_DIR = "sys/devices/system/cpu"


class GovernorError(RuntimeError):
    """The governor cannot be set; the message says why and what to do."""


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def _write(path: str, text: str) -> None:
    """One write(2), so sysfs refusals surface here rather than at close."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class CpuGovernor:
    """The ``scaling_governor`` of a set of CPUs under a sysfs ``root``."""

    def __init__(self, cpus: Sequence[int], root: str = "/") -> None:
        self.cpus = sorted(set(cpus))
        self.root = root
        self._changed: list[tuple[int, str]] = []  # (cpu, governor before), in write order

    def path(self, cpu: int, name: str = "scaling_governor") -> str:
        return os.path.join(self.root, CPU_DIR, f"cpu{cpu}", "cpufreq", name)

    def available(self) -> bool:
        """Whether any of the CPUs has a readable governor."""
        return bool(self.show())

    def show(self) -> dict[str, str]:
        """Governor in force per CPU id (as a string); CPUs without cpufreq are left out."""
        out = {}
        for cpu in self.cpus:
            governor = _read(self.path(cpu))
            if governor:
                out[str(cpu)] = governor
        return out

    def _refusal(self, path: str, target: str, e: OSError) -> GovernorError:
        how = f"echo {target} | sudo tee {os.path.join(self.root, CPU_DIR, 'cpu*', 'cpufreq', 'scaling_governor')}"
        if e.errno in (errno.EACCES, errno.EPERM):
            return GovernorError(f"permission denied writing {path}: run as root or set it by hand ({how})")
        if e.errno == errno.EROFS:
            return GovernorError(
                f"read-only file system writing {path}: set it by hand where sysfs is writable ({how})"
            )
        return GovernorError(
            f"cannot write {target!r} to {path} ({e.strerror or e}): check scaling_available_governors"
        )

    def apply(self, target: str = "performance") -> dict[str, str]:
        """Set ``target`` on every CPU that has another; return the governors found before.

        On any refusal what was already written is undone and :class:`GovernorError` says why.
        """
        before = self.show()
        if not before:
            raise GovernorError(f"no cpufreq scaling_governor for CPUs {self.cpus}: this device has no cpufreq driver")
        for cpu in self.cpus:
            offered = _read(self.path(cpu, "scaling_available_governors"))
            if offered is not None and target not in offered.split():
                raise GovernorError(f"cpu{cpu} does not offer governor {target!r} (offers: {offered})")
        for cpu in self.cpus:
            current = _read(self.path(cpu))
            if not current or current == target:
                continue  # no cpufreq here, or a sibling's write already set the shared policy
            # Recorded before the write: a signal that lands just after it (SystemExit, see signals.py) must
            # find the change to undo. Writing back a governor that was never changed is harmless.
            self._changed.append((cpu, current))
            try:
                _write(self.path(cpu), target + "\n")
            except OSError as e:
                self._changed.pop()
                self.undo()
                raise self._refusal(self.path(cpu), target, e) from None
        kept = {cpu: gov for cpu, gov in self.show().items() if gov != target}
        if kept:
            self.undo()
            raise GovernorError(f"the kernel kept {kept} after writing {target!r}: something else manages cpufreq here")
        return before

    def undo(self) -> list[str]:
        """Write back every governor :meth:`apply` changed; return the failures (empty when all went back)."""
        failures = []
        while self._changed:
            cpu, governor = self._changed.pop()
            try:
                _write(self.path(cpu), governor + "\n")
            except OSError as e:
                failures.append(f"cannot restore {governor!r} on cpu{cpu}: {e.strerror or e}")
        return failures


def set_for_job(governor: CpuGovernor, target: str) -> dict[str, Any]:
    """Apply ``target``; return the ``governor`` object of every result line."""
    try:
        previous = governor.apply(target)
    except GovernorError as e:
        return {"requested": target, "applied": False, "reason": str(e)}
    return {"requested": target, "applied": True, "previous": previous, "current": governor.show()}

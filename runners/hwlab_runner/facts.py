"""The ``facts`` command: one JSON object describing the device.

The host stores it next to every table so a number can always be traced back
to the CPU, clocks, temperatures and runtimes it was measured with.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import socket
from typing import Any

from . import PROTOCOL_VERSION, __version__, sysinfo
from .affinity import current_affinity
from .backends import BACKENDS
from .gpu import gpu_facts


def _module_version(name: str) -> dict[str, str] | None:
    try:
        if importlib.util.find_spec(name) is None:
            return None
        module = importlib.import_module(name)
    except Exception:
        return None
    return {"module": name, "version": str(getattr(module, "__version__", "unknown"))}


def runtime_versions() -> dict[str, dict[str, Any] | None]:
    """``{runtime: {"module", "version"} or None}`` for every backend, plus numpy; a runtime that is
    installed but fails to import has ``"version": None`` and the ``"error"``."""
    out: dict[str, dict[str, Any] | None] = {name: backend.probe() for name, backend in BACKENDS.items()}
    out["numpy"] = _module_version("numpy")
    return out


def gather_facts(root: str = "/") -> dict[str, Any]:
    """Everything the runner can learn about the device without changing it."""
    uname = platform.uname()
    max_freq = sysinfo.max_freq_khz(root)
    memory = sysinfo.memory_mib(root)
    return {
        "protocol": PROTOCOL_VERSION,
        "runner_version": __version__,
        "hostname": socket.gethostname(),
        "os": uname.system,
        "kernel": uname.release,
        "kernel_version": uname.version,
        "machine": uname.machine,
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "cpu_model": sysinfo.cpu_model(root),
        "cpu_parts": sysinfo.cpu_parts(root),
        "int8_features": sysinfo.int8_features(root),
        "cpu_count": os.cpu_count(),
        "online_cpus": sysinfo.online_cpus(root),
        "clusters": sysinfo.clusters(max_freq),
        "max_freq_khz": max_freq,
        "freq_khz": sysinfo.cur_freq_khz(root),
        "governors": sysinfo.governors(root),
        "thermal_c": sysinfo.thermal_zones(root),
        "memory_total_mib": memory.get("total_mib"),
        "memory_available_mib": memory.get("available_mib"),
        "loadavg": sysinfo.loadavg(root),
        "runtimes": runtime_versions(),
        "affinity": current_affinity(),
        **gpu_facts(),
    }

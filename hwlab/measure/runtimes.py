"""Which runtimes a profile can use: the device must run it, this host must export models for it.

Both are checked before anything is exported or pushed, and each refusal names the
fix. A runtime that is installed but fails to import (on the device or here) says
so, with the import error, instead of "not installed".
"""

from __future__ import annotations

from typing import Any

from hwlab.errors import BackendUnavailable
from hwlab.export import FORMAT_FOR_RUNTIME
from hwlab.export.writers import missing_exporter_modules
from hwlab.inventory import RUNTIMES, DeviceSpec

PIP_PACKAGE = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "torch": "torch"}


def exporter_problem(backend: str) -> str | None:
    """Why this host cannot export models for ``backend`` (None when it can)."""
    missing = missing_exporter_modules(FORMAT_FOR_RUNTIME[backend])
    return f"{', '.join(missing)} is not installed" if missing else None


def host_can_export(backend: str) -> bool:
    return exporter_problem(backend) is None


def runtime_fact(facts: dict[str, Any], backend: str) -> dict[str, Any] | None:
    """The device's entry for a runtime: None when absent, with ``error`` when it fails to import."""
    return (facts.get("runtimes") or {}).get(backend)


def runtime_version(facts: dict[str, Any], backend: str) -> str | None:
    """The runtime's version as the device reports it, None when it is not importable there."""
    found = runtime_fact(facts, backend)
    return found.get("version") if found else None


def check_backend(backend: str, facts: dict[str, Any], device: DeviceSpec) -> None:
    """Refuse early, with the fix, when the device or this host cannot run a backend."""
    if backend not in RUNTIMES:
        raise BackendUnavailable(f"unknown backend {backend!r}", hint=f"use one of {', '.join(RUNTIMES)}")
    found = runtime_fact(facts, backend)
    if found is None and backend == "litert" and device.benchmark_model:
        raise BackendUnavailable(
            f"device {device.name!r} has no executable benchmark_model at {device.benchmark_model!r}",
            hint="copy TFLite's benchmark_model there and make it executable (chmod +x), or fix benchmark_model:",
        )
    if found is None:
        raise BackendUnavailable(
            f"{backend} is not installed on device {device.name!r}",
            hint=f"install it there: pip install {PIP_PACKAGE[backend]}",
        )
    if found.get("error"):
        raise BackendUnavailable(
            f"{backend} is installed on device {device.name!r} but fails to import: {found['error']}",
            hint=f"reinstall it there: pip install --force-reinstall {PIP_PACKAGE[backend]}",
        )
    problem = exporter_problem(backend)
    if problem:
        raise BackendUnavailable(
            f"this host cannot export models for {backend}: {problem}",
            hint="pip install 'hwlab[tflite]' (litert-torch)" if backend == "litert" else "pip install onnx torch",
        )


def available_backends(facts: dict[str, Any], device: DeviceSpec) -> list[str]:
    """Backends both the device has and this host can export for, in the inventory's order."""
    usable = []
    for backend in device.runtimes:
        try:
            check_backend(backend, facts, device)
        except BackendUnavailable:
            continue
        usable.append(backend)
    return usable

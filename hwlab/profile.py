"""Profile a space of operators on a device into a lookup table.

Plan (which keys are missing) → export (cached) → deploy (content-addressed)
→ one runner job → each result line appended to the table as it arrives. A
kill at any point keeps every finished row; the same call again measures only
what is missing.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hwlab
from hwlab.deploy import Deployer
from hwlab.errors import BackendUnavailable, RunnerError
from hwlab.export import FORMAT_FOR_RUNTIME, ExportedModel, export_module, export_spec
from hwlab.inventory import RUNTIMES, DeviceSpec
from hwlab.lock import device_lock
from hwlab.measure import MeasureSettings
from hwlab.prepare import Placement, place
from hwlab.space import OpSpec
from hwlab.tables import LookupTable, TableId
from hwlab.tables.rows import row_from_result
from hwlab.transport import Transport, connect

# Host-side modules each export format needs.
EXPORTER_MODULES = {"onnx": ("onnx",), "tflite": ("litert_torch",), "pt2": ()}
PIP_PACKAGE = {"onnxruntime": "onnxruntime", "litert": "ai-edge-litert", "torch": "torch"}

Progress = Callable[[str, int, int, str], None]  # (phase, done, total, label)


@dataclass(frozen=True)
class ModelItem:
    """Anything to measure: a key, the columns that describe it, and how to export it to a format."""

    key: str
    fields: dict[str, Any]
    export: Callable[[str], ExportedModel]

    @classmethod
    def of_spec(cls, spec: OpSpec) -> ModelItem:
        return cls(spec.key, spec.fields(), lambda fmt: export_spec(spec, fmt))

    @classmethod
    def of_module(cls, key: str, module: Any, example_inputs: Any, fields: dict[str, Any]) -> ModelItem:
        """A torch module (a whole model, a chain of ops) measured under ``key``."""
        return cls(key, fields, lambda fmt: export_module(module, example_inputs, fmt, name=key))


def as_item(thing: OpSpec | ModelItem) -> ModelItem:
    return thing if isinstance(thing, ModelItem) else ModelItem.of_spec(thing)


@dataclass(frozen=True)
class ProfileRequest:
    device: DeviceSpec
    backend: str
    specs: Sequence[OpSpec | ModelItem]
    space: str
    space_params: dict[str, Any] = field(default_factory=dict)
    table_name: str | None = None
    tables_root: Path = Path("tables")
    threads: int | None = None
    core_mask: tuple[int, ...] | str | None = None
    settings: MeasureSettings = MeasureSettings()
    retry_errors: bool = False
    lock_wait_s: float = 0.0
    governor: str | None = None  # e.g. "performance"; None = the inventory's, else leave it
    power: str | None = None  # "auto", "none" or a sensor name; None = the inventory's, else auto

    @property
    def table_id(self) -> TableId:
        return TableId(self.device.name, self.backend, self.table_name or self.space)


@dataclass
class ProfileReport:
    table: LookupTable
    planned: int
    skipped: int
    measured: list[dict[str, Any]] = field(default_factory=list)
    pushed: int = 0

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.measured if r["status"] != "ok"]

    @property
    def unstable(self) -> list[dict[str, Any]]:
        return [r for r in self.measured if r.get("unstable")]


def host_can_export(backend: str) -> bool:
    fmt = FORMAT_FOR_RUNTIME[backend]
    return all(importlib.util.find_spec(m) is not None for m in EXPORTER_MODULES[fmt])


def check_backend(backend: str, facts: dict[str, Any], device: DeviceSpec) -> None:
    """Refuse early, with the fix, when the device or this host cannot run a backend."""
    if backend not in RUNTIMES:
        raise BackendUnavailable(f"unknown backend {backend!r}", hint=f"use one of {', '.join(RUNTIMES)}")
    if not (facts.get("runtimes") or {}).get(backend):
        raise BackendUnavailable(
            f"{backend} is not installed on device {device.name!r}",
            hint=f"install it there: pip install {PIP_PACKAGE[backend]}",
        )
    if not host_can_export(backend):
        raise BackendUnavailable(
            f"this host cannot export models for {backend}", hint="pip install 'hwlab[tflite]' (litert-torch)"
        )


def runtime_version(facts: dict[str, Any], backend: str) -> str | None:
    """The runtime's version as the device reports it, None when it is not importable there."""
    found = (facts.get("runtimes") or {}).get(backend)
    return found.get("version") if found else None


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


def _table_meta(request: ProfileRequest, facts: dict[str, Any]) -> dict[str, Any]:
    return {
        "device": request.device.name,
        "emulated": request.device.emulated,
        "backend": request.backend,
        "space": {"name": request.space, **request.space_params},
        "device_facts": facts,
        "hwlab_version": hwlab.__version__,
        "host_exporters": _exporter_versions(),
        "settings": asdict(request.settings),
    }


def _exporter_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("torch", "onnx", "litert-torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def profile(
    request: ProfileRequest,
    progress: Progress | None = None,
    transport: Transport | None = None,
    facts: dict[str, Any] | None = None,
) -> ProfileReport:
    """Measure every op of the request that the table does not hold yet, holding the device's lock.

    ``facts`` (the runner's report of the device) is fetched unless the caller has it already.
    """
    device = request.device
    report_progress = progress or (lambda *_: None)
    own_transport = transport is None
    with device_lock(device.name, request.lock_wait_s):
        transport = transport or connect(device)
        try:
            return _profile_locked(request, transport, report_progress, facts)
        finally:
            if own_transport:
                transport.close()


def _profile_locked(
    request: ProfileRequest, transport: Transport, progress: Progress, facts: dict[str, Any] | None
) -> ProfileReport:
    device = request.device
    deployer = Deployer(transport, device)
    facts = facts or device_facts(deployer)
    check_backend(request.backend, facts, device)
    wish = request.core_mask if request.core_mask is not None else device.core_mask
    placement = place(wish, request.threads or device.threads, facts)
    fixed = {
        "device": device.name,
        "runtime": request.backend,
        "runtime_version": runtime_version(facts, request.backend),
        "threads": placement.threads,
        "core_mask": list(placement.core_mask) if placement.core_mask else None,
    }
    table = LookupTable.at(request.tables_root, request.table_id)
    table.open_for_append(fixed, {**_table_meta(request, facts), "placement": list(placement.notes)})

    by_key = {item.key: item for item in map(as_item, request.specs)}
    done = table.keys("ok") if request.retry_errors else table.keys()
    if request.retry_errors:
        table.drop(table.keys() - done)
    todo = [item for key, item in by_key.items() if key not in done]
    report = ProfileReport(table=table, planned=len(by_key), skipped=len(by_key) - len(todo))
    if not todo:
        return report

    fmt = FORMAT_FOR_RUNTIME[request.backend]
    models = []
    for i, item in enumerate(todo):
        progress("export", i, len(todo), item.key)
        exported = item.export(fmt)
        models.append(
            {
                "key": item.key,
                "path": deployer.model(exported.path, exported.sha256),
                "inputs": [{"shape": list(s), "dtype": "float32"} for s in exported.input_shapes],
            }
        )
    progress("export", len(todo), len(todo), "")
    if request.backend == "litert" and device.benchmark_model:
        _run_benchmark_model(deployer, models, placement, _ResultSink(by_key, report, request), progress)
        return report
    job = {
        "protocol": 1,
        "runtime": request.backend,
        "threads": placement.threads,
        "core_mask": list(placement.core_mask) if placement.core_mask else None,
        "governor": request.governor or device.governor,
        "power": _power_request(request.power, device),
        **request.settings.job_fields(),
        "models": models,
    }
    _run_job(deployer, job, _ResultSink(by_key, report, request), progress)
    report.pushed = len(deployer.pushed)
    return report


def device_facts(deployer: Deployer) -> dict[str, Any]:
    """The runner's facts; for a device with TFLite's benchmark_model, litert is that binary,
    and a phone without Python is described by its shell instead."""
    binary = deployer.device.benchmark_model
    if not binary:
        return deployer.facts()
    from hwlab.android.shell_facts import shell_facts

    by_shell = shell_facts(deployer.transport, binary)
    try:
        facts = deployer.facts()
    except RunnerError:
        return by_shell
    facts.setdefault("runtimes", {})["litert"] = by_shell["runtimes"]["litert"]
    return facts


def _run_benchmark_model(
    deployer: Deployer,
    models: list[dict[str, Any]],
    placement: Placement,
    sink: _ResultSink,
    progress: Progress,
) -> None:
    """One benchmark_model run per model (phones without Python); rows appended as each ends."""
    from hwlab.android import run_benchmark_model

    binary = deployer.device.benchmark_model
    assert binary is not None
    for i, model in enumerate(models):
        progress("measure", i, len(models), model["key"])
        result = run_benchmark_model(
            deployer.transport, binary, model["path"], model["key"], placement.threads, sink.request.settings,
            core_mask=placement.core_mask,
        )  # fmt: skip
        sink.append(result)
    progress("measure", len(models), len(models), "")


@dataclass
class _ResultSink:
    """Where a device's result lines go: one table row each, appended the moment it arrives."""

    by_key: dict[str, ModelItem]
    report: ProfileReport
    request: ProfileRequest

    def append(self, result: dict[str, Any]) -> None:
        item = self.by_key.get(result.get("key", ""))
        if item is None:
            raise RunnerError(f"the device returned a result for an unknown key {result.get('key')!r}")
        device = self.request.device
        row, samples = row_from_result(
            result, item.key, item.fields, device=device.name, backend=self.request.backend, emulated=device.emulated
        )
        self.report.table.append(row, samples)
        self.report.measured.append(row)


def _power_request(wish: str | None, device: DeviceSpec) -> dict[str, Any] | None:
    """The job's power field: the inventory's sensors, or discovery, or none."""
    if wish == "none":
        return None
    if wish and wish != "auto":
        return {"sensors": [wish]}
    if device.power_sensors:
        return {"sensors": list(device.power_sensors)}
    return {"sensors": "auto"}


def _run_job(
    deployer: Deployer,
    job: dict[str, Any],
    sink: _ResultSink,
    progress: Progress,
) -> None:
    total = len(job["models"])
    report = sink.report
    job_path = deployer.job(job)
    argv, env = deployer.runner_command("run", job_path)
    s = sink.request.settings
    # The slowest legitimate silence: cooldown, then loading and timing one model.
    line_timeout = s.cooldown_timeout_s + s.pause_s + 2 * s.max_time_s + 300.0
    stream = deployer.transport.stream(argv, line_timeout=line_timeout, env=env)
    progress("measure", 0, total, job["models"][0]["key"])
    try:
        for line in stream:
            try:
                result = json.loads(line)
            except ValueError:
                raise RunnerError(f"the runner printed a line that is not JSON: {line[:200]!r}") from None
            sink.append(result)
            done = len(report.measured)
            progress("measure", done, total, job["models"][done]["key"] if done < total else "")
    finally:
        if len(report.measured) < total:
            stream.kill()
    result = stream.result
    if result.rc != 0 or len(report.measured) < total:
        raise RunnerError(
            f"the runner stopped after {len(report.measured)} of {total} models (exit {result.rc}):"
            f" {result.stderr.strip()[-800:]}",
            hint="finished rows are kept; rerun the same command to measure the rest",
        )

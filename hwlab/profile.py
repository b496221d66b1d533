"""Profile a space of operators on a device into a lookup table.

Plan (which keys are missing) → check the job (before anything costly) → export
(cached) → deploy (content-addressed) → the device's measurer → each result line
appended to the table as it arrives. A kill at any point keeps every finished row;
the same call again measures only what is missing. The pieces live in
:mod:`hwlab.measure`; this module only puts them in order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from hwlab_runner.onnxgraph import ProtobufError, graph_nodes

import hwlab
from hwlab.errors import BackendUnavailable, ExportError, HwlabError, InvalidRequest, PrecisionUnsupported, SpaceError
from hwlab.export import FORMAT_FOR_RUNTIME, ExportedModel, export_module, export_spec, file_sha256
from hwlab.inventory import DeviceSpec
from hwlab.lease import device_lease
from hwlab.measure.anchors import ANCHORS, anchor_module
from hwlab.measure.benchmark_model import BenchmarkModelMeasurer
from hwlab.measure.deploy import Deployer
from hwlab.measure.facts import device_facts
from hwlab.measure.inputs import InputArchive, input_archive
from hwlab.measure.jobs import GraphRule, ModelSpec, build_job, model_spec, with_input_data, with_models
from hwlab.measure.placement import place
from hwlab.measure.results import ResultSink
from hwlab.measure.runner import RunnerMeasurer
from hwlab.measure.runtimes import available_backends, check_backend, runtime_version
from hwlab.measure.settings import MeasureSettings
from hwlab.measure.speed import Setting, SpeedScale
from hwlab.modelfile import file_shapes
from hwlab.progress import Progress
from hwlab.quant.space import at_precisions
from hwlab.space import OpSpec, SpaceContext, get_space
from hwlab.tables import LookupTable, TableId
from hwlab.transport import Transport, connect

Measurer = RunnerMeasurer | BenchmarkModelMeasurer


@dataclass(frozen=True)
class ModelItem:
    """Anything to measure: a key, the columns that describe it, and how to export it to a format.

    ``fmt``: a model file's format, measured only by the runtime that loads it (None: any). ``data``:
    real inputs, over which the device measures it call by call (its row then has the distribution).
    """

    key: str
    fields: dict[str, Any]
    export: Callable[[str], ExportedModel]
    fmt: str | None = None
    data: InputArchive | None = None

    @classmethod
    def of_spec(cls, spec: OpSpec) -> ModelItem:
        return cls(spec.key, spec.fields(), lambda fmt: export_spec(spec, fmt))

    @classmethod
    def of_module(cls, key: str, module: Any, example_inputs: Any, fields: dict[str, Any]) -> ModelItem:
        """A torch module (a whole model, a chain of ops) measured under ``key``."""
        return cls(key, fields, lambda fmt: export_module(module, example_inputs, fmt, name=key))

    @classmethod
    def of_file(cls, path: Path, key: str, data: InputArchive | None = None) -> ModelItem:
        """A model file measured as it is, on seeded random inputs of its declared shapes (float inputs only),
        or over ``data``'s samples (checked against it: hwlab.measure.inputs)."""
        fmt = path.suffix.lstrip(".")
        fields: dict[str, Any] = {"op": "model", "family": "file", "file": path.name}
        if data is not None:
            fields.update(inputs_file=data.path.name, inputs_sha256=data.sha256[:16])

        def export(want: str) -> ExportedModel:
            if want != fmt:
                raise ExportError(f"{path.name} is a .{fmt} model; this backend loads .{want}", hint="")
            shapes = tuple(s.shape for s in data.inputs) if data is not None else file_shapes(path)
            return ExportedModel(path, file_sha256(path), fmt, shapes, key)

        return cls(key, fields, export, fmt, data)


MODELS_TABLE = "models"  # the table of model files measured as they are (`hwlab profile --model`)
FILE_FORMATS = (".onnx", ".tflite")  # whose inputs the host can read (hwlab.modelfile)


def file_items(files: Sequence[Path], inputs: Path | None = None, key: str | None = None) -> list[ModelItem]:
    """Model files as items, keyed by ``key`` (one file) or each file's stem, each read here and checked
    against ``inputs`` when given: a wrong file or archive is refused before any device is touched."""
    if key is not None and len(files) != 1:
        raise InvalidRequest(
            f"--key names one model, not {len(files)}", hint="leave out --key: each file's stem is its key"
        )
    keys = [key] if key is not None else [f.stem for f in files]
    if not all(keys) or len(set(keys)) < len(keys):
        raise InvalidRequest(
            f"the models' keys {keys} are not distinct and non-empty", hint="rename the files, or give one with --key"
        )
    items = []
    for path, name in zip(files, keys, strict=True):
        if path.suffix not in FILE_FORMATS or not path.is_file():
            problem = "no file" if not path.is_file() else f"not a model file of {', '.join(FILE_FORMATS)}"
            raise InvalidRequest(f"{path}: {problem}", hint="give an .onnx or a .tflite model with --model")
        item = ModelItem.of_file(path, name, input_archive(inputs, path) if inputs is not None else None)
        assert item.fmt is not None
        item.export(item.fmt)  # reads the file's inputs now: a file that cannot be read fails here
        items.append(item)
    return items


def as_item(thing: OpSpec | ModelItem) -> ModelItem:
    return thing if isinstance(thing, ModelItem) else ModelItem.of_spec(thing)


@dataclass(frozen=True)
class Measuring:
    """Where and how a device measures, as a user asks it (None: the inventory's)."""

    threads: int | None = None
    core_mask: tuple[int, ...] | str | None = None
    governor: str | None = None  # e.g. "performance"; None = the inventory's, else leave it
    power: str | None = None  # "auto", "none" or a sensor name; None = the inventory's, else auto
    lock_wait_s: float = 0.0


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
    remeasure_unsettled: bool = False  # measure again the rows whose floor never met the stop rule's CI
    lock_wait_s: float = 0.0
    governor: str | None = None  # e.g. "performance"; None = the inventory's, else leave it
    power: str | None = None  # "auto", "none" or a sensor name; None = the inventory's, else auto
    runtime_graph: GraphRule | None = None  # capture what the runtime executes (see shows_runtime_graph)

    @classmethod
    def of(cls, device: DeviceSpec, backend: str, measuring: Measuring = Measuring(), **fields: Any) -> ProfileRequest:
        """A request with the user's measuring wishes (``fields`` win over them); no specs and no space
        unless ``fields`` give them."""
        return cls(device=device, backend=backend, **{"specs": [], "space": "", **asdict(measuring), **fields})

    @property
    def table_id(self) -> TableId:
        return TableId(self.device.name, self.backend, self.table_name or self.space)


@dataclass
class ProfileReport:
    table: LookupTable
    backend: str
    planned: int
    skipped: int
    measured: list[dict[str, Any]] = field(default_factory=list)  # the rows written now
    pushed: int = 0
    measurer: str = ""
    speed_note: str | None = None  # this run set the device's reference speed, or why it has no factor
    speed_states: list[float] = field(default_factory=list)  # per group: its anchors over the reference (mean)

    @property
    def errors(self) -> list[dict[str, Any]]:
        return [r for r in self.measured if r["status"] != "ok"]

    @property
    def unstable(self) -> list[dict[str, Any]]:
        return [r for r in self.measured if r.get("unstable")]


def unsettled_keys(table: LookupTable, settings: MeasureSettings) -> set[str]:
    """Rows measured in rounds whose floor's CI ended above the stop rule's (the rounds ran out first: the
    machine never showed its quiet state for long enough), the rows ``remeasure_unsettled`` measures again."""
    target = settings.rounds.ci_rel if settings.rounds is not None else None
    if target is None:
        return set()
    return {
        row["key"] for row in table
        if row.get("status") == "ok" and str(row.get("correction") or "").startswith("floor")
        and (row.get("ci_rel") or 0.0) > target
    }  # fmt: skip


def measurer_for(device: DeviceSpec, backend: str) -> Measurer:
    """hwlab's runner, except for litert on a device that names TFLite's benchmark_model binary."""
    if backend == "litert" and device.benchmark_model:
        return BenchmarkModelMeasurer(device.benchmark_model)
    return RunnerMeasurer()


def shows_runtime_graph(backend: str, measurer: Measurer) -> bool:
    """Whether the runtime's executed graph can be captured: onnxruntime's optimised graph through the runner,
    LiteRT's executed nodes through benchmark_model's op profiling (the Python interpreter shows neither)."""
    return backend == "onnxruntime" or isinstance(measurer, BenchmarkModelMeasurer)


def _table_meta(request: ProfileRequest, facts: dict[str, Any], measurer: Measurer) -> dict[str, Any]:
    return {
        "device": request.device.name,
        "emulated": request.device.emulated,
        "backend": request.backend,
        "measurer": measurer.name,
        "space": {"name": request.space, **request.space_params},
        "device_facts": facts,
        "hwlab_version": hwlab.__version__,
        "host_exporters": _exporter_versions(),
        "settings": asdict(request.settings),
    }


def _exporter_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for pkg in ("torch", "onnx", "litert-torch"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def resolve_backends(wanted: Sequence[str], facts: dict[str, Any], device: DeviceSpec) -> list[str]:
    """The backends to use: as given, or for ``("all",)`` every one the device and this host can use."""
    if tuple(wanted) != ("all",):
        return list(wanted)
    usable = available_backends(facts, device)
    if not usable:
        raise BackendUnavailable(
            f"no runtime of {', '.join(device.runtimes)} is usable on {device.name!r}",
            hint=f"see `hwlab doctor --device {device.name}`",
        )
    return usable


def usable_backends(device: DeviceSpec) -> list[str]:
    """Every runtime of the inventory that the device runs and this host exports for (asks the device)."""
    transport = connect(device)
    try:
        return resolve_backends(("all",), device_facts(Deployer(transport, device)), device)
    finally:
        transport.close()


@dataclass
class SpaceProfile:
    """What :func:`profile_space` did on each backend: a report, or why that backend was refused."""

    reports: list[ProfileReport] = field(default_factory=list)
    refused: dict[str, HwlabError] = field(default_factory=dict)


# Refusals of one backend's request: the other backends are still profiled. Anything else (a lost link,
# a busy device) ends the whole profile.
PER_BACKEND = (BackendUnavailable, InvalidRequest, SpaceError, PrecisionUnsupported)


def profile_space(
    base: ProfileRequest,
    backends: Sequence[str],
    progress_for: Callable[[str], Progress] | None = None,
    precisions: Sequence[str] = ("fp32",),
    items: Sequence[ModelItem] | None = None,
) -> SpaceProfile:
    """``base.space`` (with ``base.space_params``) profiled on each backend, over one connection.

    ``items`` (model files, :meth:`ModelItem.of_file`) replace the space: each is measured on the
    backends that load its format, and a file that none of them loads is refused before any is measured.

    ``precisions``: every op at each (keys end ``-prec:int8``), with the models that price a switch
    between precisions (hwlab/quant/space.py); fp32 alone leaves the space as it is.

    ``backends`` may be ``("all",)``: every runtime the device and this host can use.
    A space built from measurements (``kernels``) is built for each backend in turn.
    A backend whose request is refused (its runtime missing, a request its measurer cannot
    honour) is recorded in ``refused`` and the others are profiled all the same.
    """
    device = base.device
    if items is not None and tuple(backends) != ("all",):
        _check_formats(items, backends)  # before the device is reached
    transport = connect(device)
    done = SpaceProfile()
    try:
        facts = device_facts(Deployer(transport, device))
        chosen = resolve_backends(backends, facts, device)
        if items is not None:
            _check_formats(items, chosen)
        for backend in chosen:
            try:
                specs = _specs_for(base, backend, precisions, items)
                if items is not None and not specs:
                    continue  # no file of this backend's format
                request = replace(base, backend=backend, specs=specs)
                progress = progress_for(backend) if progress_for else None
                done.reports.append(profile(request, progress, transport=transport, facts=facts))
            except PER_BACKEND as err:
                done.refused[backend] = err
        return done
    finally:
        transport.close()


def _specs_for(
    base: ProfileRequest, backend: str, precisions: Sequence[str], items: Sequence[ModelItem] | None
) -> Sequence[OpSpec | ModelItem]:
    """What ``backend`` measures: the files of its format, else the space built for it (at each precision)."""
    if items is not None:
        return [item for item in items if item.fmt in (None, FORMAT_FOR_RUNTIME[backend])]
    specs = get_space(base.space, SpaceContext(base.tables_root, base.device.name, backend), **base.space_params)
    return at_precisions(specs, precisions, backend) if tuple(precisions) != ("fp32",) else specs


def _check_formats(items: Sequence[ModelItem], backends: Sequence[str]) -> None:
    """Refuse a model file that none of ``backends`` loads (an .onnx asked of litert alone, say)."""
    loaded = {FORMAT_FOR_RUNTIME[b] for b in backends}
    by_format = {fmt: runtime for runtime, fmt in FORMAT_FOR_RUNTIME.items()}
    for item in items:
        if item.fmt is not None and item.fmt not in loaded:
            runtime = by_format.get(item.fmt)
            raise InvalidRequest(
                f"{item.fields.get('file', item.key)} is a .{item.fmt} model, which {', '.join(backends)} cannot load",
                hint=f"add --backend {runtime}" if runtime else f"give a model of {', '.join(sorted(loaded))}",
            )


def profile(
    request: ProfileRequest,
    progress: Progress | None = None,
    transport: Transport | None = None,
    facts: dict[str, Any] | None = None,
) -> ProfileReport:
    """Measure every op of the request that the table does not hold yet, holding the device's lock.

    ``facts`` (the device's description, :func:`hwlab.measure.facts.device_facts`) is
    fetched unless the caller has it already.
    """
    report_progress = progress or (lambda *_: None)
    own_transport = transport is None
    with device_lease(request.device.name, request.lock_wait_s):
        transport = transport or connect(request.device)
        try:
            return _profile_locked(request, Deployer(transport, request.device), report_progress, facts)
        finally:
            if own_transport:
                transport.close()


def _profile_locked(
    request: ProfileRequest, deployer: Deployer, progress: Progress, facts: dict[str, Any] | None
) -> ProfileReport:
    device = request.device
    facts = facts or device_facts(deployer)
    check_backend(request.backend, facts, device)
    placement = place(
        request.core_mask if request.core_mask is not None else device.core_mask,
        request.threads or device.threads,
        facts,
    )
    measurer = measurer_for(device, request.backend)
    graph = request.runtime_graph if shows_runtime_graph(request.backend, measurer) else None
    job = build_job(
        request.backend, placement, request.settings, device, governor=request.governor, power=request.power,
        runtime_graph=graph,
    )  # fmt: skip
    measurer.check(job)
    table = LookupTable.at(request.tables_root, request.table_id)
    fixed = {
        "device": device.name,
        "runtime": request.backend,
        "runtime_version": runtime_version(facts, request.backend),
        "threads": placement.threads,
        "core_mask": list(placement.core_mask) if placement.core_mask else None,
    }
    table.open_for_append(fixed, {**_table_meta(request, facts, measurer), "placement": list(placement.notes)})

    by_key = {item.key: item for item in map(as_item, request.specs)}
    done = table.keys("ok") if request.retry_errors else table.keys()
    if request.retry_errors:
        table.drop(table.keys() - done)
    if request.remeasure_unsettled:
        again = unsettled_keys(table, request.settings) & set(by_key)
        table.supersede(again)
        done -= again
    todo = [item for key, item in by_key.items() if key not in done]
    if isinstance(measurer, BenchmarkModelMeasurer) and any(item.data is not None for item in todo):
        raise InvalidRequest(
            f"{device.name!r} measures litert with benchmark_model, which feeds its own random inputs",
            hint="leave out --inputs, or install Python with numpy on the device to use hwlab's runner",
        )
    report = ProfileReport(table, request.backend, len(by_key), len(by_key) - len(todo), measurer=measurer.name)
    if not todo:
        return report
    nodes: dict[str, int] = {}
    unquantisable: dict[str, str] = {}
    models = _deployed(todo, request.backend, deployer, progress, nodes, unquantisable)
    # Anchors scale ordinary models; a model over input data keeps its raw distribution, so alone it needs none.
    plain = any(item.data is None for item in todo)
    anchors = _deployed(anchor_items(), request.backend, deployer, progress, nodes) if plain else []
    job = with_models(job, models, device, anchors=anchors)
    setting = Setting(request.backend, fixed["runtime_version"], placement.threads, _mask(placement.core_mask))
    speed = SpeedScale(request.tables_root, device.name, setting, set_by=str(request.table_id), nodes=nodes)
    sink = ResultSink(table, {key: item.fields for key, item in by_key.items()}, device, request.backend, speed)
    for key, why in unquantisable.items():  # a precision the quantiser cannot write for this op: a result
        sink.append({"key": key, "status": "error", "error": why})
    if not models:
        report.measured = sink.rows
        return report
    try:
        measurer.run(deployer, job, sink, progress)
    finally:
        report.measured = sink.rows
        report.pushed = len(deployer.pushed)
        report.speed_note = speed.note
        report.speed_states = sorted(speed.states.values())
    return report


def onnx_node_count(path: str | Path) -> int | None:
    """The node count of an ONNX file (Constant nodes left out: the runtime folds them); None for another
    format or a file that cannot be read."""
    if not str(path).endswith(".onnx"):
        return None
    try:
        nodes = graph_nodes(Path(path).read_bytes())
    except (OSError, ProtobufError):
        return None
    return sum(1 for n in nodes if n["op"] != "Constant") or None


def _mask(core_mask: Sequence[int] | None) -> str | None:
    return ",".join(map(str, core_mask)) if core_mask else None


def anchor_items() -> list[ModelItem]:
    """The anchor models, measured in every job (:mod:`hwlab.measure.anchors`)."""
    items = []
    for anchor in ANCHORS:
        module, example = anchor_module(anchor)
        items.append(ModelItem.of_module(anchor.key, module, example, {"anchor": True}))
    return items


def _deployed(
    todo: list[ModelItem],
    backend: str,
    deployer: Deployer,
    progress: Progress,
    nodes: dict[str, int],
    unquantisable: dict[str, str] | None = None,
) -> list[ModelSpec]:
    """Export each item (cached) and push it (content-addressed); the job's model entries. ``nodes`` gets each
    ONNX model's node count (its grain, for the speed scale). An op the quantiser cannot write at its
    precision goes into ``unquantisable`` (key -> why) instead of ending the run: that is a measured fact."""
    fmt = FORMAT_FOR_RUNTIME[backend]
    models = []
    for i, item in enumerate(todo):
        progress("export", i, len(todo), item.key)
        try:
            exported = item.export(fmt)
        except ExportError as err:
            if unquantisable is None or item.fields.get("prec", "fp32") == "fp32":
                raise
            unquantisable[item.key] = f"ExportError: {err}"
            continue
        spec = model_spec(item.key, deployer.model(exported.path, exported.sha256), exported.input_shapes)
        if item.data is not None:
            spec = with_input_data(spec, deployer.data(item.data.path, item.data.sha256), item.data)
        models.append(spec)
        count = onnx_node_count(exported.path)
        if count:
            nodes[item.key] = count
    progress("export", len(todo), len(todo), "")
    return models

"""``hwlab qsearch``: train the quantisation-aware supernet, measure the precision table, search, deploy, measure.

One run, one budget: the network's layers are profiled at fp32 and int8 with their boundaries (resumable,
in ``tables/DEVICE/BACKEND/qsearch-SPACE``) around the measured fp32 network, the supernet is trained (or
its checkpoint reused), every method picks an assignment, and each pick is written as a QDQ model, its
top-1 measured by the runtime and its latency measured on the device in one interleaved job, so the five
methods are compared on the same machine state. ``result.json`` holds every candidate; ``arch.json``
the winner with its composed and measured latency.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from hwlab.errors import PrecisionUnsupported, SearchError
from hwlab.export.api import ExportedModel, export_module
from hwlab.export.cache import file_sha256
from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import MeasureSettings
from hwlab.profile import Measuring, ModelItem, ProfileRequest, profile
from hwlab.progress import Progress
from hwlab.quant.cost import ComposedLatency
from hwlab.quant.deploy import deploy, write_assignment
from hwlab.quant.fakequant import QuantNet
from hwlab.quant.network import Layer, build_network, graph_layers, layer_shapes
from hwlab.quant.precision import BITOPS_ONLY, precision
from hwlab.quant.qsearch import (
    Budget,
    Candidate,
    EvolutionSettings,
    Problem,
    Scorer,
    baselines,
    evolution,
    ilp,
    sensitivities,
    train_qsupernet,
)
from hwlab.quant.space import at_precisions
from hwlab.search.data import load_data
from hwlab.search.train import TrainSettings, load_checkpoint
from hwlab.tables.store import write_json_atomic as write_json
from hwlab.transport import Transport

INPUT_SIZE = 32
MAX_TRIES = 3  # measurements of winners over the budget before the last one stands (as hwlab search)
CALIBRATION_NETWORKS = 8  # random mixed assignments measured with the rows to fit the composition


@dataclass(frozen=True)
class QSearchRequest:
    device: DeviceSpec
    backend: str
    budget: Budget
    space: str = "resnet"
    data: str = "digits"
    arch: dict[str, Any] | None = None  # a SPOS network's choices
    out: Path = Path("runs/qsearch")
    runs: Path = Path("runs")
    tables_root: Path = Path("tables")
    measuring: Measuring = Measuring()
    settings: MeasureSettings = MeasureSettings()
    train: TrainSettings = TrainSettings(epochs=20)
    evolution: EvolutionSettings = EvolutionSettings()
    random: bool = False  # random search (the population only) instead of evolution
    validate: bool = True

    @property
    def network(self) -> str:
        """The searched network's name in tables and files: the space, and for SPOS a digest of its choices
        (another architecture must never reuse this one's rows)."""
        if self.arch is None:
            return self.space
        return f"{self.space}-{hashlib.sha256(json.dumps(self.arch, sort_keys=True).encode()).hexdigest()[:10]}"

    @property
    def choices(self) -> tuple[str, ...]:
        """fp32 and int8 under a latency budget; with a BitOps budget alone, the paper's 4 and 2 bits too."""
        return ("fp32", "int8") if self.budget.latency_ms is not None else ("fp32", "int8", "int4", "int2")


@dataclass
class QSearchOutcome:
    out: Path
    layers: list[Layer]
    composed: ComposedLatency | None
    candidates: list[Candidate]
    picks: list[Candidate]  # the winner (method "evolution") and the baselines, validated
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def winner(self) -> Candidate:
        return self.picks[0]


def _checkpoint(request: QSearchRequest) -> Path:
    text = json.dumps([request.space, request.data, request.arch, asdict(request.train), list(request.choices)],
                      sort_keys=True)  # fmt: skip
    return request.runs / "qsupernets" / f"{request.space}-{hashlib.sha256(text.encode()).hexdigest()[:12]}.pt"


def _file_item(path: Path, key: str) -> ModelItem:
    exported = ExportedModel(path, file_sha256(path), "onnx", ((1, 3, INPUT_SIZE, INPUT_SIZE),), key)
    return ModelItem(key, {"op": "model", "family": "qsearch"}, lambda fmt: exported)


def measure_precision_table(request: QSearchRequest, net: torch.nn.Module, layers: list[Layer],
                            calibration: torch.Tensor, progress: Progress | None,
                            transport: Transport | None) -> ComposedLatency:  # fmt: skip
    """The fp32 network, the calibration networks (uniform int8 and seeded random mixed assignments), and every
    distinct layer op at fp32 and int8 with boundaries: one resumable table, measured in one job."""
    key = f"qsearch-{request.network}-network-fp32"
    networks = []
    for assignment in calibration_assignments(len(layers)):
        code = "".join("8" if p == "int8" else "f" for p in assignment)
        path = request.runs / "qsearch-networks" / f"{request.network}-{code}.onnx"
        if not path.is_file():
            write_assignment(net, layers, assignment, calibration, path, f"qsearch-{request.space}")
        networks.append((assignment, _file_item(path, f"qsearch-{request.network}-network-{code}")))
    specs = list(dict.fromkeys(layer.spec for layer in layers))
    fp32_net = ModelItem.of_module(key, net, torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE),
                                   {"op": "model", "family": "qsearch"})  # fmt: skip
    items = [fp32_net, *(item for _, item in networks),
             *at_precisions(specs, ["fp32", "int8"], request.backend)]  # fmt: skip
    report = profile(ProfileRequest.of(request.device, request.backend, request.measuring, specs=items,
                                       space="qsearch", table_name=f"qsearch-{request.network}",
                                       tables_root=request.tables_root, settings=request.settings),
                     progress, transport=transport)  # fmt: skip
    ms = {r["key"]: float(r["median_ms"]) for r in report.table if r.get("status") == "ok" and r.get("median_ms")}
    if key not in ms:
        raise SearchError(f"the fp32 network was not measured on {request.device.name}",
                          hint=f"see the row {key} in {report.table.folder}")  # fmt: skip
    composed = ComposedLatency.from_rows(layers, ms[key], ms)
    return composed.fitted([(a, ms[item.key]) for a, item in networks if item.key in ms])


def calibration_assignments(n_layers: int, count: int = CALIBRATION_NETWORKS, seed: int = 0) -> list[tuple[str, ...]]:
    """Uniform int8 and ``count`` seeded random mixed assignments: the networks the composition is fitted on."""
    rng = random.Random(seed)
    out = [("int8",) * n_layers]
    while len(out) < count + 1:
        a = tuple(rng.choice(("fp32", "int8")) for _ in range(n_layers))
        if a not in out and a != ("fp32",) * n_layers:
            out.append(a)
    return out


def qsearch(
    request: QSearchRequest, progress: Progress | None = None, transport: Transport | None = None
) -> QSearchOutcome:
    """Run one bit-width search end to end (see the module doc)."""
    if request.backend != "onnxruntime":
        raise PrecisionUnsupported(
            f"hwlab qsearch composes and measures mixed precisions on onnxruntime only, not {request.backend}",
            hint="run it with --backend onnxruntime; with the tflite extra its winner is also written as a .tflite",
        )
    data = load_data(request.data, INPUT_SIZE)
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    net = build_network(request.space, data.num_classes, INPUT_SIZE, request.arch)
    shapes = layer_shapes(net, example)
    qnet = QuantNet(net, example, request.choices)
    qnet.set_precisions(["fp32"] * len(qnet.layers))
    # Latency does not depend on the weights: the table is measured, and the budget checked, before training.
    fp32_path = export_module(qnet.net.eval(), example, "onnx", name=f"qsearch-{request.space}").path
    layers = graph_layers(fp32_path, [(s, m) for _, s, m in shapes])
    composed = None
    if request.budget.latency_ms is not None or request.validate:
        composed = measure_precision_table(request, qnet.net, layers, data.x_train, progress, transport)
    problem = Problem(layers, request.choices, request.budget, composed)
    if ilp(problem, [dict.fromkeys(request.choices, 0.0)] * len(layers)) is None:
        raise SearchError(f"no assignment of {', '.join(request.choices)} fits the budget on this network"
                          + _range_note(composed),
                          hint="raise --latency-ms or --bitops")  # fmt: skip
    checkpoint = _checkpoint(request)
    train_qsupernet(qnet, data, request.choices, request.train, checkpoint, progress)
    qnet.set_precisions(["fp32"] * len(qnet.layers))
    score = Scorer(qnet, data)
    sens = sensitivities(score, len(layers), request.choices)
    settings = request.evolution
    if request.random:
        settings = EvolutionSettings(settings.population * (settings.generations + 1), 0, settings.parents,
                                     settings.mutation, settings.seed)  # fmt: skip
    candidates = evolution(problem, score, settings, progress)
    winner = next((c for c in candidates if c.within_budget), None)
    if winner is None:
        raise SearchError("no candidate fits the budget", hint="raise --latency-ms or --bitops")
    picks = [winner, *baselines(problem, score, sens)]
    out = request.out
    out.mkdir(parents=True, exist_ok=True)
    if request.validate:
        _validate(request, qnet, score, data, layers, picks, out, progress, transport)
        picks[0] = _winner_within_budget(request, candidates, picks[0],
                                         lambda c: _validate(request, qnet, score, data, layers, [c], out, progress,
                                                             transport))  # fmt: skip
        picks[0].extra["tflite"] = _winner_tflite(request, qnet, score, data, picks[0], out / "winner.tflite")
    for pick in picks:  # what onnxruntime really ran, composed too, where it is not what was chosen
        effective = (pick.extra.get("deployed") or {}).get("effective_precisions")
        if effective and composed is not None:
            pick.extra["composed_effective_ms"] = composed(effective)
    outcome = QSearchOutcome(out, layers, composed, candidates, picks)
    outcome.files = write_outputs(request, outcome, sens, checkpoint)
    return outcome


def _range_note(composed: ComposedLatency | None) -> str:
    if composed is None:
        return ""
    n = len(composed.layers)
    return (f" (composed: uniform fp32 {composed(['fp32'] * n):.3f} ms, uniform int8"
            f" {composed(['int8'] * n):.3f} ms)")  # fmt: skip


def _validate(
    request: QSearchRequest,
    qnet: QuantNet,
    score: Scorer,
    data: Any,
    layers: list[Layer],
    picks: list[Candidate],
    out: Path,
    progress: Progress | None,
    transport: Transport | None,
) -> None:
    """Each deployable pick as a QDQ model: runtime top-1, int8 kernels, then latency in one job."""
    items = []
    for pick in picks:
        if any(not precision(p).deployable for p in pick.assignment):
            pick.extra["measured"] = f"not measured: {BITOPS_ONLY}"
            continue
        score.recalibrate(pick.assignment)
        qnet.set_precisions(["fp32"] * len(layers))
        deployed = deploy(qnet.net, layers, pick.assignment, data.x_train, data.x_val, data.y_val,
                          out / f"{pick.method}.onnx", f"qsearch-{request.space}-{pick.method}")  # fmt: skip
        pick.extra["deployed"] = deployed.to_json()
        key = f"qsearch-{request.network}-{pick.method}-{file_sha256(deployed.path)[:12]}"
        pick.extra["measured_key"] = key
        items.append(_file_item(deployed.path, key))
    if not items:
        return
    report = profile(ProfileRequest.of(request.device, request.backend, request.measuring, specs=items,
                                       space="qsearch-validate", table_name=f"qsearch-{request.network}-validate",
                                       tables_root=request.tables_root, settings=request.settings),
                     progress, transport=transport)  # fmt: skip
    rows = report.table.rows()
    for pick in picks:
        row = rows.get(pick.extra.get("measured_key", ""))
        if row is not None and row.get("status") == "ok":
            pick.extra["measured_ms"] = float(row["median_ms"])
            pick.extra["measured_at"] = row.get("measured_at")


def _winner_tflite(request: QSearchRequest, qnet: QuantNet, score: Scorer, data: Any, winner: Candidate,
                   path: Path) -> dict[str, Any] | str:  # fmt: skip
    """The winner as a .tflite through the LiteRT quantizer (its layers at their precisions), or why not."""
    if any(not precision(p).deployable for p in winner.assignment):
        return f"not written: {BITOPS_ONLY}"
    score.recalibrate(winner.assignment)
    return _winner_tflite_for(request.space, qnet, data, winner, path)


def _winner_tflite_for(space: str, qnet: QuantNet, data: Any, winner: Candidate, path: Path) -> dict[str, Any] | str:
    """``_winner_tflite`` once BN is recalibrated for the winner."""
    from hwlab.errors import BackendUnavailable, ExportError
    from hwlab.quant.deploy import deploy_tflite

    qnet.set_precisions(["fp32"] * len(qnet.layers))
    try:
        done = deploy_tflite(qnet.net, qnet.layer_paths(), winner.assignment, data.x_train, data.x_val, data.y_val,
                             path, f"qsearch-{space}-winner")  # fmt: skip
    except (BackendUnavailable, ExportError) as err:
        return f"not written: {err}"
    return done.to_json()


def _winner_within_budget(request: QSearchRequest, candidates: list[Candidate], winner: Candidate,
                          measure: Callable[[Candidate], None]) -> Candidate:  # fmt: skip
    """A winner measured over the latency budget is replaced, as ``hwlab search`` does (hwlab.search.budget):
    the ratio measured / composed it showed scales every other candidate's composed latency, and the most
    accurate one that then fits is measured next, at most ``MAX_TRIES`` measurements in all."""
    budget = request.budget.latency_ms
    tries = [winner]
    ratio = 1.0
    while budget is not None and len(tries) < MAX_TRIES:
        last = tries[-1]
        measured, composed = last.extra.get("measured_ms"), last.latency_ms
        if measured is None or composed is None or measured <= budget:
            break
        ratio = max(ratio, measured / composed)
        tried = {c.assignment for c in tries}
        fits = [c for c in candidates if c.assignment not in tried and c.latency_ms is not None
                and c.accuracy is not None and c.latency_ms * ratio <= budget]  # fmt: skip
        if not fits:
            break
        following = min(fits, key=lambda c: c.rank)
        measure(following)
        tries.append(following)
    final = tries[-1]
    if len(tries) > 1:
        final.extra["validation_tries"] = [{"precisions": list(c.assignment), "composed_ms": c.latency_ms,
                                            "measured_ms": c.extra.get("measured_ms")} for c in tries]  # fmt: skip
    return final


def write_outputs(request: QSearchRequest, outcome: QSearchOutcome, sens: list[dict[str, float]],
                  checkpoint: Path) -> dict[str, Path]:  # fmt: skip
    out = outcome.out
    budget = asdict(request.budget)
    result = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": request.device.name, "backend": request.backend, "space": request.space, "data": request.data,
        "budget": budget, "choices": list(request.choices), "supernet": str(checkpoint),
        "layers": [{**layer.to_json(), "sensitivity": s} for layer, s in zip(outcome.layers, sens, strict=True)],
        "composition": None
        if outcome.composed is None
        else {"network_fp32_ms": outcome.composed.network_fp32_ms, "scale": outcome.composed.scale,
              "per_boundary_ms": outcome.composed.per_boundary_ms},  # fmt: skip
        "picks": [c.to_json() for c in outcome.picks],
        "candidates": [c.to_json() for c in outcome.candidates],
        "note": f"int4/int2: {BITOPS_ONLY}",
    }  # fmt: skip
    files = {"result": out / "result.json", "arch": out / "arch.json"}
    write_json(files["result"], result)
    winner = outcome.winner
    arch = {"space": request.space, "data": request.data, "arch": request.arch,
            "precisions": list(winner.assignment),
            "layers": [layer.node for layer in outcome.layers], "weights": str(checkpoint),
            "choices": list(request.choices), "train": asdict(request.train),
            "search": {"budget": budget, "composed_ms": winner.latency_ms, "bitops_g": winner.bitops_g,
                       "supernet_top1": winner.accuracy, **winner.extra}}  # fmt: skip
    write_json(files["arch"], arch)
    files["precisions_png"] = plot_precisions(outcome, out / "precisions.png")
    files["pareto_png"] = plot_pareto(outcome, request.budget, out / "pareto.png")
    return files


def plot_precisions(outcome: QSearchOutcome, path: Path) -> Path:
    """One row per method, one cell per layer, coloured by precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = ["fp32", "int8", "int4", "int2"]
    grid = [[order.index(p) for p in c.assignment] for c in outcome.picks]
    fig, ax = plt.subplots(figsize=(max(6, len(outcome.layers) * 0.12 + 2), 0.5 * len(grid) + 1.5))
    image = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0, vmax=3)
    ax.set_yticks(range(len(grid)), [c.method for c in outcome.picks])
    ax.set_xlabel("layer (graph order)")
    bar = fig.colorbar(image, ticks=range(4))
    bar.ax.set_yticklabels(order)
    ax.set_title("per-layer precision")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_pareto(outcome: QSearchOutcome, budget: Budget, path: Path) -> Path:
    """Runtime top-1 against measured latency for the validated picks; supernet candidates by composed latency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    cands = [c for c in outcome.candidates if c.latency_ms is not None]
    ax.scatter([c.latency_ms for c in cands], [c.accuracy for c in cands], s=9, alpha=0.4, color="0.5",
               label="candidates (composed ms, supernet top-1)")  # fmt: skip
    for i, c in enumerate(outcome.picks):
        ms, top1 = c.extra.get("measured_ms"), (c.extra.get("deployed") or {}).get("runtime_top1")
        if ms is None or top1 is None:
            continue
        marker = {"uniform-fp32": "s", "uniform-int8": "D"}.get(c.method, "o")
        ax.scatter([ms], [top1], marker=marker, s=70, color=f"C{i}", label=f"{c.method} (measured)", zorder=3)
    if budget.latency_ms is not None:
        ax.axvline(budget.latency_ms, color="k", lw=0.8, ls="--", label=f"budget {budget.latency_ms:g} ms")
    ax.set(xlabel="latency (ms)", ylabel="top-1", title="accuracy vs latency")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def load_arch(path: Path) -> dict[str, Any]:
    try:
        arch = json.loads(Path(path).read_text())
        arch["precisions"], arch["space"]  # noqa: B018 - both must be there
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SearchError(f"{path} is not a qsearch arch.json ({exc})",
                          hint="give the arch.json a `hwlab qsearch` run wrote") from None  # fmt: skip
    return arch


def quantize_arch(path: Path, out: Path) -> tuple[Path, Any]:
    """``hwlab quantize ARCH.json``: the deployable QDQ model of an arch.json's network and precisions."""
    arch = load_arch(path)
    data = load_data(arch.get("data", "digits"), INPUT_SIZE)
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    net = build_network(arch["space"], data.num_classes, INPUT_SIZE, arch.get("arch"))
    shapes = layer_shapes(net, example)
    qnet = QuantNet(net, example, arch.get("choices") or ["fp32", "int8"])
    state = load_checkpoint(Path(arch["weights"]))
    qnet.load_state_dict(state["model"])
    fp32_path = export_module(qnet.net.eval(), example, "onnx", name=f"qsearch-{arch['space']}").path
    layers = graph_layers(fp32_path, [(s, m) for _, s, m in shapes])
    assignment = tuple(arch["precisions"])
    if len(assignment) != len(layers):
        raise SearchError(f"{path} gives {len(assignment)} precisions for {len(layers)} layers",
                          hint="edit the list to one precision per layer")  # fmt: skip
    Scorer(qnet, data).recalibrate(assignment)
    qnet.set_precisions(["fp32"] * len(layers))
    deployed = deploy(qnet.net, layers, assignment, data.x_train, data.x_val, data.y_val, out,
                      f"qsearch-{arch['space']}-quantize")  # fmt: skip
    candidate = Candidate("quantize", assignment, None, 0.0)
    tflite = _winner_tflite_for(arch["space"], qnet, data, candidate, out.with_suffix(".tflite"))
    return out, deployed, tflite

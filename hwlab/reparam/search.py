"""``hwlab search --space repvgg``: train the train-form supernet, search under the deployed cost, deploy.

The order of a search that pays what the device runs:

1. the latency source (a measured table of the space's deploy ops, or the device's predictor) is checked,
   and a candidate under the budget is drawn, before any training;
2. the supernet of train-form blocks (RepVGG / ACNet / plain, ReLU / FReLU) trains, one path per step;
3. SPOS's evolution (``hwlab.search.evolution``) scores candidates by accuracy after BN recalibration,
   rejecting any whose **deploy-form** latency is over the budget;
4. the winner's train-form network takes the path's weights, is re-parameterised, proven equivalent on
   random inputs, and its validation accuracy is compared before and after conversion (they must agree
   within ``ACCURACY_TOLERANCE``);
5. the deploy form is exported (ONNX, and TFLite when the converter is installed) and measured end to end
   on the device; a winner measured over budget is replaced as ``hwlab.search.budget`` says.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwlab.errors import DataError, ReparamError
from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import MeasureSettings
from hwlab.names import inside
from hwlab.profile import Measuring
from hwlab.progress import Progress
from hwlab.reparam.convert import check_equivalence, reparam_with_report
from hwlab.reparam.latency import RepPredictorLatency, RepTableLatency
from hwlab.reparam.space import RepArch, RepSpace
from hwlab.reparam.supernet import RepSupernet, standalone
from hwlab.search.bn import recalibrate
from hwlab.search.budget import measured_winner
from hwlab.search.data import ImageData, batches, load_data
from hwlab.search.evolution import (
    RANDOM_MAX_DRAWS,
    Candidate,
    Constraints,
    EvolutionSettings,
    SearchResult,
    check_reachable,
    evolution_search,
    random_search,
)
from hwlab.search.job import ScoreSettings, plot_pareto
from hwlab.search.train import TrainResult, TrainSettings, accuracy, save_checkpoint, train_supernet
from hwlab.space.build import random_input, seeded_rng
from hwlab.tables import LookupTable, TableId
from hwlab.tables.store import write_json_atomic

# Conversion changes outputs by fp32 rounding only (``hwlab.reparam.convert``); an argmax can flip only on
# a near tie, so the validation accuracy before and after conversion may differ by at most this.
ACCURACY_TOLERANCE = 0.005


@dataclass(frozen=True)
class RepSearchRequest:
    """Everything ``hwlab search --space repvgg`` asks for."""

    device: DeviceSpec
    space: RepSpace = RepSpace()
    latency_ms: float | None = None
    backend: str = "onnxruntime"
    data: str = "digits"
    train: TrainSettings = TrainSettings()
    evolution: EvolutionSettings = EvolutionSettings()
    scoring: ScoreSettings = ScoreSettings()
    latency_source: str = "table"  # or "predictor"
    table: str | None = None  # None: the space's own table name
    method: str = "evolution"  # or "random"
    search_seed: int = 0
    runs_dir: Path = Path("runs")
    tables_dir: Path = Path("tables")
    predictors_dir: Path = Path("predictors")
    out: Path | None = None
    validate: bool = True
    measuring: Measuring = Measuring()
    settings: MeasureSettings = MeasureSettings()
    force: bool = False

    @property
    def out_dir(self) -> Path:
        budget = "unbounded" if self.latency_ms is None else f"{self.latency_ms:g}ms"
        name = f"{self.device.name}-{self.backend}-repvgg-{budget}-{self.method}"
        return self.out or inside(self.runs_dir, "search", name)

    def supernet_id(self) -> str:
        text = json.dumps({"space": self.space.to_json(), "data": self.data, "train": asdict(self.train)},
                          sort_keys=True)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class Deployed:
    """The winner after conversion: how close the forms are, their accuracies, the files written."""

    blocks_converted: int
    equivalence: dict[str, Any]
    train_accuracy: float
    deploy_accuracy: float
    agreement: float  # share of validation images both forms classify alike
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RepSearchOutcome:
    trained: TrainResult
    result: SearchResult
    deployed: Deployed
    files: dict[str, Path]
    validation: Any = None
    tries: list[Any] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        t = self.trained
        return {
            "supernet": {"epochs": t.epochs, "resumed_from": t.resumed_from, "train_accuracy": t.last_accuracy},
            "search": {k: v for k, v in self.result.to_json().items() if k != "candidates"},
            "deployed": self.deployed.to_json(),
            "validation": self.validation.to_json() if self.validation else None,
            "validation_tries": [v.to_json() for v in self.tries],
            "files": {k: str(v) for k, v in self.files.items()},
            "notes": self.notes,
        }


def latency_source(request: RepSearchRequest) -> RepTableLatency | RepPredictorLatency:
    space = request.space
    if request.latency_source == "predictor":
        return RepPredictorLatency(space, request.device.name, request.backend, request.predictors_dir,
                                   force=request.force)  # fmt: skip
    table = LookupTable.at(request.tables_dir, TableId(request.device.name, request.backend,
                                                       request.table or space.table_name))  # fmt: skip
    return RepTableLatency(space, table, force=request.force)


def _recalibrated(supernet: RepSupernet, arch: RepArch, data: ImageData, settings: ScoreSettings) -> None:
    generator = torch.Generator().manual_seed(settings.seed)
    xs = (x for x, _ in batches(data.x_train, data.y_train, settings.recal_batch_size, generator))
    recalibrate(supernet, lambda x: supernet(x, arch), xs, settings.recal_batches)


def scorer(supernet: RepSupernet, data: ImageData, settings: ScoreSettings) -> Callable[[RepArch], float]:
    def score(arch: RepArch) -> float:
        _recalibrated(supernet, arch, data, settings)
        return accuracy(supernet, data.x_val, data.y_val, arch)

    return score


@torch.no_grad()
def deploy_winner(
    supernet: RepSupernet, arch: RepArch, data: ImageData, settings: ScoreSettings, out: Path
) -> tuple[Deployed, nn.Module]:
    """The winner's train-form network, converted, checked (equivalence and accuracy) and exported."""
    from hwlab.export.api import export_model_files

    _recalibrated(supernet, arch, data, settings)
    train_net = standalone(supernet, arch)
    deploy_net, conversion = reparam_with_report(train_net)
    equivalence = check_equivalence(train_net, deploy_net, train_net.input_shape)
    x, y = data.x_val, data.y_val
    train_pred, deploy_pred = train_net(x).argmax(1), deploy_net(x).argmax(1)
    train_acc, deploy_acc = float((train_pred == y).float().mean()), float((deploy_pred == y).float().mean())
    if abs(train_acc - deploy_acc) > ACCURACY_TOLERANCE:
        raise ReparamError(
            f"validation accuracy {train_acc:.2%} before conversion, {deploy_acc:.2%} after",
            hint="a block's deploy form is wrong: run `hwlab reparam` on the arch.json to find it",
        )
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out / "train-form.pt", {"model": train_net.state_dict()})
    save_checkpoint(out / "deploy-form.pt", {"model": deploy_net.state_dict()})
    files = {"train_weights": str(out / "train-form.pt"), "deploy_weights": str(out / "deploy-form.pt")}
    exported = export_model_files(deploy_net, random_input(deploy_net.input_shape), out, "repvgg-winner", "deploy")
    files.update({fmt: str(path) for fmt, path in exported.items()})
    agreement = float((train_pred == deploy_pred).float().mean())
    return Deployed(conversion.count, equivalence.to_json(), train_acc, deploy_acc, agreement, files), deploy_net


def write_record(
    out: Path,
    request: RepSearchRequest,
    result: SearchResult,
    latency_name: str,
    deployed: Deployed | None = None,
    validations: list[Any] | None = None,
) -> dict[str, Path]:
    """``arch.json`` (the winner, its search and deployment), ``result.json`` (every candidate), ``pareto.png``."""
    out.mkdir(parents=True, exist_ok=True)
    search = {"method": result.method, "latency_source": latency_name, "latency_budget_ms": request.latency_ms,
              "predicted_latency_ms": result.best.latency_ms, "supernet_accuracy": result.best.accuracy,
              "data": request.data, "supernet": request.supernet_id(), "cost": "deploy form"}  # fmt: skip
    record = {"space": request.space.to_json(), **result.best.arch.to_json(), "search": search,
              "deployed": deployed.to_json() if deployed else None,
              "validations": [v.to_json() for v in validations or []]}  # fmt: skip
    write_json_atomic(out / "arch.json", record)
    write_json_atomic(out / "result.json", {"space": request.space.to_json(), "search": search, **result.to_json()})
    return {"arch": out / "arch.json", "result": out / "result.json",
            "plot": plot_pareto(result, request.latency_ms, out / "pareto.png")}  # fmt: skip


def rep_search(
    request: RepSearchRequest,
    *,
    data: ImageData | None = None,
    say: Callable[[str], None] = print,
    progress_for: Callable[[str], Progress] | None = None,
) -> RepSearchOutcome:
    """Run the whole search (module doc); every file lands in ``request.out_dir``."""

    def bars(phase: str) -> Progress | None:
        return progress_for(phase) if progress_for else None

    space = request.space
    data = data or load_data(request.data, space.input_size, seed=request.train.seed)
    say(data.describe())
    if data.num_classes != space.num_classes:
        raise DataError(f"{request.data} has {data.num_classes} classes, the space's classifier {space.num_classes}",
                        hint="give the space the data's class count (--num-classes)")  # fmt: skip
    latency = latency_source(request)
    notes = [latency.note] if latency.note else []
    constraints = Constraints(latency_ms=request.latency_ms)
    draws = RANDOM_MAX_DRAWS if request.method == "random" else request.evolution.max_draws
    check_reachable(space, latency, constraints, request.search_seed, draws)  # type: ignore[arg-type]
    with seeded_rng(request.train.seed):
        supernet = RepSupernet(space)
    checkpoint = request.runs_dir / "supernets" / f"repvgg-{request.supernet_id()}.pt"
    trained = train_supernet(supernet, data, request.train, space.sample, checkpoint, bars("supernet"))
    score = scorer(supernet, data, request.scoring)

    def run(constraints: Constraints, progress: Progress | None = None) -> SearchResult:
        if request.method == "random":
            e = request.evolution
            return random_search(space, latency, score, e.population * e.iterations, constraints,  # type: ignore[arg-type]
                                 request.search_seed, progress)  # fmt: skip
        return evolution_search(space, latency, score, constraints, request.evolution,  # type: ignore[arg-type]
                                request.search_seed, progress)  # fmt: skip

    result = run(constraints, bars(request.method))
    out = request.out_dir
    deployed, deploy_net = deploy_winner(supernet, result.best.arch, data, request.scoring, out)
    files = write_record(out, request, result, latency.name, deployed)
    outcome = RepSearchOutcome(trained, result, deployed, files, notes=notes)
    if request.validate:  # a winner over budget may need the search again, under the corrected budget
        outcome = _validated(request, supernet, data, latency.name, outcome, deploy_net, bars("validate"),
                             lambda budget_ms: run(Constraints(latency_ms=budget_ms)))  # fmt: skip
    for note in outcome.notes:
        say(f"note: {note}")
    return outcome


def _validated(
    request: RepSearchRequest,
    supernet: RepSupernet,
    data: ImageData,
    latency_name: str,
    outcome: RepSearchOutcome,
    deploy_net: nn.Module,
    progress: Progress | None,
    search_again: Callable[[float], SearchResult],
) -> RepSearchOutcome:
    """Measure the deployed winner on the device (the next candidate when it is over budget; the winner of
    ``search_again`` under the corrected budget when no scored candidate fits it)."""
    from hwlab.validate import Validation, measure_network

    out, result = request.out_dir, outcome.result
    current = {"deployed": outcome.deployed, "net": deploy_net}

    def measure(candidate: Candidate) -> Validation:
        arch: RepArch = candidate.arch  # type: ignore[assignment]
        if candidate is not result.best:  # the first winner is deployed already
            current["deployed"], current["net"] = deploy_winner(supernet, arch, data, request.scoring, out)
        key = f"repvgg-{hashlib.sha256(request.space.key(arch).encode()).hexdigest()[:12]}"
        macs = request.space.cost(arch)[0]
        row = measure_network(
            current["net"],
            key,
            {"family": "repvgg", "macs": macs},
            request.device,
            request.backend,
            tables_root=request.tables_dir,
            settings=request.settings,
            measuring=request.measuring,
            progress=progress,
        )
        return Validation(
            request.device.name,
            request.backend,
            float(row["median_ms"]),
            candidate.latency_ms,
            request.latency_ms,
            row["table"],
            key,
            row.get("measured_at"),
            bool(row.get("emulated")),
        )

    measured = measured_winner(result, request.latency_ms, measure, search_again=search_again)
    outcome.result = replace(result, best=measured.winner)
    outcome.deployed = current["deployed"]  # type: ignore[assignment]
    outcome.validation, outcome.tries = measured.validation, measured.tries
    outcome.files = write_record(out, request, outcome.result, latency_name, outcome.deployed, measured.tries)
    note = measured.note()
    if note:
        outcome.notes.append(note)
    return outcome

"""A whole search as one call: supernet (trained or reused), scorer, constrained search, files written.

``search(SearchRequest(...))`` is what ``hwlab search`` runs; ``bench/search_quality.py`` uses the parts. The
latency source and the budget are checked before the supernet trains (an incomplete table names the profile
command that completes it; a budget no random candidate meets names the fastest one). The supernet
checkpoint is keyed by the space, the data and the training settings, so a second search on the same space
reuses it and a changed setting trains a new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from hwlab.errors import DataError
from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import MeasureSettings
from hwlab.names import inside
from hwlab.profile import Measuring
from hwlab.progress import Progress
from hwlab.search.bn import recalibrate_bn
from hwlab.search.budget import measured_winner
from hwlab.search.data import ImageData, batches, load_data
from hwlab.search.evolution import (
    RANDOM_MAX_DRAWS,
    Candidate,
    Constraints,
    EvolutionSettings,
    Score,
    SearchResult,
    check_reachable,
    evolution_search,
    random_search,
)
from hwlab.search.latency import LatencySource, PredictorLatency, TableLatency
from hwlab.search.record import ArchRecord
from hwlab.search.sampling import LatencyBinSampler, PathSampler
from hwlab.search.space import Arch, SearchSpace
from hwlab.search.supernet import Supernet
from hwlab.search.train import TrainResult, TrainSettings, accuracy, train_supernet
from hwlab.space.build import seeded_rng
from hwlab.tables import LookupTable, TableId
from hwlab.tables.store import write_json_atomic


@dataclass(frozen=True)
class ScoreSettings:
    """BN recalibration before each candidate is scored on the validation split."""

    recal_batches: int = 5
    recal_batch_size: int = 128
    seed: int = 0


@dataclass(frozen=True)
class SearchPlan:
    space: SearchSpace
    data: str = "digits"
    train: TrainSettings = TrainSettings()
    evolution: EvolutionSettings = EvolutionSettings()
    scoring: ScoreSettings = ScoreSettings()
    constraints: Constraints = field(default_factory=Constraints)
    sharing: str = "nested"  # how a layer's choice blocks share weights (hwlab.search.supernet.ChoiceLayer)

    def supernet_id(self) -> str:
        """Names the checkpoint: what the supernet's weights depend on, hashed."""
        text = json.dumps({"space": self.space.to_json(), "data": self.data, "train": asdict(self.train),
                           "sharing": self.sharing}, sort_keys=True)  # fmt: skip
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def supernet_checkpoint(runs: Path, plan: SearchPlan) -> Path:
    return runs / "supernets" / f"{plan.supernet_id()}.pt"


def trained_supernet(
    plan: SearchPlan, data: ImageData, sampler: PathSampler, checkpoint: Path, progress: Progress | None = None
) -> tuple[Supernet, TrainResult]:
    """Train the plan's supernet, resuming (or just loading) its checkpoint when there is one."""
    with seeded_rng(plan.train.seed):  # the initial weights depend on the seed alone
        supernet = Supernet(plan.space, plan.sharing)
    return supernet, train_supernet(supernet, data, plan.train, sampler, checkpoint, progress)


def supernet_scorer(supernet: Supernet, data: ImageData, settings: ScoreSettings) -> Score:
    """Validation accuracy of a candidate's path after recalibrating BN on the same training batches."""

    def score(arch: Arch) -> float:
        generator = torch.Generator().manual_seed(settings.seed)
        xs = (x for x, _ in batches(data.x_train, data.y_train, settings.recal_batch_size, generator))
        recalibrate_bn(supernet, arch, xs, settings.recal_batches)
        return accuracy(supernet, data.x_val, data.y_val, arch)

    return score


def run_search(
    plan: SearchPlan,
    latency: LatencySource,
    score: Score,
    method: str = "evolution",
    seed: int = 0,
    evaluations: int | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Evolution, or random search with ``evaluations`` candidates (default: as many as evolution scores)."""
    if method == "random":
        e = plan.evolution
        count = evaluations or e.population * e.iterations
        return random_search(plan.space, latency, score, count, plan.constraints, seed, progress)
    return evolution_search(plan.space, latency, score, plan.constraints, plan.evolution, seed, progress)


def write_outputs(out: Path, plan: SearchPlan, result: SearchResult, latency_name: str) -> dict[str, Path]:
    """``result.json`` (every candidate, the Pareto front), ``pareto.png`` and the winner's ``arch.json``."""
    out.mkdir(parents=True, exist_ok=True)
    c = plan.constraints
    search = {
        "method": result.method,
        "latency_source": latency_name,
        "latency_budget_ms": c.latency_ms,
        "max_macs": c.macs,
        "max_params": c.params,
        "predicted_latency_ms": result.best.latency_ms,
        "supernet_accuracy": result.best.accuracy,
        "data": plan.data,
        "supernet": plan.supernet_id(),
        "supernet_sharing": plan.sharing,
    }
    arch = ArchRecord(plan.space, result.best.arch, {"search": search}).save(out / "arch.json")
    summary = out / "result.json"
    write_json_atomic(summary, {"space": plan.space.to_json(), "search": search, **result.to_json()})
    return {"arch": arch, "result": summary, "plot": plot_pareto(result, c.latency_ms, out / "pareto.png")}


def plot_pareto(result: SearchResult, budget_ms: float | None, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4.2))
    lat = [c.latency_ms for c in result.evaluated]
    acc = [c.accuracy for c in result.evaluated]
    ax.scatter(lat, acc, s=10, alpha=0.5, label=f"evaluated ({len(lat)})")
    front = result.pareto
    ax.step([c.latency_ms for c in front], [c.accuracy for c in front], where="post", color="C1", label="Pareto front")
    ax.scatter([result.best.latency_ms], [result.best.accuracy], marker="*", s=160, color="C3", label="best", zorder=3)
    if budget_ms is not None:
        ax.axvline(budget_ms, color="k", lw=0.8, ls="--", label=f"budget {budget_ms:g} ms")
    ax.set(xlabel="predicted latency (ms)", ylabel="supernet accuracy", title=f"{result.method} search")
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


@dataclass(frozen=True)
class SearchRequest:
    """Everything ``hwlab search`` asks for: the device and budget, the space, training, search, validation."""

    device: DeviceSpec
    plan: SearchPlan
    backend: str = "onnxruntime"
    latency_source: str = "predictor"  # or "table": the sum of a lookup table of this very space
    table: str | None = None  # None: the space's own name (SearchSpace.table_name), never profile's "spos"
    sampling: str = "uniform"  # or "latency-bins"
    bins: int = 5
    method: str = "evolution"  # or "random"
    search_seed: int = 0
    runs_dir: Path = Path("runs")
    tables_dir: Path = Path("tables")
    predictors_dir: Path = Path("predictors")
    out: Path | None = None
    validate: bool = True
    measuring: Measuring = Measuring()
    settings: MeasureSettings = MeasureSettings()
    force: bool = False  # use a predictor or table whose metadata names another device or backend

    @property
    def out_dir(self) -> Path:
        budget = self.plan.constraints.latency_ms
        name = f"{self.device.name}-{self.backend}-{budget:g}ms-{self.method}"  # safe names: checked when loaded
        return self.out or inside(self.runs_dir, "search", name)


@dataclass
class SearchOutcome:
    checkpoint: Path
    trained: TrainResult
    result: SearchResult
    files: dict[str, Path]
    validation: Any = None  # hwlab.validate.Validation
    notes: list[str] = field(default_factory=list)
    tries: list[Any] = field(default_factory=list)  # every winner measured, first first (hwlab.search.budget)

    def to_json(self) -> dict[str, Any]:
        t = self.trained
        return {
            "supernet": {"checkpoint": str(self.checkpoint), "epochs": t.epochs, "resumed_from": t.resumed_from,
                         "train_accuracy": t.last_accuracy},
            "search": {k: v for k, v in self.result.to_json().items() if k != "candidates"},
            "files": {k: str(v) for k, v in self.files.items()},
            "validation": self.validation.to_json() if self.validation else None,
            "validation_tries": [v.to_json() for v in self.tries],
            "notes": self.notes,
        }  # fmt: skip


def latency_source(request: SearchRequest) -> LatencySource:
    """The request's latency source, checked: a fitted predictor, or a complete table of the space."""
    space = request.plan.space
    if request.latency_source == "table":
        name = request.table or space.table_name
        table = LookupTable.at(request.tables_dir, TableId(request.device.name, request.backend, name))
        return TableLatency(space, table, force=request.force)
    return PredictorLatency(space, request.device.name, request.backend, request.predictors_dir, force=request.force)


def search(
    request: SearchRequest,
    *,
    data: ImageData | None = None,
    say: Callable[[str], None] = print,
    progress_for: Callable[[str], Progress] | None = None,
) -> SearchOutcome | None:
    """Train (or reuse) the supernet, search under the constraints, write the files, validate the winner.

    ``data`` is the plan's data when the caller has read it already. Returns None in the
    helper processes of a ``torchrun`` launch, which only train.
    """
    from hwlab.search.train import is_main_process

    def bars(phase: str) -> Progress | None:
        return progress_for(phase) if progress_for else None

    plan = request.plan
    data = data or load_data(plan.data, plan.space.config.input_size, seed=plan.train.seed)
    say(data.describe())
    if data.num_classes != plan.space.config.num_classes:
        raise DataError(f"{plan.data} has {data.num_classes} classes, the space's classifier"
                        f" {plan.space.config.num_classes}", hint="give the space the data's class count")  # fmt: skip
    latency = latency_source(request)
    notes = [latency.note] if getattr(latency, "note", None) else []
    for note in notes:
        say(f"note: {note}")
    draws = RANDOM_MAX_DRAWS if request.method == "random" else plan.evolution.max_draws
    check_reachable(plan.space, latency, plan.constraints, request.search_seed, draws)  # before any training
    sampler = LatencyBinSampler(plan.space, latency, request.bins, seed=plan.train.seed) \
        if request.sampling == "latency-bins" else None  # fmt: skip
    checkpoint = supernet_checkpoint(request.runs_dir, plan)
    supernet, trained = trained_supernet(plan, data, sampler or plan.space.sample, checkpoint, bars("supernet"))
    if not is_main_process():  # under torchrun the other processes only help train the supernet
        return None
    score = supernet_scorer(supernet, data, plan.scoring)
    result = run_search(plan, latency, score, request.method, request.search_seed, progress=bars(request.method))
    files = write_outputs(request.out_dir, plan, result, latency.name)
    outcome = SearchOutcome(checkpoint, trained, result, files, notes=notes)
    if request.validate:
        from hwlab.validate import Validation, validate

        def measure(candidate: Candidate) -> Validation:
            if candidate is not result.best:  # the first winner's files are written already
                outcome.files = write_outputs(request.out_dir, plan, replace(result, best=candidate), latency.name)
            return validate(
                outcome.files["arch"], request.device, request.backend, budget_ms=plan.constraints.latency_ms,
                predictors_root=request.predictors_dir, tables_root=request.tables_dir, settings=request.settings,
                measuring=request.measuring, progress=bars("validate"), force=request.force,
            )  # fmt: skip

        def search_again(budget_ms: float) -> SearchResult:  # under the budget corrected by a measurement
            tighter = replace(plan, constraints=replace(plan.constraints, latency_ms=budget_ms))
            return run_search(tighter, latency, score, request.method, request.search_seed)

        measured = measured_winner(result, plan.constraints.latency_ms, measure, search_again=search_again)
        outcome.result = replace(result, best=measured.winner)
        outcome.validation, outcome.tries = measured.validation, measured.tries
        note = measured.note()
        if note:
            outcome.notes.append(note)
            say(f"note: {note}")
    return outcome

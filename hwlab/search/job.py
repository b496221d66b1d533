"""A whole search as one call: supernet (trained or reused), scorer, constrained search, files written.

What ``hwlab search`` and ``bench/search_quality.py`` run. The supernet checkpoint is keyed by the space, the
data and the training settings, so a second search on the same space reuses it and a changed setting trains
a new one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from hwlab.progress import Progress
from hwlab.search.bn import recalibrate_bn
from hwlab.search.data import ImageData, batches
from hwlab.search.evolution import Constraints, EvolutionSettings, Score, SearchResult, evolution_search, random_search
from hwlab.search.latency import LatencySource
from hwlab.search.record import ArchRecord
from hwlab.search.sampling import PathSampler
from hwlab.search.space import Arch, SearchSpace
from hwlab.search.supernet import Supernet
from hwlab.search.train import TrainResult, TrainSettings, accuracy, train_supernet
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
    torch.manual_seed(plan.train.seed)
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

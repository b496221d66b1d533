"""Search quality on this machine: evolution vs random search under three latency budgets, winners measured.

Trains (or reuses) the digits supernet, then for each budget and seed runs the evolutionary search and the
random-search baseline with the same number of evaluations, and measures every evolved winner end to end on
the local device as ``hwlab search`` does (a winner over the budget is replaced: hwlab.search.budget). Prints
wall times, predictor calls per second, supernet accuracy mean ± std over seeds for both methods, and every
measured winner's latency against its prediction and the budget, one line per measurement.

    .venv/bin/python bench/search_quality.py [--predictors-dir DIR] [--seeds 3] [--epochs 30] [--population 20]
        [--sharing nested|separate]

Budgets default to the 20th, 50th and 80th percentiles of the predicted latency of random architectures.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import time
from pathlib import Path

import numpy as np

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.search.budget import measured_winner
from hwlab.search.data import load_data
from hwlab.search.evolution import Candidate, Constraints, EvolutionSettings, SearchResult
from hwlab.search.job import (
    ScoreSettings,
    SearchPlan,
    run_search,
    supernet_checkpoint,
    supernet_scorer,
    trained_supernet,
    write_outputs,
)
from hwlab.search.latency import PredictorLatency
from hwlab.search.space import SearchSpace
from hwlab.search.supernet import SHARING
from hwlab.search.train import TrainSettings
from hwlab.validate import validate


def mean_std(values: list[float]) -> str:
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.1%} ± {std:.1%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--predictors-dir", type=Path, default=Path("predictors"))
    parser.add_argument("--tables-dir", type=Path, default=Path("bench-out/tables"))
    parser.add_argument("--runs-dir", type=Path, default=Path("bench-out/runs"))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=TrainSettings().epochs)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--budgets", type=float, nargs="*", help="latency budgets in ms (default: percentiles)")
    parser.add_argument("--sharing", choices=SHARING, default="nested")
    args = parser.parse_args()

    data = load_data("digits", 32)
    space = SearchSpace.of(32, 0.25, data.num_classes)
    start = time.perf_counter()
    latency = PredictorLatency(space, "local", "onnxruntime", args.predictors_dir)
    print(f"latency fast path built in {time.perf_counter() - start:.1f} s ({latency.table.distinct_ops} block ops)")
    sample = [space.sample(random.Random(i)) for i in range(2000)]
    start = time.perf_counter()
    predicted = latency(sample)
    print(f"predictor: {len(sample) / (time.perf_counter() - start):,.0f} calls/s in one batch of {len(sample)}")
    budgets = args.budgets or [round(float(np.quantile(predicted, q)), 3) for q in (0.2, 0.5, 0.8)]

    evolution = EvolutionSettings(population=args.population, iterations=args.iterations,
                                  parents=max(2, args.population // 5), mutations=args.population // 2,
                                  crossovers=args.population // 2)  # fmt: skip
    plan = SearchPlan(space, "digits", TrainSettings(epochs=args.epochs), evolution, ScoreSettings(),
                      sharing=args.sharing)  # fmt: skip
    start = time.perf_counter()
    supernet, trained = trained_supernet(plan, data, space.sample, supernet_checkpoint(args.runs_dir, plan))
    print(f"supernet: {time.perf_counter() - start:.0f} s ({trained.epochs} epochs, from epoch {trained.resumed_from}),"
          f" last-epoch training accuracy {trained.last_accuracy:.1%}")  # fmt: skip
    score = supernet_scorer(supernet, data, plan.scoring)

    print()
    header = f"{'budget ms':>9} {'evolution':>16} {'random':>16} {'evals':>6} {'search s':>9} {'calls/s':>10}"
    print(header)
    winners = []
    for budget in budgets:
        budget_plan = dataclasses.replace(plan, constraints=Constraints(latency_ms=budget))
        evo_acc, rnd_acc, seconds, rates, evals = [], [], [], [], []
        for seed in range(args.seeds):
            evo = run_search(budget_plan, latency, score, "evolution", seed)
            rnd = run_search(budget_plan, latency, score, "random", seed, evaluations=len(evo.evaluated))
            evo_acc.append(evo.best.accuracy or 0.0)
            rnd_acc.append(rnd.best.accuracy or 0.0)
            seconds.append(evo.seconds)
            rates.append(evo.latency_calls / evo.latency_seconds)
            evals.append(len(evo.evaluated))
            winners.append((budget, seed, budget_plan, evo))
        print(f"{budget:>9.3f} {mean_std(evo_acc):>16} {mean_std(rnd_acc):>16} {statistics.mean(evals):>6.0f}"
              f" {statistics.mean(seconds):>9.1f} {statistics.mean(rates):>10,.0f}")  # fmt: skip

    print()
    # Each winner measured as hwlab search measures it: one over the budget is replaced (hwlab.search.budget).
    print(f"{'budget ms':>9} {'seed':>4} {'try':>3} {'predicted ms':>12} {'measured ms':>11} {'error':>7} {'holds':>5}")
    for budget, seed, budget_plan, evo in winners:
        out = args.runs_dir / "search" / f"{budget:g}ms-s{seed}"

        def measure(candidate: Candidate, out: Path = out, plan: SearchPlan = budget_plan, evo: SearchResult = evo):
            files = write_outputs(out, plan, dataclasses.replace(evo, best=candidate), latency.name)
            return validate(files["arch"], LOCAL_DEFAULT, "onnxruntime", budget_ms=plan.constraints.latency_ms,
                            predictors_root=args.predictors_dir, tables_root=args.tables_dir)  # fmt: skip

        def search_again(tighter: float, plan: SearchPlan = budget_plan, seed: int = seed) -> SearchResult:
            tighter_plan = dataclasses.replace(plan, constraints=Constraints(latency_ms=tighter))
            return run_search(tighter_plan, latency, score, "evolution", seed)

        measured = measured_winner(evo, budget, measure, search_again=search_again)
        for i, v in enumerate(measured.tries):
            print(f"{budget:>9.3f} {seed:>4} {i + 1:>3} {v.predicted_ms:>12.3f} {v.measured_ms:>11.3f}"
                  f" {v.error:>+7.1%} {'yes' if v.within_budget else 'no':>5}")  # fmt: skip


if __name__ == "__main__":
    main()

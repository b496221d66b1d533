"""How good is the bit-width search on this machine? Composition, budgets, methods, int8 per op type.

    .venv/bin/python bench/qsearch_quality.py [--space resnet] [--assignments 50] [--seeds 3]
        [--epochs 20] [--out DIR]

1. The quantisation-aware supernet is trained once, and the network's precision table measured once.
2. Composition: ``--assignments`` random mixed fp32/int8 assignments are deployed as QDQ models and measured
   in one interleaved job with the uniform fp32 and int8 models (none of them among the calibration networks
   the composition was fitted on); each is composed from the precision table around the fp32 network
   measured in that same job (the composition's terms, not the drift between jobs, are what is checked).
   Printed: the share within +-10% and +-5%, and the median ratio, unfitted and fitted.
3. Budgets: three between the measured uniform-int8 and uniform-fp32 latency (25, 50, 75% of the way), and
   ``--seeds`` evolution seeds each. Every run compares the five methods in one job. Printed: whether each
   winner's measured latency is within its budget (+5% noise allowance), and per method the runtime top-1
   and measured latency (mean +- std over seeds).
4. The measured int8/fp32 ratio per op type of the precision table.
"""

from __future__ import annotations

import argparse
import random
import statistics
from dataclasses import replace
from pathlib import Path

import torch

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import MeasureSettings
from hwlab.profile import ProfileRequest, profile
from hwlab.quant.cost import ComposedLatency
from hwlab.quant.deploy import write_assignment
from hwlab.quant.fakequant import QuantNet
from hwlab.quant.job import (
    INPUT_SIZE,
    QSearchRequest,
    _checkpoint,
    _file_item,
    calibration_assignments,
    measure_precision_table,
    qsearch,
)
from hwlab.quant.network import build_network, graph_layers, layer_shapes
from hwlab.quant.qsearch import Budget, EvolutionSettings, train_qsupernet
from hwlab.quant.space import precision_ratios
from hwlab.search.data import load_data
from hwlab.search.train import TrainSettings
from hwlab.tables import LookupTable, TableId


def mean_std(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.mean(values):.3f} +- {statistics.pstdev(values):.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--space", default="resnet", choices=("resnet", "spos"))
    parser.add_argument("--assignments", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-qsearch"))
    args = parser.parse_args()
    device = LOCAL_DEFAULT
    settings = MeasureSettings()
    base = QSearchRequest(device, "onnxruntime", Budget(latency_ms=1e9), args.space, out=args.out,
                          runs=args.out / "runs", tables_root=args.out / "tables", settings=settings,
                          train=TrainSettings(epochs=args.epochs))  # fmt: skip

    # 1. supernet and precision table
    data = load_data("digits", INPUT_SIZE)
    example = torch.zeros(1, 3, INPUT_SIZE, INPUT_SIZE)
    net = build_network(args.space, data.num_classes, INPUT_SIZE)
    shapes = layer_shapes(net, example)
    qnet = QuantNet(net, example, base.choices)
    train_qsupernet(qnet, data, base.choices, base.train, _checkpoint(base))
    qnet.set_precisions(["fp32"] * len(qnet.layers))
    from hwlab.export.api import export_module

    layers = graph_layers(export_module(qnet.net.eval(), example, "onnx", name=f"qsearch-{args.space}").path,
                          [(s, m) for _, s, m in shapes])  # fmt: skip
    table_composed = measure_precision_table(base, qnet.net, layers, data.x_train, None, None)
    n = len(layers)

    # 2. composition against measurement, one job
    rng = random.Random(1)  # other draws than the calibration networks' (seed 0)
    fitted_on = set(calibration_assignments(n))
    assignments = [("fp32",) * n, ("int8",) * n]
    while len(assignments) < args.assignments + 2:
        a = tuple(rng.choice(("fp32", "int8")) for _ in range(n))
        if a not in assignments and a not in fitted_on:
            assignments.append(a)
    items = []
    folder = args.out / "composition"
    for i, a in enumerate(assignments):
        path = write_assignment(qnet.net, layers, a, data.x_train, folder / f"a{i:03d}.onnx", f"qsearch-{args.space}")
        code = "".join("8" if p == "int8" else "f" for p in a)
        items.append(_file_item(path, f"composition-{args.space}-{i:03d}-{code}"))
    report = profile(ProfileRequest.of(device, "onnxruntime", specs=items, space="qsearch-composition",
                                       table_name=f"qsearch-{args.space}-composition", tables_root=base.tables_root,
                                       settings=settings))  # fmt: skip
    rows = report.table.rows()
    measured = [float(rows[item.key]["median_ms"]) for item in items]
    raw = ComposedLatency(measured[0], table_composed.layers, table_composed.costs)
    raw_ratios = [raw(a) / m for a, m in zip(assignments[2:], measured[2:], strict=True)]
    # The terms fitted in the table's job, around this job's fp32 network (drift between jobs is not checked).
    same_job = replace(table_composed, network_fp32_ms=measured[0])
    ratios = [same_job(a) / m for a, m in zip(assignments[2:], measured[2:], strict=True)]
    within10 = sum(abs(r - 1) <= 0.10 for r in ratios) / len(ratios)
    within5 = sum(abs(r - 1) <= 0.05 for r in ratios) / len(ratios)
    fp32_ms, int8_ms = measured[0], measured[1]
    print(f"== composition ({len(ratios)} random mixed assignments, {args.space}, {n} layers)")
    print(f"uniform fp32 {fp32_ms:.3f} ms, uniform int8 {int8_ms:.3f} ms (measured, same job);"
          f" composed int8 {same_job(assignments[1]):.3f} ms; fitted scale {same_job.scale:.3f},"
          f" per boundary {same_job.per_boundary_ms * 1000:.2f} us")  # fmt: skip
    print(f"unfitted composed/measured: median {statistics.median(raw_ratios):.3f},"
          f" within +-10%: {sum(abs(r - 1) <= 0.10 for r in raw_ratios) / len(raw_ratios):.0%}")  # fmt: skip
    print(f"fitted composed/measured: median {statistics.median(ratios):.3f}, within +-10%: {within10:.0%},"
          f" within +-5%: {within5:.0%}, range {min(ratios):.3f}..{max(ratios):.3f}")  # fmt: skip
    print(f"the table's fp32 network: {table_composed.network_fp32_ms:.3f} ms (an earlier job)")

    # 3. budgets x seeds
    fractions = (0.25, 0.5, 0.75)
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    held = []
    for f in fractions:
        budget = int8_ms + f * (fp32_ms - int8_ms)
        for seed in range(args.seeds):
            request = QSearchRequest(device, "onnxruntime", Budget(latency_ms=budget), args.space,
                                     out=args.out / f"b{f:g}-s{seed}", runs=base.runs, tables_root=base.tables_root,
                                     settings=settings, train=base.train,
                                     evolution=EvolutionSettings(population=16, generations=6, seed=seed))  # fmt: skip
            outcome = qsearch(request)
            for pick in outcome.picks:
                ms = pick.extra.get("measured_ms")
                top1 = (pick.extra.get("deployed") or {}).get("runtime_top1")
                if ms is not None and top1 is not None:
                    results.setdefault(f"{f:g}", {}).setdefault(pick.method, []).append((ms, top1))
            winner = outcome.winner.extra.get("measured_ms")
            held.append(winner is not None and winner <= budget * 1.05)
            print(f"budget {budget:.3f} ms seed {seed}: winner measured {winner:.3f} ms,"
                  f" composed {outcome.winner.latency_ms:.3f} ms")  # fmt: skip
    print(f"== winners within budget (+5%): {sum(held)}/{len(held)}")
    for f, methods in results.items():
        budget = int8_ms + float(f) * (fp32_ms - int8_ms)
        print(f"-- budget {budget:.3f} ms ({float(f):.0%} of the way from int8 to fp32)")
        print(f"{'method':14s} {'measured ms':>18s} {'runtime top-1':>18s}")
        for method, values in methods.items():
            print(f"{method:14s} {mean_std([v[0] for v in values]):>18s} {mean_std([v[1] for v in values]):>18s}")

    # 4. int8/fp32 per op type
    table = LookupTable.at(base.tables_root, TableId(device.name, "onnxruntime", f"qsearch-{base.network}"))
    print("== int8/fp32 per op type (precision table)")
    for r in precision_ratios(list(table)):
        print(f"{r.op:10s} ratio {r.ratio:.2f} over {r.pairs} shapes, int8 faster in {r.faster}")


if __name__ == "__main__":
    main()

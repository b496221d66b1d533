"""`hwlab search`, `hwlab train`, `hwlab validate`: find an architecture for a device, train it, check it there."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from hwlab.cli.console import stderr_console
from hwlab.cli.predict import _common
from hwlab.cli.profile import PhaseBars, _progress_bar
from hwlab.errors import DataError
from hwlab.inventory import get_device

SEARCH_HELP = """\
Single Path One-Shot search under a latency budget on one device:

  1. train the SPOS supernet on the data (or reuse its checkpoint under RUNS/supernets/);
  2. evolve architectures (population 50, 20 iterations, top-10 parents, 25 mutations, 25 crossovers),
     rejecting any whose predicted latency on --device/--backend exceeds --latency-ms; each candidate's
     BatchNorm is recalibrated, then it is scored on the validation split (--random: the random-search
     baseline with as many evaluations);
  3. write result.json, pareto.png and the winner's arch.json to --out;
  4. measure the winner end to end on the device and record predicted vs measured in arch.json.

Latency comes from the device's predictor (`hwlab predictors fit`), or with --latency-source table from a
lookup table of this very space (`hwlab profile --space spos` with the same --input-size, --width,
--num-classes, --stem-stride and --channel-scales).

Several GPUs: `torchrun --nproc_per_node N $(command -v hwlab) search ...` trains the supernet with
DistributedDataParallel (each process draws its own path per step); the first process then searches.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("search", help="SPOS supernet + evolutionary search under a device latency budget",
                       description=SEARCH_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    _common(p)
    p.add_argument("--latency-ms", type=float, required=True, help="latency budget on the device (ms)")
    p.add_argument("--max-macs", type=int, help="also reject candidates above this many multiply-accumulates")
    p.add_argument("--max-params", type=int, help="also reject candidates above this many parameters")
    p.add_argument("--latency-source", choices=("predictor", "table"), default="predictor",
                   help="predicted latency (default) or a lookup-table sum")  # fmt: skip
    p.add_argument("--table", default="spos", help="with --latency-source table: the table name (default spos)")
    _space_args(p)
    t = p.add_argument_group("supernet training")
    _train_args(t)
    t.add_argument("--sampling", choices=("uniform", "latency-bins"), default="uniform",
                   help="paths uniformly, or uniformly within latency bins (default uniform)")  # fmt: skip
    t.add_argument("--bins", type=int, default=5, help="latency bins for --sampling latency-bins (default 5)")
    t.add_argument("--sharing", choices=("nested", "separate"), default="nested",
                   help="a layer's choice blocks share weights, kernels nested (default; trains at small scale),"
                   " or each has its own (the paper's supernet)")  # fmt: skip
    e = p.add_argument_group("search")
    e.add_argument("--random", action="store_true", help="random search with as many evaluations (the baseline)")
    e.add_argument("--population", type=int, default=50)
    e.add_argument("--iterations", type=int, default=20)
    e.add_argument("--parents", type=int, default=10)
    e.add_argument("--mutations", type=int, default=25)
    e.add_argument("--crossovers", type=int, default=25)
    e.add_argument("--mutation-prob", type=float, default=0.1)
    e.add_argument("--recal-batches", type=int, default=5, help="BN recalibration batches per candidate (default 5)")
    e.add_argument("--search-seed", type=int, default=0)
    p.add_argument("--runs", type=Path, default=Path("runs"), help="where supernets and searches go (default runs)")
    p.add_argument("--out", type=Path, help="output folder (default RUNS/search/DEVICE-BACKEND-BUDGETms-METHOD)")
    p.add_argument("--no-validate", action="store_true", help="do not measure the winner on the device")
    p.set_defaults(handler=cmd_search)

    tr = sub.add_parser("train", help="retrain an architecture from scratch and export it (ONNX, TFLite)",
                        description="Build the standalone network of ARCH.json (no supernet), train it from scratch"
                        " on the data, record its validation accuracy and weights in ARCH.json, and export"
                        " model.onnx (and model.tflite when litert-torch is installed) beside it.")  # fmt: skip
    tr.add_argument("arch", type=Path, help="an arch.json written by hwlab search")
    tr.add_argument("--data", default="digits", help="'digits' (bundled), a .npz with x and y, or an image folder")
    _train_args(tr)
    tr.add_argument("--no-export", action="store_true", help="do not export model files")
    tr.add_argument("--json", action="store_true", help="print JSON for scripts")
    tr.set_defaults(handler=cmd_train)

    va = sub.add_parser("validate", help="measure an architecture on a device: predicted vs measured latency",
                        description="Export ARCH.json's network, measure it end to end on the device through the"
                        " runner (table 'validate'), compare with the predictor and the budget, and append the"
                        " outcome to ARCH.json.")  # fmt: skip
    va.add_argument("arch", type=Path, help="an arch.json written by hwlab search")
    _common(va)
    va.add_argument("--budget-ms", type=float, help="the budget to check (default: the search's)")
    va.set_defaults(handler=cmd_validate)


def _space_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("space and data")
    g.add_argument("--data", default="digits", help="'digits' (bundled, default), a .npz with x and y, or an image"
                   " folder (one sub-folder per class)")  # fmt: skip
    g.add_argument("--input-size", type=int, default=32, help="input side in pixels (default 32)")
    g.add_argument("--width", type=float, default=0.25, help="width multiplier (default 0.25)")
    g.add_argument("--stem-stride", type=int, choices=(1, 2), default=1, help="stem stride (default 1)")
    g.add_argument("--channel-search", action="store_true", help="also search middle-channel scales 0.2 .. 1.6")


def _train_args(g: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    from hwlab.search.train import TrainSettings

    d = TrainSettings()
    g.add_argument("--epochs", type=int, default=d.epochs, help=f"training epochs (default {d.epochs})")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"(default {d.batch_size})")
    g.add_argument("--lr", type=float, default=d.lr, help=f"initial learning rate, decays linearly (default {d.lr})")
    g.add_argument("--seed", type=int, default=d.seed, help="training and data-split seed (default 0)")


def _train_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from hwlab.search.train import TrainSettings

    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


def cmd_search(args: argparse.Namespace) -> int:
    from hwlab.search.data import load_data
    from hwlab.search.evolution import Constraints, EvolutionSettings
    from hwlab.search.job import (
        ScoreSettings,
        SearchPlan,
        run_search,
        supernet_checkpoint,
        supernet_scorer,
        trained_supernet,
        write_outputs,
    )
    from hwlab.search.latency import PredictorLatency, TableLatency
    from hwlab.search.sampling import LatencyBinSampler
    from hwlab.search.space import SearchSpace
    from hwlab.search.train import is_main_process
    from hwlab.tables import LookupTable, TableId

    device = get_device(args.device, args.inventory)
    err = stderr_console()
    data = load_data(args.data, args.input_size, seed=args.seed)
    err.print(data.describe())
    space = SearchSpace.of(args.input_size, args.width, data.num_classes, args.channel_search, args.stem_stride)
    if args.latency_source == "table":
        table = LookupTable.at(args.tables, TableId(device.name, args.backend, args.table))
        latency = TableLatency(space, table)
    else:
        latency = PredictorLatency(space, device.name, args.backend, args.predictors)
        if latency.note:
            err.print(f"[yellow]note:[/] {latency.note}")
    plan = SearchPlan(
        space, str(args.data), _train_settings(args),
        EvolutionSettings(args.population, args.iterations, args.parents, args.mutations, args.crossovers,
                          args.mutation_prob),
        ScoreSettings(recal_batches=args.recal_batches, seed=args.seed),
        Constraints(args.latency_ms, args.max_macs, args.max_params),
        args.sharing,
    )  # fmt: skip
    sampler = LatencyBinSampler(space, latency, args.bins, seed=args.seed) if args.sampling == "latency-bins" else None
    checkpoint = supernet_checkpoint(args.runs, plan)
    with _progress_bar(err) as bar:
        bars = PhaseBars(bar, "supernet")
        supernet, trained = trained_supernet(plan, data, sampler or space.sample, checkpoint, bars)
    if not is_main_process():  # under torchrun the other processes only help train the supernet
        return 0
    method = "random" if args.random else "evolution"
    with _progress_bar(err) as bar:
        result = run_search(plan, latency, supernet_scorer(supernet, data, plan.scoring), method, args.search_seed,
                            progress=PhaseBars(bar, method))  # fmt: skip
    out = args.out or args.runs / "search" / f"{device.name}-{args.backend}-{args.latency_ms:g}ms-{method}"
    files = write_outputs(out, plan, result, latency.name)
    validation = None
    if not args.no_validate:
        from hwlab.validate import validate

        with _progress_bar(err) as bar:
            validation = validate(files["arch"], device, args.backend, budget_ms=args.latency_ms,
                                  predictors_root=args.predictors, tables_root=args.tables,
                                  progress=PhaseBars(bar, "validate"))  # fmt: skip
    summary = {
        "supernet": {"checkpoint": str(checkpoint), "epochs": trained.epochs, "resumed_from": trained.resumed_from,
                     "train_accuracy": trained.last_accuracy},
        "search": {k: v for k, v in result.to_json().items() if k != "candidates"},
        "files": {k: str(v) for k, v in files.items()},
        "validation": validation.to_json() if validation else None,
    }  # fmt: skip
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_search(Console(), summary, args.latency_ms)
    return 0


def _print_search(console: Console, summary: dict[str, Any], budget: float) -> None:
    s, best = summary["search"], summary["search"]["best"]
    view = Table(title=f"{s['method']} search, budget {budget:g} ms", show_header=False)
    view.add_column(style="bold")
    view.add_column()
    sup = summary["supernet"]
    reused = "reused" if sup["resumed_from"] >= sup["epochs"] else f"trained from epoch {sup['resumed_from']}"
    view.add_row("supernet", f"{sup['checkpoint']} ({reused})")
    view.add_row("evaluated", f"{s['evaluated']} candidates, {s['rejected']} rejected by the constraints")
    rate = s["latency_calls_per_s"]
    view.add_row("latency calls", f"{s['latency_calls']:,}" + (f" ({rate:,.0f}/s)" if rate else ""))
    view.add_row("best", f"choices {''.join(map(str, best['choices']))}, supernet accuracy {best['accuracy']:.1%}")
    view.add_row("predicted latency", f"{best['latency_ms']:.3f} ms")
    v = summary["validation"]
    if v:
        held = "[green]within budget[/]" if v["within_budget"] else "[red]over budget[/]"
        err = f", prediction error {v['error']:+.1%}" if v["error"] is not None else ""
        view.add_row("measured latency", f"{v['measured_ms']:.3f} ms on {v['device']}/{v['backend']}{err}, {held}")
    view.add_row("pareto front", f"{len(s['pareto'])} architectures")
    for name, path in summary["files"].items():
        view.add_row(name, path)
    console.print(view)


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from hwlab.search.data import load_data
    from hwlab.search.record import ArchRecord
    from hwlab.search.train import accuracy, train_network
    from hwlab.zoo import SposNet

    record = ArchRecord.load(args.arch)
    data = load_data(args.data, record.space.config.input_size, seed=args.seed)
    if data.num_classes != record.space.config.num_classes:
        raise DataError(f"{args.data} has {data.num_classes} classes, the architecture's classifier"
                         f" {record.space.config.num_classes}", hint="train on the data the search used")  # fmt: skip
    settings = _train_settings(args)
    net = SposNet(record.space.config, record.arch.choices, record.arch.scales)  # from scratch
    weights = args.arch.with_name("weights.pt")
    err = stderr_console()
    with _progress_bar(err) as bar:
        trained = train_network(net, data, settings, weights, PhaseBars(bar, "train"))
    acc = accuracy(net, data.x_val, data.y_val)
    record.extra["weights"] = str(weights)
    record.extra["trained"] = {"data": str(args.data), "epochs": trained.epochs, "val_accuracy": acc,
                               "settings": settings.__dict__}  # fmt: skip
    files: dict[str, str] = {}
    if not args.no_export:
        files = _export(net.cpu().eval(), torch.randn(net.input_shape), args.arch.parent, record.name)
        record.extra["exports"] = files
    record.save(args.arch)
    report = {"arch": str(args.arch), "val_accuracy": acc, "weights": str(weights), "exports": files}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        Console().print(f"validation accuracy {acc:.1%} after {trained.epochs} epochs; weights {weights}")
        for fmt, path in files.items():
            Console().print(f"  {fmt}: {path}")
    return 0


def _export(net, inputs, folder: Path, name: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """model.onnx always; model.tflite when the converter is installed (the ``tflite`` extra)."""
    from hwlab.export import export_module
    from hwlab.measure.runtimes import host_can_export

    files = {}
    for fmt, backend, suffix in (("onnx", "onnxruntime", ".onnx"), ("tflite", "litert", ".tflite")):
        if fmt == "tflite" and not host_can_export(backend):
            continue
        target = folder / f"model{suffix}"
        shutil.copyfile(export_module(net, inputs, fmt, name=name).path, target)
        files[fmt] = str(target)
    return files


def cmd_validate(args: argparse.Namespace) -> int:
    from hwlab.validate import validate

    device = get_device(args.device, args.inventory)
    with _progress_bar(stderr_console()) as bar:
        v = validate(args.arch, device, args.backend, budget_ms=args.budget_ms, predictors_root=args.predictors,
                     tables_root=args.tables, progress=PhaseBars(bar, args.backend))  # fmt: skip
    if args.json:
        print(json.dumps(v.to_json(), indent=2))
        return 0
    console = Console()
    predicted = f"{v.predicted_ms:.3f} ms" if v.predicted_ms is not None else "no predictor for this backend"
    console.print(f"{args.arch}: measured {v.measured_ms:.3f} ms on {v.device}/{v.backend}, predicted {predicted}")
    if v.error is not None:
        console.print(f"prediction error {v.error:+.1%}")
    if v.within_budget is not None:
        verdict = "[green]holds[/]" if v.within_budget else "[red]is exceeded[/]"
        console.print(f"budget {v.budget_ms:g} ms {verdict}")
    return 0

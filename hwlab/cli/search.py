"""`hwlab search`, `hwlab train`, `hwlab validate`: find an architecture for a device, train it, check it there."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import (
    MAX_INPUT_SIZE,
    add_backend_arg,
    add_device_args,
    add_folder_args,
    add_force_arg,
    add_json_arg,
    add_measuring_args,
    command,
    count_arg,
    measure_settings,
    measuring,
    number,
    positive,
    print_json,
    safe_name,
    single_backend,
    whole,
)
from hwlab.cli.console import stderr_console
from hwlab.cli.profile import PhaseBars, _progress_bar
from hwlab.errors import InvalidRequest
from hwlab.inventory import get_device

SEARCH_HELP = """\
Single Path One-Shot search under a latency budget on one device:

  1. check the latency source and the budget (before any training);
  2. train the SPOS supernet on the data (or reuse its checkpoint under RUNS_DIR/supernets/);
  3. evolve architectures (population 50, 20 iterations, top-10 parents, 25 mutations, 25 crossovers),
     rejecting any whose predicted latency on --device/--backend exceeds --latency-ms; each candidate's
     BatchNorm is recalibrated, then it is scored on the validation split (--random: the random-search
     baseline with as many evaluations);
  4. write result.json, pareto.png and the winner's arch.json to --out;
  5. measure the winner end to end on the device and record predicted vs measured in arch.json.

Latency comes from the device's predictor (`hwlab predictors fit`), or with --latency-source table from a
lookup table of this very space; when the table lacks any op of the space, the error names the exact
`hwlab profile` command that fills it.

--space repvgg searches a RepVGG-style plain network instead: per stage a depth (1-3) and a width, per
block a RepVGG block, an ACNet block or a plain 3x3 conv-BN, with ReLU or FReLU. The supernet trains the
train-form blocks; the budget is checked against the deploy form (every block one 3x3 conv with a bias:
what the device runs), from the predictor or, with --latency-source table, from `hwlab profile --space
repvgg`. The winner is re-parameterised, its accuracy checked unchanged after conversion, exported in
deploy form (deploy.onnx, deploy.tflite) and measured on the device.

Several GPUs: `torchrun --nproc_per_node N $(command -v hwlab) search ...` trains the supernet with
DistributedDataParallel (each process draws its own path per step); the first process then searches.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "search",
        help="SPOS supernet + evolutionary search under a device latency budget",
        description=SEARCH_HELP,
        examples=[
            "hwlab search --device local --latency-ms 0.3",
            "hwlab search --device local --latency-ms 0.3 --latency-source table --random",
            "hwlab search --device rk3399 --latency-ms 25 --input-size 224 --width 1.0 --data ./images",
            "hwlab profile --device local --space repvgg --input-size 32 --num-classes 10 --table repvgg-32-c10",
            "hwlab search --device local --space repvgg --latency-ms 0.5 --latency-source table",
        ],
    )
    add_device_args(p)
    add_backend_arg(p, several=False)
    p.add_argument("--latency-ms", type=positive, required=True, help="latency budget on the device (ms)")
    p.add_argument(
        "--max-macs", type=whole(1, 10**15), help="also reject candidates above this many multiply-accumulates"
    )
    p.add_argument("--max-params", type=whole(1, 10**15), help="also reject candidates above this many parameters")
    p.add_argument("--latency-source", choices=("predictor", "table"), default="predictor",
                   help="predicted latency, or a lookup-table sum")  # fmt: skip
    p.add_argument("--table", type=safe_name, metavar="NAME", help="with --latency-source table: the table's name"
                   " (default: named after the space, e.g. spos-32-w0.25-c10-s1)")  # fmt: skip
    _space_args(p)
    t = p.add_argument_group("supernet training")
    _train_args(t)
    t.add_argument("--sampling", choices=("uniform", "latency-bins"), default="uniform",
                   help="paths uniformly, or uniformly within latency bins")  # fmt: skip
    t.add_argument("--bins", type=whole(2, 1000), default=5, help="latency bins for --sampling latency-bins")
    t.add_argument("--sharing", choices=("nested", "separate"), default="nested",
                   help="a layer's choice blocks share weights, kernels nested (trains at small scale),"
                   " or each has its own (the paper's supernet)")  # fmt: skip
    e = p.add_argument_group("search")
    e.add_argument("--random", action="store_true", help="random search with as many evaluations (the baseline)")
    e.add_argument("--population", type=count_arg, default=50, help="candidates per generation")
    e.add_argument("--iterations", type=count_arg, default=20, help="generations")
    e.add_argument("--parents", type=count_arg, default=10, help="top candidates kept as parents")
    e.add_argument("--mutations", type=whole(0, 100_000), default=25, help="mutants per generation")
    e.add_argument("--crossovers", type=whole(0, 100_000), default=25, help="crossovers per generation")
    e.add_argument("--mutation-prob", type=number(0.0, 1.0), default=0.1, help="chance that a gene is redrawn")
    e.add_argument("--recal-batches", type=whole(0, 100_000), default=5, help="BN recalibration batches per candidate")
    e.add_argument("--search-seed", type=whole(0), default=0, help="seed of the evolution or random draws")
    o = p.add_argument_group("output and validation")
    add_folder_args(o, "runs", "tables", "predictors")
    o.add_argument("--out", type=Path, help="output folder (default RUNS_DIR/search/DEVICE-BACKEND-BUDGETms-METHOD)")
    o.add_argument("--no-validate", action="store_true", help="do not measure the winner on the device")
    add_measuring_args(p, stop_rules=True)
    add_force_arg(p)
    add_json_arg(p)
    p.set_defaults(handler=cmd_search)

    tr = command(
        sub,
        "train",
        help="retrain an architecture from scratch and export it (ONNX, TFLite)",
        description="Build the standalone network of ARCH.json (no supernet), train it from scratch on the data,"
        " record its validation accuracy and weights in ARCH.json, and export model.onnx (and model.tflite when"
        " litert-torch is installed) beside it.",
        examples=["hwlab train runs/search/local-onnxruntime-0.3ms-evolution/arch.json --epochs 60"],
    )
    tr.add_argument("arch", type=Path, help="an arch.json written by hwlab search")
    tr.add_argument("--data", default="digits", help="'digits' (bundled), a .npz with x and y, or an image folder")
    _train_args(tr)
    tr.add_argument("--no-export", action="store_true", help="do not export model files")
    add_json_arg(tr)
    tr.set_defaults(handler=cmd_train)

    va = command(
        sub,
        "validate",
        help="measure an architecture on a device: predicted vs measured latency",
        description="Export ARCH.json's network, measure it end to end on the device through the runner (table"
        " 'validate'), compare with the predictor and the budget, and append the outcome to ARCH.json.",
        examples=[
            "hwlab validate runs/search/local-onnxruntime-0.3ms-evolution/arch.json --device local",
            "hwlab validate arch.json --device rk3399 --backend onnxruntime,litert --core-mask big",
        ],
    )
    va.add_argument("arch", type=Path, help="an arch.json written by hwlab search")
    add_device_args(va)
    add_backend_arg(va)
    add_folder_args(va, "tables", "predictors")
    va.add_argument("--budget-ms", type=positive, help="the budget to check (default: the search's)")
    add_measuring_args(va, stop_rules=True)
    add_force_arg(va)
    add_json_arg(va)
    va.set_defaults(handler=cmd_validate)


def _space_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("space and data")
    g.add_argument("--space", choices=("spos", "repvgg"), default="spos",
                   help="SPOS ShuffleNetV2 blocks, or a RepVGG-style plain network priced in deploy form")  # fmt: skip
    g.add_argument("--data", default="digits", help="'digits' (bundled), a .npz with x and y, or an image"
                   " folder (one sub-folder per class)")  # fmt: skip
    g.add_argument("--input-size", type=whole(8, MAX_INPUT_SIZE), default=32, help="input side in pixels")
    g.add_argument("--width", type=number(0.0, 8.0, low_open=True), help="spos: width multiplier (default 0.25)")
    g.add_argument("--stem-stride", type=int, choices=(1, 2), help="spos: stem stride (default 1)")
    g.add_argument("--num-classes", type=whole(2, 100_000), help="classifier outputs (default: the data's classes)")
    g.add_argument("--channel-search", action="store_true", help="spos: also search middle-channel scales 0.2 .. 1.6")


def _train_args(g: argparse._ArgumentGroup | argparse.ArgumentParser) -> None:
    from hwlab.search.train import TrainSettings

    d = TrainSettings()
    g.add_argument("--epochs", type=whole(0, 100_000), default=d.epochs, help="training epochs")
    g.add_argument("--batch-size", type=whole(1, 65_536), default=d.batch_size, help="batch size")
    g.add_argument("--lr", type=positive, default=d.lr, help="initial learning rate, decays linearly")
    g.add_argument("--seed", type=whole(0), default=d.seed, help="training and data-split seed")


def _train_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from hwlab.search.train import TrainSettings

    return TrainSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)


def search_request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The library request for ``hwlab search``'s arguments, and the data it names (read once)."""
    from hwlab.search.data import load_data
    from hwlab.search.evolution import Constraints, EvolutionSettings
    from hwlab.search.job import ScoreSettings, SearchPlan, SearchRequest
    from hwlab.search.space import SearchSpace

    backend = single_backend(args)
    data = load_data(args.data, args.input_size, seed=args.seed)
    classes = args.num_classes or data.num_classes
    width = 0.25 if args.width is None else args.width
    space = SearchSpace.of(args.input_size, width, classes, args.channel_search, args.stem_stride or 1)
    evolution = EvolutionSettings(args.population, args.iterations, args.parents, args.mutations, args.crossovers,
                                  args.mutation_prob)  # fmt: skip
    plan = SearchPlan(space, str(args.data), _train_settings(args), evolution,
                      ScoreSettings(recal_batches=args.recal_batches, seed=args.seed),
                      Constraints(args.latency_ms, args.max_macs, args.max_params), args.sharing)  # fmt: skip
    request = SearchRequest(
        get_device(args.device, args.inventory), plan, backend, args.latency_source, args.table, args.sampling,
        args.bins, "random" if args.random else "evolution", args.search_seed, args.runs_dir, args.tables_dir,
        args.predictors_dir, args.out, not args.no_validate, measuring(args), measure_settings(args), args.force,
    )  # fmt: skip
    return request, data


def rep_search_request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """The library request of ``hwlab search --space repvgg``; options of the SPOS space are refused."""
    from hwlab.reparam.search import RepSearchRequest
    from hwlab.reparam.space import RepSpace
    from hwlab.search.data import load_data
    from hwlab.search.evolution import EvolutionSettings
    from hwlab.search.job import ScoreSettings

    spos_only = {"--width": args.width is not None, "--stem-stride": args.stem_stride is not None,
                 "--channel-search": args.channel_search, "--sampling": args.sampling != "uniform",
                 "--sharing": args.sharing != "nested", "--max-macs": args.max_macs is not None,
                 "--max-params": args.max_params is not None}  # fmt: skip
    given = [name for name, used in spos_only.items() if used]
    if given:
        raise InvalidRequest(f"{', '.join(given)} belong to --space spos", hint="leave them out with --space repvgg")
    data = load_data(args.data, args.input_size, seed=args.seed)
    space = RepSpace(args.input_size, args.num_classes or data.num_classes)
    evolution = EvolutionSettings(args.population, args.iterations, args.parents, args.mutations, args.crossovers,
                                  args.mutation_prob)  # fmt: skip
    request = RepSearchRequest(
        get_device(args.device, args.inventory), space, args.latency_ms, single_backend(args), str(args.data),
        _train_settings(args), evolution, ScoreSettings(recal_batches=args.recal_batches, seed=args.seed),
        args.latency_source, args.table, "random" if args.random else "evolution", args.search_seed, args.runs_dir,
        args.tables_dir, args.predictors_dir, args.out, not args.no_validate, measuring(args), measure_settings(args),
        args.force,
    )  # fmt: skip
    return request, data


def cmd_rep_search(args: argparse.Namespace) -> int:
    from hwlab.reparam.search import rep_search

    err = stderr_console()
    request, data = rep_search_request(args)
    with _progress_bar(err) as bar:
        outcome = rep_search(request, data=data, say=lambda text: err.print(escape(text)),
                             progress_for=lambda phase: PhaseBars(bar, phase))  # fmt: skip
    summary = outcome.to_json()
    if args.json:
        print_json(summary)
    else:
        _print_rep_search(Console(), summary, args.latency_ms)
    return 0


def _print_rep_search(console: Console, summary: dict[str, Any], budget: float) -> None:
    s, best, d = summary["search"], summary["search"]["best"], summary["deployed"]
    view = Table(title=f"repvgg {s['method']} search, budget {budget:g} ms (deploy form)", show_header=False)
    view.add_column(style="bold")
    view.add_column()
    view.add_row("evaluated", f"{s['evaluated']} candidates, {s['rejected']} rejected by the budget")
    blocks = " | ".join(f"{w}: " + " ".join(f"{k}/{a}" for k, a in stage)
                        for w, stage in zip(best["widths"], best["blocks"], strict=True))  # fmt: skip
    view.add_row("best", escape(blocks))
    view.add_row("predicted latency", f"{best['latency_ms']:.3f} ms (deploy form)")
    eq = d["equivalence"]
    view.add_row("conversion", f"{d['blocks_converted']} blocks, max abs error {eq['max_abs']:.2e},"
                 f" relative {eq['max_rel']:.2e} (tolerance {eq['tolerance']:g})")  # fmt: skip
    view.add_row("accuracy", f"{d['train_accuracy']:.2%} train form, {d['deploy_accuracy']:.2%} deploy form"
                 f" ({d['agreement']:.2%} of predictions agree)")  # fmt: skip
    v = summary["validation"]
    if v:
        held = "[green]within budget[/]" if v["within_budget"] else "[red]over budget[/]"
        view.add_row("measured latency", f"{v['measured_ms']:.3f} ms on {v['device']}/{v['backend']},"
                     f" prediction error {v['error']:+.1%}, {held}")  # fmt: skip
    for name, path in {**summary["files"], **d["files"]}.items():
        view.add_row(name, escape(path))
    console.print(view)


def cmd_search(args: argparse.Namespace) -> int:
    from hwlab.search.job import search

    if args.space == "repvgg":
        return cmd_rep_search(args)
    err = stderr_console()
    request, data = search_request(args)
    with _progress_bar(err) as bar:
        outcome = search(request, data=data, say=lambda text: err.print(escape(text)),
                         progress_for=lambda phase: PhaseBars(bar, phase))  # fmt: skip
    if outcome is None:  # a torchrun helper process: it only trained
        return 0
    summary = outcome.to_json()
    if args.json:
        print_json(summary)
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
    view.add_row("supernet", f"{escape(sup['checkpoint'])} ({reused})")
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
        tries = summary.get("validation_tries") or []
        if len(tries) > 1:  # the first winners measured over the budget (hwlab.search.budget)
            view.add_row("winners measured", ", ".join(f"{t['measured_ms']:.3f} ms" for t in tries))
    view.add_row("pareto front", f"{len(s['pareto'])} architectures")
    for name, path in summary["files"].items():
        view.add_row(name, escape(path))
    console.print(view)


def cmd_train(args: argparse.Namespace) -> int:
    from hwlab.search.retrain import retrain

    with _progress_bar(stderr_console()) as bar:
        done = retrain(args.arch, args.data, _train_settings(args), export=not args.no_export,
                       progress=PhaseBars(bar, "train"))  # fmt: skip
    if args.json:
        print_json(done.to_json())
        return 0
    console = Console()
    console.print(
        f"validation accuracy {done.val_accuracy:.1%} after {done.epochs} epochs; weights {escape(str(done.weights))}"
    )
    for fmt, path in done.exports.items():
        console.print(f"  {fmt}: {escape(path)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from hwlab.profile import usable_backends
    from hwlab.validate import validate

    device = get_device(args.device, args.inventory)
    backends = usable_backends(device) if tuple(args.backend) == ("all",) else list(args.backend)
    done = []
    with _progress_bar(stderr_console()) as bar:
        for backend in backends:
            done.append(validate(args.arch, device, backend, budget_ms=args.budget_ms,
                                 predictors_root=args.predictors_dir, tables_root=args.tables_dir,
                                 settings=measure_settings(args), measuring=measuring(args),
                                 progress=PhaseBars(bar, backend), force=args.force))  # fmt: skip
    if args.json:
        print_json([v.to_json() for v in done])
        return 0
    console = Console()
    for v in done:
        predicted = f"{v.predicted_ms:.3f} ms" if v.predicted_ms is not None else "no predictor for this backend"
        where = f"{v.device}/{v.backend}"
        console.print(f"{escape(str(args.arch))}: measured {v.measured_ms:.3f} ms on {where}, predicted {predicted}")
        if v.error is not None:
            console.print(f"prediction error {v.error:+.1%}")
        if v.within_budget is not None:
            verdict = "[green]holds[/]" if v.within_budget else "[red]is exceeded[/]"
            console.print(f"budget {v.budget_ms:g} ms {verdict}")
    return 0

"""`hwlab qsearch` and `hwlab quantize`: per-layer precisions under a device latency budget, as deployable models."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import (
    add_backend_arg,
    add_device_args,
    add_folder_args,
    add_json_arg,
    add_measuring_args,
    command,
    count_arg,
    measure_settings,
    measuring,
    number,
    positive,
    print_json,
    single_backend,
    whole,
)
from hwlab.cli.console import stderr_console
from hwlab.cli.profile import PhaseBars, _progress_bar
from hwlab.cli.search import _train_args, _train_settings
from hwlab.inventory import get_device

QSEARCH_HELP = """\
Mixed-precision (bit-width) search under a device latency budget, validated on the device:

  1. profile the network's layers at fp32 and int8 with their Quantize/Dequantize boundaries, and the fp32
     network, into tables/DEVICE/BACKEND/qsearch-SPACE (resumable): a mixed assignment's latency is
     composed from these rows;
  2. train the quantisation-aware supernet (weights fake-quantised per channel, activations per tensor,
     one precision per layer drawn uniformly each step) or reuse its checkpoint under RUNS_DIR/qsupernets/;
  3. search per-layer precisions by evolution (each candidate's BN recalibrated, then scored on the held-out
     split), and in the same run and budget the baselines: uniform fp32, uniform int8, greedy (revert the
     most sensitive layers to fp32 while the budget holds) and an ILP over sensitivity and latency (pulp);
  4. write each pick as a QDQ ONNX model (onnxruntime's quantize_static, fp32 layers excluded), measure its
     top-1 with onnxruntime, check that its int8 layers run int8 kernels, and measure its latency on the
     device, all picks in one interleaved job;
  5. write result.json, arch.json (the winner), precisions.png and pareto.png to --out.

With --bitops alone the choices also hold int4 and int2 (the SPOS paper's widths): no runtime here runs
them, so they have a BitOps cost only and picks that use them are not measured.
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "qsearch",
        help="mixed-precision search: per-layer fp32/int8 under a device latency budget",
        description=QSEARCH_HELP,
        examples=[
            "hwlab qsearch --device local --latency-ms 0.5",
            "hwlab qsearch --device local --space spos --latency-ms 0.9 --random",
            "hwlab qsearch --device local --bitops 2.0 --no-validate",
        ],
    )
    add_device_args(p)
    add_backend_arg(p, several=False)
    p.add_argument("--latency-ms", type=positive, help="latency budget on the device (ms), composed from measured rows")
    p.add_argument("--bitops", type=positive, help="BitOps budget in giga (MACs x weight bits x activation bits)")
    p.add_argument("--space", choices=("resnet", "spos"), default="resnet",
                   help="ResNet-like network (default) or a SPOS ShuffleNetV2 network")  # fmt: skip
    p.add_argument("--arch", type=Path, help="with --space spos: an arch.json of hwlab search (default: all 3x3 units)")
    p.add_argument("--data", default="digits", help="'digits' (bundled), a .npz with x and y, or an image folder")
    _train_args(p.add_argument_group("supernet training"))
    p.set_defaults(epochs=20)
    e = p.add_argument_group("search")
    e.add_argument("--random", action="store_true", help="random search with as many evaluations")
    e.add_argument("--population", type=count_arg, default=24, help="candidates per generation")
    e.add_argument("--iterations", type=whole(0, 100_000), default=8, help="generations")
    e.add_argument("--parents", type=count_arg, default=8, help="top candidates kept as parents")
    e.add_argument("--mutation-prob", type=number(0.0, 1.0), default=0.1, help="chance that a layer is redrawn")
    e.add_argument("--search-seed", type=whole(0), default=0, help="seed of the evolution or random draws")
    o = p.add_argument_group("output and validation")
    add_folder_args(o, "runs", "tables")
    o.add_argument("--out", type=Path, help="output folder (default RUNS_DIR/qsearch/DEVICE-BACKEND-SPACE-BUDGET)")
    o.add_argument("--no-validate", action="store_true", help="do not deploy and measure the picks")
    add_measuring_args(p, stop_rules=True)
    add_json_arg(p)
    p.set_defaults(handler=cmd_qsearch)

    q = command(
        sub,
        "quantize",
        help="the deployable QDQ ONNX model of a qsearch arch.json",
        description="Rebuild ARCH.json's network with its supernet weights, recalibrate BatchNorm for its"
        " precisions, write the QDQ ONNX model (fp32 layers excluded from quantize_static) and, with the tflite"
        " extra, the .tflite from the LiteRT quantizer (fp32 layers left float), and report each one's top-1 in"
        " its runtime and whether its int8 layers run int8 kernels.",
        examples=["hwlab quantize runs/qsearch/local-onnxruntime-resnet-0.5ms/arch.json --out model.onnx"],
    )
    q.add_argument("arch", type=Path, help="an arch.json written by hwlab qsearch")
    q.add_argument("--out", type=Path, help="the model file (default: model-int8.onnx beside ARCH.json)")
    add_json_arg(q)
    q.set_defaults(handler=cmd_quantize)


def qsearch_request(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    import json

    from hwlab.quant.job import QSearchRequest
    from hwlab.quant.qsearch import Budget, EvolutionSettings

    backend = single_backend(args)
    device = get_device(args.device, args.inventory)
    budget = Budget(args.latency_ms, args.bitops).check()
    arch = json.loads(args.arch.read_text()) if args.arch else None
    if arch is not None and "arch" in arch:
        arch = arch["arch"]
    tag = "-".join(x for x in (f"{args.latency_ms:g}ms" if args.latency_ms else "",
                               f"{args.bitops:g}gbitops" if args.bitops else "") if x)  # fmt: skip
    out = args.out or args.runs_dir / "qsearch" / f"{device.name}-{backend}-{args.space}-{tag}"
    return QSearchRequest(
        device, backend, budget, args.space, str(args.data), arch, out, args.runs_dir, args.tables_dir,
        measuring(args), measure_settings(args),
        _train_settings(args),
        EvolutionSettings(args.population, args.iterations, args.parents, args.mutation_prob, args.search_seed),
        args.random, not args.no_validate,
    )  # fmt: skip


def cmd_qsearch(args: argparse.Namespace) -> int:
    from hwlab.quant.job import qsearch

    request = qsearch_request(args)
    err = stderr_console()
    with _progress_bar(err) as bar:
        outcome = qsearch(request, progress=PhaseBars(bar, "qsearch"))
    summary = {"out": str(outcome.out), "picks": [c.to_json() for c in outcome.picks],
               "files": {k: str(v) for k, v in outcome.files.items()}}  # fmt: skip
    if args.json:
        print_json(summary)
    else:
        _print_picks(Console(), summary, request.budget)
    return 0


def _print_picks(console: Console, summary: dict[str, Any], budget: Any) -> None:
    limit = " and ".join(x for x in (f"{budget.latency_ms:g} ms" if budget.latency_ms else "",
                                     f"{budget.bitops_g:g} GBitOps" if budget.bitops_g else "") if x)  # fmt: skip
    view = Table(title=f"bit-width search, budget {limit}")
    for name in ("method", "int8 layers", "composed ms", "measured ms", "GBitOps", "supernet top-1", "runtime top-1",
                 "int8 kernels"):  # fmt: skip
        view.add_column(name, justify="left" if name == "method" else "right")
    for pick in summary["picks"]:
        deployed = pick.get("deployed") or {}
        low = sum(p != "fp32" for p in pick["precisions"])
        ms = pick.get("measured_ms")
        kernels = f"{deployed['int8_kernels']}/{deployed['int8_layers']}" if deployed else "-"
        view.add_row(pick["method"], f"{low}/{len(pick['precisions'])}",
                     f"{pick['composed_ms']:.3f}" if pick["composed_ms"] is not None else "-",
                     f"{ms:.3f}" if ms is not None else "-", f"{pick['bitops_g']:.3f}",
                     f"{pick['supernet_top1']:.1%}" if pick["supernet_top1"] is not None else "-",
                     f"{deployed['runtime_top1']:.1%}" if deployed else "-", kernels)  # fmt: skip
    console.print(view)
    for name, path in summary["files"].items():
        console.print(f"  {name}: {escape(path)}")


def cmd_quantize(args: argparse.Namespace) -> int:
    from hwlab.quant.job import quantize_arch

    out = args.out or args.arch.with_name("model-int8.onnx")
    path, deployed, tflite = quantize_arch(args.arch, out)
    if args.json:
        print_json({**deployed.to_json(), "tflite": tflite})
        return 0
    console = Console()
    console.print(f"{escape(str(path))}: onnxruntime top-1 {deployed.runtime_top1:.1%}, int8 kernels"
                  f" {deployed.int8_kernels} for {deployed.int8_layers} int8 layers")  # fmt: skip
    if isinstance(tflite, dict):
        console.print(f"{escape(tflite['file'])}: LiteRT top-1 {tflite['runtime_top1']:.1%}, int8 ops"
                      f" {tflite['int8_ops']} for {tflite['int8_layers']} int8 layers")  # fmt: skip
    else:
        console.print(f".tflite {escape(tflite)}")
    return 0

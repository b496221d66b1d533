"""`hwlab predict` and `hwlab predictors rules|fit|show|eval`.

Each takes one backend or a comma list and does its work for each in turn; with
``--json`` it prints one list with an entry per backend.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import (
    add_backend_arg,
    add_device_args,
    add_folder_args,
    add_force_arg,
    add_json_arg,
    add_measuring_args,
    command,
    count_arg,
    measuring,
    print_json,
    whole,
)
from hwlab.cli.console import stderr_console
from hwlab.errors import GraphError, InvalidRequest, PredictorError
from hwlab.inventory import get_device
from hwlab.predictors.predictor import Predictor, fitted_backends
from hwlab.profile import ProfileRequest, usable_backends


def _common(p: argparse.ArgumentParser, *, measures: bool, folders: tuple[str, ...] = ("predictors",)) -> None:
    add_device_args(p)
    add_backend_arg(p)
    add_folder_args(p, *folders)
    if measures:
        add_measuring_args(p)
    add_json_arg(p)


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "predict",
        help="predict a model's latency on a device, kernel by kernel",
        description="Split an ONNX model into the kernels the device's runtime executes (its measured fusion"
        " rules), predict each, add the learned overhead, and print the breakdown.",
        examples=["hwlab predict model.onnx --device local", "hwlab predict model.onnx --device rk3399 --json"],
    )
    p.add_argument("model", type=Path, help="an .onnx file (batch 1, fixed input shape)")
    _common(p, measures=False)
    p.add_argument("--allow-unknown", action="store_true", help="predict ops without a regressor as 0 (lower bound)")
    add_force_arg(p)
    p.set_defaults(handler=cmd_predict)

    p = command(
        sub,
        "predictors",
        help="measure fusion rules, fit, show and evaluate predictors",
        description="Build and check the fusion-aware latency predictor of a device and backend.",
        examples=["hwlab predictors fit --device local", "hwlab predictors eval --device local"],
    )
    psub = p.add_subparsers(dest="predictors_command", metavar="ACTION", required=True, help="what to do")
    rules = command(
        psub,
        "rules",
        help="measure which op pairs the runtime fuses (table 'fusion')",
        description="Measure each candidate op pair alone and fused (nn-Meter's test, the runtime's fixed cost"
        " removed) into the table 'fusion', and print which pairs the runtime fuses.",
        examples=["hwlab predictors rules --device local", "hwlab predictors rules --device rk3399 --threads 2"],
    )
    _common(rules, measures=True, folders=("tables",))
    rules.set_defaults(handler=cmd_rules)
    fit = command(
        psub,
        "fit",
        help="measure kernels and calibration models, fit the predictor, save it",
        description="Measures (resumably) the fusion rules and seeded training models: where the runtime shows "
        "its graph (onnxruntime), the models whole, each kernel's time taken from inside them (reorders and "
        "fusions as the runtime ran them, the profiler's cost calibrated out); elsewhere every distinct kernel "
        "alone, with neighbours of badly predicted ones (adaptive rounds). Then whole calibration models; fits "
        "one regressor per kernel type (a work line times trees) and the model-level term; saves "
        "PREDICTORS_DIR/<device>/<backend>/ with each kernel type's domain.",
        examples=["hwlab predictors fit --device local", "hwlab predictors fit --device rk3399 --core-mask big"],
    )
    _common(fit, measures=True, folders=("tables", "predictors"))
    fit.add_argument(
        "--spos-space", type=_spos_space, nargs="+", metavar="SIZE,WIDTH[,STRIDE[,CLASSES]]",
        help="SPOS spaces whose architectures train the predictor (default: "
        "32,0.25,1,10 (the search's default space) 64,1 128,2 224,0.5); a search refuses a predictor "
        "that does not cover its space",
    )  # fmt: skip
    fit.add_argument("--spos-models", type=count_arg, default=4, help="SPOS training architectures per space")
    fit.add_argument(
        "--standalone", action="store_true",
        help="learn every kernel measured alone, even where the runtime shows its graph (onnxruntime; LiteRT "
        "through benchmark_model's op profile), where the default learns kernels inside whole models",
    )  # fmt: skip
    fit.add_argument("--family-models", type=count_arg, default=8, help="training models per zoo family")
    fit.add_argument("--rounds", type=whole(0, 1000), default=1, help="adaptive sampling rounds")
    fit.add_argument("--seed", type=whole(0), default=0, help="seed of the training models")
    fit.set_defaults(handler=cmd_fit)
    show = command(
        psub,
        "show",
        help="kernel types, cross-validated accuracy, fusion rules, overhead",
        description="Print what a fitted predictor holds: its regressors' cross-validated accuracy, its fusion"
        " rules and its overhead term.",
        examples=["hwlab predictors show --device local", "hwlab predictors show --device local --json"],
    )
    _common(show, measures=False)
    add_force_arg(show)
    show.set_defaults(handler=cmd_show)
    ev = command(
        psub,
        "eval",
        help="measure held-out models end to end; compare FLOPs-linear, lookup-table sum and hwlab",
        description="Measure held-out models end to end on the device and score three predictors on them;"
        " the report (eval.json) and a scatter plot go beside the predictor.",
        examples=["hwlab predictors eval --device local", "hwlab predictors eval --device local --spos 40"],
    )
    _common(ev, measures=True, folders=("tables", "predictors"))
    ev.add_argument("--spos", type=whole(0, 100_000), default=20, help="held-out SPOS architectures")
    ev.add_argument("--per-family", type=whole(0, 100_000), default=7, help="held-out models per zoo family")
    ev.add_argument("--seed", type=whole(0), default=1000, help="seed of the held-out models")
    add_force_arg(ev)
    ev.add_argument("--plot", type=Path, help="PNG scatter plot (default: PREDICTORS_DIR/<device>/<backend>/eval.png)")
    ev.set_defaults(handler=cmd_eval)


def _fitted_backends(args: argparse.Namespace) -> list[str]:
    """``--backend``, where ``all`` is every backend with a fitted predictor for the device (by name: reading
    a predictor needs no inventory entry)."""
    if tuple(args.backend) != ("all",):
        return list(args.backend)
    found = fitted_backends(args.predictors_dir, args.device)
    if not found:
        raise PredictorError(
            f"no predictor for {args.device!r} in {args.predictors_dir}",
            hint=f"fit one: hwlab predictors fit --device {args.device}",
        )
    return found


def _for_each_backend(args: argparse.Namespace, work: Callable[[ProfileRequest], Any]) -> list[Any]:
    """``work`` on a measuring request for each backend of ``--backend`` (``all``: every usable one)."""
    device = get_device(args.device, args.inventory)
    backends = usable_backends(device) if tuple(args.backend) == ("all",) else list(args.backend)
    wishes = measuring(args)
    return [work(ProfileRequest.of(device, b, wishes, tables_root=args.tables_dir)) for b in backends]


def cmd_predict(args: argparse.Namespace) -> int:
    from hwlab.predictors.graph_load import check_inputs, read_onnx

    if args.model.suffix.lower() == ".tflite":
        from hwlab.tflitefile import check_tflite

        check_tflite(args.model)
        raise GraphError(
            f"{args.model} is a TFLite model; hwlab predicts from ONNX graphs",
            hint="export the network to ONNX too (torch.onnx.export) and predict that file",
        )
    check_inputs(read_onnx(args.model), str(args.model))  # the user's file first, before any predictor is read
    results = []
    for backend in _fitted_backends(args):
        predictor = Predictor.load(args.device, backend, args.predictors_dir, force=args.force)
        results.append((backend, predictor.predict_onnx(args.model, allow_unknown=args.allow_unknown)))
    if args.json:
        print_json([{"backend": b, **p.to_json()} for b, p in results])
        return 0
    console = Console()
    for backend, prediction in results:
        view = Table(title=f"{escape(args.model.name)} on {escape(args.device)}/{backend}")
        for col in ("#", "kernel", "nodes", "h×w×cin → cout", "ms", ""):
            view.add_column(col, justify="right" if col in ("#", "ms") else "left")
        outside = prediction.outside or [False] * len(prediction.kernels)
        for i, (kernel, ms) in enumerate(prediction.kernels):
            f = kernel.features
            shape = f"{f['h']:g}×{f['w']:g}×{f['cin']:g} → {f['cout']:g}"
            flag = "[yellow]outside[/]" if outside[i] else ""
            view.add_row(str(i), escape(kernel.type), escape(",".join(kernel.nodes)[:40]), shape, f"{ms:.4f}", flag)
        console.print(view)
        note = " [yellow](lower bound: no regressor for " + escape(", ".join(sorted(set(prediction.missing)))) + ")[/]"
        console.print(
            f"predicted latency: [bold]{prediction.total_ms:.3f} ms[/] ({len(prediction.kernels)} kernels,"
            f" overhead {prediction.overhead_ms:+.3f} ms){note if prediction.lower_bound else ''}"
        )
        console.print(domain_line(prediction.outside_share))
    return 0


def domain_line(share: float | None) -> str:
    """How much of a prediction is extrapolated, in words."""
    if share is None:
        return "domain: unknown (the predictor predates recorded domains; refit it to know)"
    if share == 0:
        return "domain: every kernel lies within the features the predictor was fitted on"
    colour = "yellow" if share > 0.05 else "default"
    return (
        f"domain: [{colour}]{share:.0%} of the kernels' predicted time comes from kernels outside the features"
        " their type was fitted on[/] (extrapolated; fit with models like this one to cover them)"
    )


def cmd_rules(args: argparse.Namespace) -> int:
    from hwlab.predictors.fusion import measure_fusion_rules
    from hwlab.predictors.train import FitPlan

    found = _for_each_backend(
        args, lambda base: (base.backend, measure_fusion_rules(replace(base, settings=FitPlan().fusion_settings)))
    )
    if args.json:
        print_json([{"backend": b, **rules.to_json()} for b, rules in found])
        return 0
    for backend, rules in found:
        print_rules(Console(), rules, backend)
    return 0


def print_rules(console: Console, rules, backend: str) -> None:  # type: ignore[no-untyped-def]
    view = Table(
        title=f"{backend} fusion rules: the runtime's graph decides where it shows one; elsewhere timing"
        f" (fused when T1 + T2 - T12 - O > {rules.alpha} × min(T1 - O, T2 - O))"
    )
    for col in ("first", "second", "T1 ms", "T2 ms", "T12 ms", "O ms", "saving ms", "timing", "graph", "fused"):
        view.add_column(col)
    for e in rules.evidence:
        pair = (e.first, e.second)
        graph = ("one node" if pair in rules.fused else "two nodes") if pair in rules.seen_in_graph else "-"
        view.add_row(
            escape(e.first), escape(e.second), f"{e.t_first_ms:.4f}", f"{e.t_second_ms:.4f}", f"{e.t_pair_ms:.4f}",
            f"{e.overhead_ms:.4f}", f"{e.saving_ms:+.4f}", "fused" if e.fused(rules.alpha) else "apart", graph,
            "[green]yes[/]" if pair in rules.fused else "no",
        )  # fmt: skip
    console.print(view)


def _spos_space(text: str):  # type: ignore[no-untyped-def]
    from hwlab.predictors.shapes import SposShape

    try:
        return SposShape.parse(text)
    except InvalidRequest as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def cmd_fit(args: argparse.Namespace) -> int:
    from hwlab.predictors.shapes import DEFAULT_SPOS_SHAPES
    from hwlab.predictors.train import FitPlan, fit_predictor

    plan = FitPlan(
        spos_shapes=tuple(dict.fromkeys(args.spos_space or DEFAULT_SPOS_SHAPES)), spos_models=args.spos_models,
        family_models=args.family_models, adaptive_rounds=args.rounds, seed=args.seed, in_graph=not args.standalone,
    )  # fmt: skip
    console = stderr_console() if args.json else Console()
    fitted = _for_each_backend(
        args, lambda base: (base.backend, fit_predictor(base, plan, root=args.predictors_dir, say=console.print))
    )
    if args.json:
        print_json([{"backend": b, **p.loaded.to_json()} for b, p in fitted])
        return 0
    for backend, predictor in fitted:
        _print_summary(console, predictor, backend)
    return 0


def _print_summary(console: Console, predictor: Predictor, backend: str) -> None:
    view = Table(title=f"{backend} kernel regressors (cross-validated)")
    for col in ("kernel type", "rows", "model", "RMSPE", "within ±10%"):
        view.add_column(col)
    for kernel_type, acc in sorted(predictor.loaded.accuracy.items()):
        chosen = predictor.loaded.candidates.get(kernel_type, {})
        view.add_row(
            escape(kernel_type),
            str(acc["rows"]),
            escape(str(chosen.get("name", ""))),
            f"{acc['rmspe']:.1%}",
            f"{acc['within_10']:.0%}",
        )
    console.print(view)
    o = predictor.overhead
    console.print(f"overhead: {o.per_kernel_ms * 1000:+.2f} µs per kernel, {o.fixed_ms * 1000:+.1f} µs per model")


def cmd_show(args: argparse.Namespace) -> int:
    shown = [(b, Predictor.load(args.device, b, args.predictors_dir, force=args.force)) for b in _fitted_backends(args)]
    if args.json:
        print_json([{"backend": b, **p.loaded.to_json()} for b, p in shown])
        return 0
    console = Console()
    for backend, predictor in shown:
        _print_summary(console, predictor, backend)
        print_rules(console, predictor.rules, backend)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hwlab.predictors.evaluate import evaluate_and_report

    def report(base: ProfileRequest) -> tuple[str, Any, dict[str, Any]]:
        plot, several = args.plot, len(args.backend) > 1 or tuple(args.backend) == ("all",)
        if plot is not None and several:
            plot = plot.with_name(f"{plot.stem}-{base.backend}{plot.suffix}")  # one plot per backend
        result, written = evaluate_and_report(base, args.predictors_dir, spos_count=args.spos,
                                              family_count=args.per_family, seed=args.seed, plot=plot,
                                              force=args.force)  # fmt: skip
        return base.backend, result, written

    done = _for_each_backend(args, report)
    if args.json:
        print_json([{"backend": b, **report} for b, _, report in done])
        return 0
    console = Console()
    for backend, result, report in done:
        view = Table(title=f"held-out models on {escape(args.device)}/{backend} (measured end to end)")
        for col in ("predictor", "set", "models", "RMSE ms", "RMSPE", "±5%", "±10%"):
            view.add_column(col)
        families = result.family_scores()
        for name, by_set in result.scores().items():
            for s, sc in {**by_set, **{f: v for f, v in families[name].items() if f != "spos"}}.items():
                view.add_row(name, s, str(result.count(s)), f"{sc.rmse_ms:.3f}", f"{sc.rmspe:.1%}",
                             f"{sc.within_5:.0%}", f"{sc.within_10:.0%}")  # fmt: skip
        console.print(view)
        console.print(f"ceiling: {escape(str(report['noise_floor']))}")
        console.print(f"scatter plot: {escape(str(report['plot']))}")
    return 0

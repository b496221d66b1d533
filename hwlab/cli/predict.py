"""`hwlab predict` and `hwlab predictors rules|fit|show|eval`."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from hwlab.cli.devices import add_inventory_arg
from hwlab.inventory import get_device
from hwlab.predictors.predictor import Predictor
from hwlab.profile import ProfileRequest


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="local", help="device name from the inventory (default: local)")
    p.add_argument("--backend", default="onnxruntime", help="runtime (default: onnxruntime)")
    add_inventory_arg(p)
    p.add_argument("--tables", type=Path, default=Path("tables"), help="tables folder (default: ./tables)")
    p.add_argument("--predictors", type=Path, default=Path("predictors"), help="predictors folder")
    p.add_argument("--json", action="store_true", help="print JSON for scripts")


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "predict",
        help="predict a model's latency on a device, kernel by kernel",
        description="Split an ONNX model into the kernels the device's runtime executes (its measured fusion"
        " rules), predict each, add the learned overhead, and print the breakdown.",
    )
    p.add_argument("model", type=Path, help="an .onnx file (batch 1, fixed input shape)")
    _common(p)
    p.add_argument("--allow-unknown", action="store_true", help="predict ops without a regressor as 0 (lower bound)")
    p.set_defaults(handler=cmd_predict)

    p = sub.add_parser("predictors", help="measure fusion rules, fit, show and evaluate predictors")
    psub = p.add_subparsers(dest="predictors_command", metavar="ACTION", required=True)
    rules = psub.add_parser("rules", help="measure which op pairs the runtime fuses (table 'fusion')")
    _common(rules)
    rules.set_defaults(handler=cmd_rules)
    fit = psub.add_parser(
        "fit",
        help="measure kernels and calibration models, fit the predictor, save it",
        description="Measures (resumably) the fusion rules, the distinct kernels of seeded training models, "
        "neighbours of badly predicted kernels (adaptive rounds) and whole calibration models; fits one "
        "regressor per kernel type and the overhead term; saves predictors/<device>/<backend>/.",
    )
    _common(fit)
    fit.add_argument("--spos-models", type=int, default=12, help="SPOS training architectures (default 12)")
    fit.add_argument("--family-models", type=int, default=8, help="training models per zoo family (default 8)")
    fit.add_argument("--rounds", type=int, default=1, help="adaptive sampling rounds (default 1)")
    fit.add_argument("--seed", type=int, default=0)
    fit.set_defaults(handler=cmd_fit)
    show = psub.add_parser("show", help="kernel types, cross-validated accuracy, fusion rules, overhead")
    _common(show)
    show.set_defaults(handler=cmd_show)
    ev = psub.add_parser(
        "eval",
        help="measure held-out models end to end; compare FLOPs-linear, lookup-table sum and hwlab",
    )
    _common(ev)
    ev.add_argument("--spos", type=int, default=20, help="held-out SPOS architectures (default 20)")
    ev.add_argument("--per-family", type=int, default=7, help="held-out models per zoo family (default 7)")
    ev.add_argument("--seed", type=int, default=1000, help="seed of the held-out models (default 1000)")
    ev.add_argument("--plot", type=Path, help="PNG scatter plot (default: predictors/<device>/<backend>/eval.png)")
    ev.set_defaults(handler=cmd_eval)


def _base(args: argparse.Namespace) -> ProfileRequest:
    device = get_device(args.device, args.inventory)
    return ProfileRequest(device=device, backend=args.backend, specs=[], space="", tables_root=args.tables)


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.device, args.backend, args.predictors)
    prediction = predictor.predict_onnx(args.model, allow_unknown=args.allow_unknown)
    if args.json:
        print(json.dumps(prediction.to_json(), indent=2))
        return 0
    view = Table(title=f"{args.model.name} on {args.device}/{args.backend}")
    for col in ("#", "kernel", "nodes", "h×w×cin → cout", "ms"):
        view.add_column(col, justify="right" if col in ("#", "ms") else "left")
    for i, (kernel, ms) in enumerate(prediction.kernels):
        f = kernel.features
        shape = f"{f['h']:g}×{f['w']:g}×{f['cin']:g} → {f['cout']:g}"
        view.add_row(str(i), kernel.type, ",".join(kernel.nodes)[:40], shape, f"{ms:.4f}")
    console = Console()
    console.print(view)
    note = " [yellow](lower bound: no regressor for " + ", ".join(sorted(set(prediction.missing))) + ")[/]"
    console.print(
        f"predicted latency: [bold]{prediction.total_ms:.3f} ms[/] ({len(prediction.kernels)} kernels,"
        f" overhead {prediction.overhead_ms:+.3f} ms){note if prediction.lower_bound else ''}"
    )
    return 0


def cmd_rules(args: argparse.Namespace) -> int:
    from hwlab.predictors.fusion import measure_fusion_rules
    from hwlab.predictors.train import FitPlan

    rules = measure_fusion_rules(replace(_base(args), settings=FitPlan().fusion_settings))
    if args.json:
        print(json.dumps(rules.to_json(), indent=2))
        return 0
    print_rules(Console(), rules)
    return 0


def print_rules(console: Console, rules) -> None:  # type: ignore[no-untyped-def]
    view = Table(title=f"fusion rules (fused when T1 + T2 - T12 - O > {rules.alpha} × min(T1 - O, T2 - O))")
    for col in ("first", "second", "T1 ms", "T2 ms", "T12 ms", "O ms", "saving ms", "fused"):
        view.add_column(col)
    for e in rules.evidence:
        view.add_row(
            e.first, e.second, f"{e.t_first_ms:.4f}", f"{e.t_second_ms:.4f}", f"{e.t_pair_ms:.4f}",
            f"{e.overhead_ms:.4f}", f"{e.saving_ms:+.4f}", "[green]yes[/]" if e.fused(rules.alpha) else "no",
        )  # fmt: skip
    console.print(view)


def cmd_fit(args: argparse.Namespace) -> int:
    from hwlab.predictors.train import FitPlan, fit_predictor

    plan = FitPlan(
        spos_models=args.spos_models, family_models=args.family_models, adaptive_rounds=args.rounds, seed=args.seed
    )
    console = Console(stderr=args.json)
    predictor = fit_predictor(_base(args), plan, root=args.predictors, say=console.print)
    if args.json:
        print(json.dumps(predictor.loaded.summary(), indent=2, default=str))
    else:
        _print_summary(console, predictor)
    return 0


def _print_summary(console: Console, predictor: Predictor) -> None:
    view = Table(title="kernel regressors (cross-validated)")
    for col in ("kernel type", "rows", "model", "RMSPE", "within ±10%"):
        view.add_column(col)
    for kernel_type, acc in sorted(predictor.loaded.accuracy.items()):
        chosen = predictor.loaded.candidates.get(kernel_type, {})
        view.add_row(
            kernel_type, str(acc["rows"]), str(chosen.get("name", "")), f"{acc['rmspe']:.1%}", f"{acc['within_10']:.0%}"
        )
    console.print(view)
    o = predictor.overhead
    console.print(f"overhead: {o.per_kernel_ms * 1000:+.2f} µs per kernel, {o.fixed_ms * 1000:+.1f} µs per model")


def cmd_show(args: argparse.Namespace) -> int:
    predictor = Predictor.load(args.device, args.backend, args.predictors)
    if args.json:
        print(json.dumps(predictor.loaded.summary(), indent=2, default=str))
        return 0
    console = Console()
    _print_summary(console, predictor)
    print_rules(console, predictor.rules)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from hwlab.predictors.evaluate import evaluate
    from hwlab.predictors.train import FitPlan

    predictor = Predictor.load(args.device, args.backend, args.predictors)
    plan_fields = predictor.loaded.meta.get("plan", {})
    plan = FitPlan(**{k: v for k, v in plan_fields.items() if k in FitPlan.__dataclass_fields__})
    result = evaluate(_base(args), predictor, plan, spos_count=args.spos, family_count=args.per_family, seed=args.seed)
    folder = args.predictors / args.device / args.backend
    plot = result.plot(args.plot or folder / "eval.png")
    report = {**result.to_json(), "plot": str(plot), "held_out_seed": args.seed}
    (folder / "eval.json").write_text(json.dumps(report, indent=2))
    scores = result.scores()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    view = Table(title=f"held-out models on {args.device}/{args.backend} (measured end to end)")
    for col in ("predictor", "set", "models", "RMSE ms", "RMSPE", "±5%", "±10%"):
        view.add_column(col)
    counts = {s: result.sets.count(s) for s in ("spos", "families")}
    for name, by_set in scores.items():
        for s, sc in by_set.items():
            view.add_row(name, s, str(counts[s]), f"{sc.rmse_ms:.3f}", f"{sc.rmspe:.1%}", f"{sc.within_5:.0%}",
                         f"{sc.within_10:.0%}")  # fmt: skip
    Console().print(view)
    Console().print(f"scatter plot: {plot}")
    return 0

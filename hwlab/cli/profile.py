"""`hwlab profile` and `hwlab spaces`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from hwlab.cli.common import (
    MAX_INPUT_SIZE,
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
    print_json,
    safe_name,
    whole,
)
from hwlab.cli.console import stderr_console
from hwlab.errors import InvalidRequest
from hwlab.inventory import get_device
from hwlab.profile import MODELS_TABLE, ModelItem, ProfileReport, ProfileRequest, file_items, profile_space
from hwlab.space import describe_spaces

PROFILE_HELP = """\
Measure every operator of a space on a device and append the results to the lookup table
TABLES_DIR/<device>/<backend>/<table>/ (ops.jsonl + samples.jsonl + meta.json).

Rows are written one by one as the device reports them: interrupt at any moment and every
finished op is kept; the same command again measures only what is missing.

--precisions fp32,int8 measures every op at each precision into the same table (int8 keys end
-prec:int8; onnxruntime, static QDQ int8 with per-channel weights), with the QuantizeLinear and
Quantize->Dequantize models that price a switch between precisions, and prints the measured
int8/fp32 ratio per op type: where int8 does not pay on this device.

--model FILE measures model files as they are (.onnx on onnxruntime, .tflite on litert) into the
table "models" (key: the file's stem, or --key). With --inputs data.npz (one array per model input,
named after it or arr_0, arr_1, ...; samples along the first axis) the device times one call per
sample, cycling through them, and the row carries the distribution: p50/p90/p99 and each sample's
median, which show whether a dynamic model (an early exit) has a stable latency and which inputs
are slow.
"""


def _precisions(text: str) -> tuple[str, ...]:
    from hwlab.errors import PrecisionUnsupported
    from hwlab.quant.precision import parse_precisions

    try:
        return parse_precisions(text)
    except PrecisionUnsupported as err:
        raise argparse.ArgumentTypeError(f"{err.message} ({err.hint})") from None


def _floats(text: str) -> tuple[float, ...]:
    scale = number(0.0, 8.0, low_open=True)
    values = tuple(scale(x) for x in text.split(",") if x.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected comma-separated scales, e.g. 0.6,1.0, not {text!r}")
    return values


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "spaces",
        help="list the operator spaces",
        description="List the spaces `hwlab profile --space NAME` measures, with their parameters.",
        examples=["hwlab spaces", "hwlab spaces --json"],
    )
    add_json_arg(p)
    p.set_defaults(handler=cmd_spaces)

    p = command(
        sub,
        "profile",
        help="measure a space's operators into a lookup table",
        description=PROFILE_HELP,
        examples=[
            "hwlab profile --device local --space spos --input-size 32",
            "hwlab profile --device local --backend all --space generic --count 200 --seed 1",
            "hwlab profile --device rk3399 --backend litert --space spos --threads 2 --core-mask big",
            "hwlab profile --device local --space spos --input-size 32 --precisions fp32,int8",
            "hwlab profile --device local --model early-exit.onnx --inputs data.npz",
            "hwlab profile --device pixel --backend litert --model net.tflite --key net-v2",
        ],
    )
    add_device_args(p)
    add_backend_arg(p)
    p.add_argument("--space", help="operator space (see `hwlab spaces`; default spos)")
    f = p.add_argument_group("model files (instead of a space)")
    f.add_argument(
        "--model", type=Path, action="append", metavar="FILE", help="a .onnx or .tflite model to measure (repeatable)"
    )
    f.add_argument("--inputs", type=Path, metavar="DATA.npz", help="measure over these inputs: the distribution")
    f.add_argument("--key", metavar="NAME", help="the row's key, for one --model (default: the file's stem)")
    g = p.add_argument_group("space parameters")
    g.add_argument(
        "--input-size",
        type=whole(8, MAX_INPUT_SIZE),
        help="spos, blocks: input image size (default 224; e.g. 32 for small images)",
    )
    g.add_argument("--channel-scales", type=_floats, help="spos: channel-scale factors, e.g. 0.6,1.0 (default 1.0)")
    g.add_argument("--width", type=number(0.0, 8.0, low_open=True), help="spos, blocks: width multiplier (default 1.0)")
    g.add_argument("--num-classes", type=whole(2, 100_000), help="spos: classifier outputs (default 1000)")
    g.add_argument("--stem-stride", type=int, choices=(1, 2), help="spos: stride of the stem conv (default 2)")
    g.add_argument("--count", type=count_arg, help="generic: number of sampled ops; kernels: models per family")
    g.add_argument("--seed", type=whole(0), help="generic, kernels: sampling seed")
    g.add_argument(
        "--precisions", type=_precisions, default=("fp32",), metavar="LIST",
        help="precisions to measure every op at, e.g. fp32,int8 (default fp32)",
    )  # fmt: skip
    add_measuring_args(p, stop_rules=True)
    o = p.add_argument_group("output")
    add_folder_args(o, "tables")
    o.add_argument("--table", type=safe_name, metavar="NAME", help="table name (default: the space name)")
    o.add_argument("--retry-errors", action="store_true", help="measure again the ops that failed before")
    o.add_argument(
        "--remeasure-unsettled", action="store_true",
        help="measure again the rows whose floor's CI ended above the stop rule's (the machine never stayed quiet "
        "long enough); the rows they replace are kept in the table's superseded.jsonl",
    )  # fmt: skip
    add_json_arg(o, "print a JSON report on stdout (progress goes to stderr)")
    p.set_defaults(handler=cmd_profile)


def cmd_spaces(args: argparse.Namespace) -> int:
    from hwlab.space import space_parameters

    spaces = [{"space": n, "description": d, "parameters": space_parameters(n)} for n, d in describe_spaces().items()]
    if args.json:
        print_json(spaces)
        return 0
    table = Table(title="operator spaces")
    for col in ("space", "what it holds", "parameters"):
        table.add_column(col)
    for s in spaces:
        table.add_row(s["space"], s["description"], ", ".join(s["parameters"]))
    Console().print(table)
    return 0


def space_params(args: argparse.Namespace) -> dict[str, Any]:
    """The space parameters given on the command line (the space checks that it takes them)."""
    given = {
        "input_size": args.input_size,
        "channel_scales": args.channel_scales,
        "width": args.width,
        "num_classes": args.num_classes,
        "stem_stride": args.stem_stride,
        "count": args.count,
        "seed": args.seed,
    }
    return {k: v for k, v in given.items() if v is not None}


def _model_items(args: argparse.Namespace) -> list[ModelItem] | None:
    """The --model files as items (None without --model), each checked here, with its --inputs."""
    if not args.model:
        if args.inputs or args.key:
            raise InvalidRequest(
                "--inputs and --key go with --model FILE", hint="hwlab profile --model net.onnx --inputs data.npz"
            )
        return None
    extra = [f"--{k.replace('_', '-')}" for k in space_params(args)] + (["--space"] if args.space else [])
    if extra or args.precisions != ("fp32",):
        raise InvalidRequest(
            f"--model measures model files as they are: {', '.join(extra) or '--precisions'} cannot apply",
            hint="leave those out, or profile the space without --model",
        )
    return file_items(args.model, args.inputs, args.key)


def cmd_profile(args: argparse.Namespace) -> int:
    console = stderr_console() if args.json else Console()
    device = get_device(args.device, args.inventory)
    items = _model_items(args)
    space = MODELS_TABLE if items is not None else args.space or "spos"
    params = space_params(args)
    base = ProfileRequest.of(
        device, "", measuring(args), space=space, space_params=params, table_name=args.table,
        tables_root=args.tables_dir, settings=measure_settings(args), retry_errors=args.retry_errors,
        remeasure_unsettled=args.remeasure_unsettled,
    )  # fmt: skip
    if items is not None:
        over = f" over {escape(args.inputs.name)}" if args.inputs else ""
        what = f"{len(items)} model file{'s' if len(items) > 1 else ''}{over}"
    else:
        what = f"space [bold]{escape(space)}[/] {escape(str(params or ''))}"
    console.print(f"profiling {what} on [bold]{escape(device.name)}[/] with {', '.join(args.backend)}")
    with _progress_bar(console) as bar:
        done = profile_space(base, args.backend, lambda backend: PhaseBars(bar, backend), args.precisions, items)
    if not done.reports and len(done.refused) == 1:  # one backend, refused: its error says why
        raise next(iter(done.refused.values()))
    if args.json:
        refused = [{"backend": b, "refused": e.message, "fix": e.hint} for b, e in done.refused.items()]
        print_json([_report_json(r) for r in done.reports] + refused)
    else:
        print_summary(console, done.reports)
        print_distributions(console, done.reports)
        for prec in args.precisions:
            if prec != "fp32":
                print_precision_ratios(console, done.reports, prec)
        for backend, err in done.refused.items():
            console.print(
                f"[red]refused[/] {backend}: {escape(err.message)}"
                + (f"\n  fix: {escape(err.hint)}" if err.hint else "")
            )
    return 1 if done.refused or any(r.errors for r in done.reports) else 0


class PhaseBars:
    """One progress bar per phase (export, measure, train, ...) of a piece of work."""

    def __init__(self, bar: Progress, label: str) -> None:
        self.bar = bar
        self.label = label
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, done: int, total: int, label: str) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(f"{self.label}: {phase}", total=total, op="")
        self.bar.update(self.tasks[phase], completed=done, total=total, op=escape(label))


def _progress_bar(console: Console) -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("[dim]{task.fields[op]}", justify="left"),
        console=console,
    )


def _report_json(report: ProfileReport) -> dict[str, Any]:
    return {
        "backend": report.backend,
        "table": str(report.table.folder),
        "measurer": report.measurer,
        "planned": report.planned,
        "skipped": report.skipped,
        "measured": len(report.measured),
        "errors": [{"key": r["key"], "error": r["error"]} for r in report.errors],
        "unstable": [r["key"] for r in report.unstable],
        "rows": len(report.table),
        "distributions": [
            {k: row.get(k) for k in DISTRIBUTION_KEYS} for row in report.measured if row.get("input_count") is not None
        ],
    }


DISTRIBUTION_KEYS = ("key", "input_count", "n", "p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "input_median_ms")
SHOWN_INPUTS = 24  # per-input medians printed on one line; the table holds them all


def print_distributions(console: Console, reports: list[ProfileReport]) -> None:
    """The rows measured over input data: their quantiles, and each input's median (which inputs are slow)."""
    rows = [(r.backend, row) for r in reports for row in r.measured if row.get("input_count") is not None]
    if not rows:
        return
    table = Table(title="latency over the inputs (ms; one timed call per input, cycled)")
    for col in ("backend", "model", "inputs", "calls", "p50", "p90", "p99", "min", "max", "p99/p50", "max/min"):
        table.add_column(col)
    for backend, row in rows:
        figures = [row.get(k) for k in ("p50_ms", "p90_ms", "p99_ms", "min_ms", "max_ms")]
        p50, p99, low, high = row.get("p50_ms"), row.get("p99_ms"), row.get("min_ms"), row.get("max_ms")
        table.add_row(
            backend, escape(row["key"]), str(row["input_count"]), str(row.get("n")),
            *("-" if v is None else f"{v:.4g}" for v in figures),
            f"{p99 / p50:.2f}" if p50 and p99 else "-", f"{high / low:.2f}" if low and high else "-",
        )  # fmt: skip
    console.print(table)
    for backend, row in rows:
        medians = row.get("input_median_ms") or []
        shown = " ".join("-" if m is None else f"{m:.4g}" for m in medians[:SHOWN_INPUTS])
        more = f" … ({len(medians) - SHOWN_INPUTS} more in the table)" if len(medians) > SHOWN_INPUTS else ""
        console.print(f"{backend} {escape(row['key'])}: median per input (ms): {shown}{more}")


def _speed_factors(states: list[float]) -> str:
    """The machine's state against the device's reference (per group of rounds, the anchors' mean ratio):
    "1.000" or "0.97-1.04"."""
    if not states:
        return "-"
    return f"{states[0]:.3f}" if len(states) == 1 else f"{states[0]:.3f}-{states[-1]:.3f}"


def print_precision_ratios(console: Console, reports: list[ProfileReport], prec: str) -> None:
    """Per backend and op type: the measured ``prec``/fp32 latency ratio, and where it does not pay."""
    from hwlab.quant.space import precision_ratios

    table = Table(title=f"{prec} against fp32, measured (median ratio over ops measured at both)")
    for col in ("backend", "op", f"{prec}/fp32", "ops", f"faster at {prec}", "failed"):
        table.add_column(col)
    for r in reports:
        for ratio in precision_ratios(r.table, prec):
            shown = "-" if ratio.ratio is None else f"{ratio.ratio:.2f}"
            if ratio.pays is False:
                shown = f"[yellow]{shown} (does not pay)[/]"
            failed = f"[red]{ratio.failed}[/]" if ratio.failed else "0"
            table.add_row(r.backend, ratio.op, shown, str(ratio.pairs), str(ratio.faster), failed)
    console.print(table)


def print_summary(console: Console, reports: list[ProfileReport]) -> None:
    table = Table(title="profile summary")
    columns = ("backend", "table", "ops", "measured now", "already there", "errors", "unstable", "sum of medians",
               "speed factor")  # fmt: skip
    for col in columns:
        table.add_column(col)
    for r in reports:
        ok = [row for row in r.table if row.get("status") == "ok"]
        total_ms = sum(row["median_ms"] for row in ok if row.get("median_ms") is not None)
        table.add_row(
            r.backend,
            escape(str(r.table.folder)),
            str(r.planned),
            str(len(r.measured)),
            str(r.skipped),
            f"[red]{len(r.errors)}[/]" if r.errors else "0",
            f"[yellow]{len(r.unstable)}[/]" if r.unstable else "0",
            f"{total_ms:.3f} ms",
            _speed_factors(r.speed_states),
        )
    console.print(table)
    for r in reports:
        backend = r.backend
        for row in r.errors:
            console.print(f"[red]failed[/] {backend} {escape(row['key'])}: {escape(str(row['error']))}")
        if r.speed_note:
            console.print(f"{backend}: {escape(r.speed_note)}")
        for row in r.unstable[:10]:
            what = {"rounds": "its corrected rounds spread", "calls": "its calls on one input spread"}.get(
                row.get("schedule", ""), "its IQR is"
            )
            console.print(
                f"[yellow]unstable[/] {backend} {escape(row['key'])}: {what} over 10% of the median:"
                " the device was busy or throttling; rerun it with --pause or --max-temp"
            )
        if len(r.unstable) > 10:
            console.print(f"[yellow]… and {len(r.unstable) - 10} more unstable ops[/] (`hwlab tables show`)")
    if reports:
        first = reports[0].table.folder
        console.print(f"read a table in one call: pandas.read_json('{escape(str(first))}/ops.jsonl', lines=True)")

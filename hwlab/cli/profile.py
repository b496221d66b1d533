"""`hwlab profile` and `hwlab spaces`."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from rich.console import Console
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

from hwlab.cli.console import stderr_console
from hwlab.cli.devices import add_inventory_arg
from hwlab.errors import BackendUnavailable
from hwlab.inventory import CORE_MASK_RULES, RUNTIMES, get_device
from hwlab.measure.deploy import Deployer
from hwlab.measure.facts import device_facts
from hwlab.measure.runtimes import available_backends
from hwlab.measure.settings import Cooldown, MeasureSettings, StopRule
from hwlab.profile import ProfileReport, ProfileRequest, profile
from hwlab.space import describe_spaces, get_space
from hwlab.transport import connect

PROFILE_HELP = """\
Measure every operator of a space on a device and append the results to the lookup table
tables/<device>/<backend>/<space>/ (ops.jsonl + samples.jsonl + meta.json).

Rows are written one by one as the device reports them: interrupt at any moment and every
finished op is kept; the same command again measures only what is missing.

examples:
  hwlab profile --device local --space spos --input-size 32
  hwlab profile --device local --backend onnxruntime --space generic --count 200 --seed 1
  hwlab profile --device rk3399 --backend litert --space spos --threads 2 --core-mask 4,5
"""


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids, e.g. 4,5 — not {text!r}") from None


def _core_mask(text: str) -> tuple[int, ...] | str:
    return text if text in CORE_MASK_RULES else _ints(text)


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, e.g. 0.6,1.0 — not {text!r}") from None


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "spaces", help="list the operator spaces", description="List the spaces `hwlab profile` measures."
    )
    p.set_defaults(handler=cmd_spaces)

    p = sub.add_parser(
        "profile",
        help="measure a space's operators into a lookup table",
        description=PROFILE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--device", default="local", help="device name from the inventory (default: local)")
    add_inventory_arg(p)
    p.add_argument(
        "--backend",
        default="all",
        help=f"runtime(s), comma-separated: {', '.join(RUNTIMES)};"
        " 'all' (default) = every one the device and this host support",
    )
    p.add_argument("--space", default="spos", help="operator space (see `hwlab spaces`; default: spos)")
    g = p.add_argument_group("space parameters")
    g.add_argument("--input-size", type=int, help="spos: input image size (default 224; e.g. 32 for small images)")
    g.add_argument("--channel-scales", type=_floats, help="spos: channel-scale factors, e.g. 0.6,1.0 (default 1.0)")
    g.add_argument("--width", type=float, help="spos: width multiplier of stem and stages (default 1.0)")
    g.add_argument("--num-classes", type=int, help="spos: classifier outputs (default 1000)")
    g.add_argument("--stem-stride", type=int, choices=(1, 2), help="spos: stride of the stem conv (default 2)")
    g.add_argument("--count", type=int, help="generic: number of sampled ops; kernels: training models per family")
    g.add_argument("--seed", type=int, help="generic, kernels: sampling seed")
    m = p.add_argument_group("measurement")
    m.add_argument("--threads", type=int, help="intra-op threads (default: the inventory's)")
    m.add_argument(
        "--core-mask",
        type=_core_mask,
        help="CPU ids to pin to (e.g. 4,5), or big / little (from the device's clusters) / all;"
        " default: the inventory's",
    )
    m.add_argument(
        "--governor", help="cpufreq governor while measuring, e.g. performance (restored afterwards; needs root)"
    )
    m.add_argument(
        "--power", help="power sensor: auto (discover), none, or a sensor name (default: the inventory's, else auto)"
    )
    m.add_argument(
        "--lock-wait", type=float, default=0.0, help="seconds to wait for a device another profile holds (default 0)"
    )
    d = MeasureSettings().stop
    m.add_argument(
        "--min-time",
        type=float,
        default=d.min_time_s,
        help=f"seconds of samples at least (default {d.min_time_s})",
    )
    m.add_argument(
        "--max-time",
        type=float,
        default=d.max_time_s,
        help=f"seconds per op at most (default {d.max_time_s})",
    )
    m.add_argument("--min-count", type=int, default=d.min_count, help=f"samples at least (default {d.min_count})")
    m.add_argument(
        "--ci",
        type=float,
        default=d.ci_rel,
        help=f"stop when the 95%% CI of the median is within ±this (default {d.ci_rel})",
    )
    m.add_argument("--max-temp", type=float, help="cool down below this °C before each op (where readable)")
    m.add_argument("--pause", type=float, default=0.0, help="seconds to pause before each op")
    o = p.add_argument_group("output")
    o.add_argument("--tables", type=Path, default=Path("tables"), help="tables folder (default: ./tables)")
    o.add_argument("--table", help="table name (default: the space name)")
    o.add_argument("--retry-errors", action="store_true", help="measure again the ops that failed before")
    o.add_argument("--json", action="store_true", help="print a JSON report on stdout (progress goes to stderr)")
    p.set_defaults(handler=cmd_profile)


def cmd_spaces(args: argparse.Namespace) -> int:
    table = Table(title="operator spaces")
    table.add_column("space")
    table.add_column("what it holds")
    for name, description in describe_spaces().items():
        table.add_row(name, description)
    table.add_row("kernels", "the distinct fused kernels of seeded training models, under the measured fusion rules")
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


def _backends(args: argparse.Namespace, device, facts: dict[str, Any]) -> list[str]:  # type: ignore[no-untyped-def]
    if args.backend == "all":
        usable = available_backends(facts, device)
        if not usable:
            raise BackendUnavailable(
                f"no runtime of {', '.join(device.runtimes)} is usable on {device.name!r}",
                hint=f"see `hwlab doctor --device {device.name}`",
            )
        return usable
    return [b.strip() for b in args.backend.split(",") if b.strip()]


def cmd_profile(args: argparse.Namespace) -> int:
    console = stderr_console() if args.json else Console()
    device = get_device(args.device, args.inventory)
    params = space_params(args)
    specs = [] if args.space == "kernels" else get_space(args.space, **params)
    d = MeasureSettings()
    settings = MeasureSettings(
        warmup=d.warmup,
        stop=StopRule(min_count=args.min_count, min_time_s=args.min_time, max_time_s=args.max_time, ci_rel=args.ci),
        cooldown=Cooldown(max_temp_c=args.max_temp, pause_s=args.pause),
    )
    transport = connect(device)
    reports: list[tuple[str, ProfileReport]] = []
    try:
        facts = device_facts(Deployer(transport, device))
        backends = _backends(args, device, facts)
        console.print(
            f"profiling [bold]{len(specs) or 'the'}[/] ops of space [bold]{args.space}[/] {params or ''} on "
            f"[bold]{device.name}[/] with {', '.join(backends)}"
        )
        for backend in backends:
            if args.space == "kernels":  # depends on the backend's measured fusion rules
                from hwlab.predictors.dataset import kernel_space

                specs = kernel_space(args.tables, device.name, backend, args.count or 8, args.seed or 0)
            request = ProfileRequest(
                device=device,
                backend=backend,
                specs=specs,
                space=args.space,
                space_params=params,
                table_name=args.table,
                tables_root=args.tables,
                threads=args.threads,
                core_mask=args.core_mask,
                settings=settings,
                retry_errors=args.retry_errors,
                lock_wait_s=args.lock_wait,
                governor=args.governor,
                power=args.power,
            )
            with _progress_bar(console) as bar:
                reports.append((backend, profile(request, PhaseBars(bar, backend), transport=transport, facts=facts)))
    finally:
        transport.close()
    if args.json:
        print(json.dumps([_report_json(b, r) for b, r in reports], indent=2))
    else:
        print_summary(console, reports)
    return 1 if any(r.errors for _, r in reports) else 0


class PhaseBars:
    """One progress bar per phase (export, measure) of a backend's profile."""

    def __init__(self, bar: Progress, backend: str) -> None:
        self.bar = bar
        self.backend = backend
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, phase: str, done: int, total: int, label: str) -> None:
        if phase not in self.tasks:
            self.tasks[phase] = self.bar.add_task(f"{self.backend}: {phase}", total=total, op="")
        self.bar.update(self.tasks[phase], completed=done, total=total, op=label)


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


def _report_json(backend: str, report: ProfileReport) -> dict[str, Any]:
    return {
        "backend": backend,
        "table": str(report.table.folder),
        "planned": report.planned,
        "skipped": report.skipped,
        "measured": len(report.measured),
        "errors": [{"key": r["key"], "error": r["error"]} for r in report.errors],
        "unstable": [r["key"] for r in report.unstable],
        "rows": len(report.table),
    }


def print_summary(console: Console, reports: list[tuple[str, ProfileReport]]) -> None:
    table = Table(title="profile summary")
    for col in (
        "backend",
        "table",
        "ops",
        "measured now",
        "already there",
        "errors",
        "unstable",
        "sum of medians",
    ):
        table.add_column(col)
    for backend, r in reports:
        ok = [row for row in r.table if row.get("status") == "ok"]
        total_ms = sum(row["median_ms"] for row in ok if row.get("median_ms") is not None)
        table.add_row(
            backend,
            str(r.table.folder),
            str(r.planned),
            str(len(r.measured)),
            str(r.skipped),
            f"[red]{len(r.errors)}[/]" if r.errors else "0",
            f"[yellow]{len(r.unstable)}[/]" if r.unstable else "0",
            f"{total_ms:.3f} ms",
        )
    console.print(table)
    for backend, r in reports:
        for row in r.errors:
            console.print(f"[red]failed[/] {backend} {row['key']}: {row['error']}")
        for row in r.unstable[:10]:
            spread = row["iqr_ms"] / row["median_ms"]  # unstable rows have both
            console.print(
                f"[yellow]unstable[/] {backend} {row['key']}: IQR {spread:.0%} of the median (> 10%):"
                " the device was busy or throttling; rerun it with --pause or --max-temp"
            )
        if len(r.unstable) > 10:
            console.print(f"[yellow]… and {len(r.unstable) - 10} more unstable ops[/] (`hwlab tables show`)")
    if reports:
        first = reports[0][1].table.folder
        console.print(f"read a table in one call: pandas.read_json('{first}/ops.jsonl', lines=True)")

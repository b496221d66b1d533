"""`hwlab tables list` and `hwlab tables show`."""

from __future__ import annotations

import argparse

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hwlab.cli.common import add_folder_args, add_json_arg, command, print_json
from hwlab.cli.interop import register_interop
from hwlab.errors import TableError
from hwlab.tables import LookupTable, TableId, list_tables
from hwlab.tables.rows import uncorrected_note

SHOW_COLUMNS = (
    "key",
    "median_ms",
    "raw_median_ms",
    "speed_factor",
    "p10_ms",
    "p90_ms",
    "n",
    "ci_rel",
    "temp_c",
    "status",
)


def _conditions(meta: dict) -> str:  # type: ignore[type-arg]
    """How a table was measured, or where it was imported from."""
    fixed = meta.get("fixed", {})
    if fixed.get("imported_from"):
        return f"imported from {fixed['imported_from']}"
    return f"{fixed.get('runtime')} {fixed.get('runtime_version')}"


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = command(
        sub,
        "tables",
        help="list, show, import and export lookup tables",
        description="Read the lookup tables that `hwlab profile` writes, import published ones, export them.",
        examples=["hwlab tables list", "hwlab tables show local/onnxruntime/spos --sort median_ms"],
    )
    tsub = p.add_subparsers(dest="tables_command", metavar="ACTION", required=True, help="what to do")
    ls = command(
        tsub,
        "list",
        help="every table with its size and conditions",
        description="List every table under the tables folder: rows, failures, runtime, threads, core mask.",
        examples=["hwlab tables list", "hwlab tables list --tables-dir lab/tables --json"],
    )
    add_folder_args(ls, "tables")
    add_json_arg(ls)
    ls.set_defaults(handler=cmd_list)
    show = command(
        tsub,
        "show",
        help="the rows of one table",
        description="Print the rows of one table, sorted by a column, with the conditions it was measured under.",
        examples=["hwlab tables show local/onnxruntime/spos", "hwlab tables show local/onnxruntime/generic --json"],
    )
    show.add_argument("table", metavar="TABLE", help="DEVICE/BACKEND/NAME, e.g. local/onnxruntime/spos")
    add_folder_args(show, "tables")
    show.add_argument("--sort", default="median_ms", help="column to sort by")
    add_json_arg(show, "print the metadata and rows as JSON")
    show.set_defaults(handler=cmd_show)
    register_interop(tsub)


def cmd_list(args: argparse.Namespace) -> int:
    entries = []
    for tid in list_tables(args.tables_dir):
        table = LookupTable.at(args.tables_dir, tid)
        meta = table.meta()
        fixed = meta.get("fixed", {})
        entries.append(
            {
                "table": str(tid),
                "rows": len(table),
                "ok": len(table.keys("ok")),
                "errors": len(table) - len(table.keys("ok")),
                "runtime": _conditions(meta),
                "threads": fixed.get("threads"),
                "core_mask": fixed.get("core_mask"),
                "emulated": meta.get("emulated", False),
                "updated": meta.get("updated"),
            }
        )
    if args.json:
        print_json(entries)
        return 0
    if not entries:
        Console().print(f"no tables under {escape(str(args.tables_dir))}: run `hwlab profile` first")
        return 0
    view = Table(title=f"tables in {escape(str(args.tables_dir))}")
    for col in ("table", "rows", "ok", "errors", "runtime", "threads", "core mask", "updated"):
        view.add_column(col, no_wrap=True)
    for e in entries:
        mark = " [yellow](emulated)[/]" if e["emulated"] else ""
        view.add_row(
            f"{e['table']}{mark}",
            str(e["rows"]),
            str(e["ok"]),
            f"[red]{e['errors']}[/]" if e["errors"] else "0",
            escape(str(e["runtime"])),
            str(e["threads"]),
            ",".join(map(str, e["core_mask"])) if e["core_mask"] else "all",
            escape(str(e["updated"])),
        )
    Console().print(view)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    table = LookupTable.at(args.tables_dir, TableId.parse(args.table))
    meta = table.meta()
    rows = list(table)
    if rows and args.sort not in rows[0]:
        raise TableError(f"no column {args.sort!r}", hint=f"sort by one of: {', '.join(rows[0])}")
    rows.sort(key=lambda r: (r.get(args.sort) is None, r.get(args.sort) or 0))
    if args.json:
        print_json({"meta": meta, "rows": rows})
        return 0
    fixed = meta.get("fixed", {})
    title = escape(
        f"{args.table}: {_conditions(meta)},"
        f" threads {fixed.get('threads')},"
        f" core mask {fixed.get('core_mask') or 'all'}{' [EMULATED]' if meta.get('emulated') else ''}"
    )
    view = Table(title=title)
    for col in SHOW_COLUMNS:
        view.add_column(col, justify="left" if col in ("key", "status") else "right")
    for r in rows:
        view.add_row(*(_cell(r, c) for c in SHOW_COLUMNS))
    console = Console()
    console.print(view)
    note = uncorrected_note(rows)
    if note:
        console.print(f"[yellow]note[/]: {escape(note)}")
    return 0


def _cell(row: dict, col: str) -> str:  # type: ignore[type-arg]
    value = row.get(col)
    if value is None:
        return "-"
    if col == "ci_rel":
        return f"±{value:.1%}"
    if col == "status" and value != "ok":
        return f"[red]{escape(str(value))}[/]: {escape(str(row.get('error', '')))}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return escape(str(value))

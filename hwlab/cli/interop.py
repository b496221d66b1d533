"""`hwlab tables import` and `hwlab tables export`: published lookup tables in, OFA-format YAML out."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from hwlab.cli.common import MAX_INPUT_SIZE, add_folder_args, add_json_arg, command, print_json, safe_name, whole
from hwlab.errors import TableError
from hwlab.inventory import RUNTIMES
from hwlab.tables import LookupTable, TableId
from hwlab.tables.interop import FORMATS, export_ofa_yaml, identify, import_yaml


def register_interop(tsub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `import` and `export` to the subparsers of `hwlab tables`."""
    imp = command(
        tsub,
        "import",
        help="import published lookup tables (OFA, ProxylessNAS YAML)",
        description=(
            "Import published per-block latency tables as hwlab tables, one table per file. "
            "Rows are marked as imported and keep their provenance; they hold the published mean, std and count "
            "(no median, no raw samples). Files shipped in the shared data folder are recognised by content; "
            "for any other file say where it comes from with --source."
        ),
        examples=[
            "hwlab tables import ../shared/data/ofa_note10/224_lookup_table.yaml --device note10",
            "hwlab tables import my_lut.yaml --device pixel4 --source 'me/repo @ abc123, lut.yaml'",
        ],
    )
    imp.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="YAML lookup table(s)")
    imp.add_argument("--device", required=True, metavar="NAME", help="device the numbers were measured on")
    imp.add_argument(
        "--backend",
        choices=(*RUNTIMES, "imported"),
        default="imported",
        help="the runtime that measured them, when known (the table's backend folder)",
    )
    imp.add_argument(
        "--table", type=safe_name, metavar="NAME", help="table name (one PATH only; default: named after the file)"
    )
    imp.add_argument("--format", choices=("auto", *FORMATS), default="auto", help="file format")
    imp.add_argument("--source", help="provenance 'owner/repo @ commit, path' (needed for unrecognised files)")
    imp.add_argument("--source-device", help="the device as the source describes it (default: --device)")
    imp.add_argument(
        "--resolution", type=whole(1, MAX_INPUT_SIZE), help="input resolution (default: read from the first conv's key)"
    )
    add_folder_args(imp, "tables")
    add_json_arg(imp)
    imp.set_defaults(handler=cmd_import)

    exp = command(
        tsub,
        "export",
        help="write a table as OFA-format YAML",
        description="Write a table as `key: {count, mean, std}` in ms, the format OFA's latency predictors read.",
        examples=["hwlab tables export local/onnxruntime/spos --format ofa -o spos_ofa.yaml"],
    )
    exp.add_argument("table", metavar="TABLE", help="DEVICE/BACKEND/NAME, e.g. note10/imported/ofa-note10-224")
    exp.add_argument("--format", choices=("ofa",), required=True, help="output format")
    exp.add_argument("-o", "--output", type=Path, required=True, metavar="FILE", help="YAML file to write")
    add_folder_args(exp, "tables")
    add_json_arg(exp)
    exp.set_defaults(handler=cmd_export)


def cmd_import(args: argparse.Namespace) -> int:
    if args.table and len(args.paths) > 1:
        raise TableError(
            f"--table names one table but {len(args.paths)} files were given",
            hint="import one file per --table, or leave --table out to name each table after its file",
        )
    done: list[dict[str, Any]] = []
    for path in args.paths:
        known = identify(path)
        source = args.source or (known.source if known else None)
        if not source:
            raise TableError(
                f"{path} is not a published file hwlab recognises, so its provenance is unknown",
                hint="say where it comes from: --source 'owner/repo @ commit, path'",
            )
        name = args.table or (known.table if known else path.stem)
        tid = TableId(args.device, args.backend, name)
        report = import_yaml(
            path,
            LookupTable.at(args.tables_dir, tid),
            device=args.device,
            source=source,
            format=args.format,
            resolution=args.resolution,
            backend=args.backend,
            source_device=args.source_device or (known.source_device if known else None),
        )
        done.append(
            {
                "path": str(path),
                "table": str(tid),
                "format": report.format,
                "imported_from": source,
                "added": len(report.rows),
                "skipped": len(report.skipped),
            }
        )
    if args.json:
        print_json(done)
        return 0
    console = Console()
    for d in done:
        again = f", {d['skipped']} already there" if d["skipped"] else ""
        where = f"{escape(d['path'])} -> [bold]{d['table']}[/]"
        console.print(f"{where}: {d['added']} rows added{again} ({escape(d['imported_from'])})")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    tid = TableId.parse(args.table)
    table = LookupTable.at(args.tables_dir, tid)
    if not table.exists:
        raise TableError(f"no table {tid} under {args.tables_dir}", hint="see `hwlab tables list`")
    report = export_ofa_yaml(table, args.output)
    if args.json:
        print_json({"path": str(report.path), "written": report.written, "skipped": report.skipped})
        return 0
    console = Console()
    console.print(f"{tid} -> {escape(str(report.path))}: {report.written} rows")
    for key, why in report.skipped.items():
        console.print(f"  [yellow]left out[/] {escape(key)}: {escape(why)}")
    return 0

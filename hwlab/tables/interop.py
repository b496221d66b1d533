"""Import published per-block latency tables (Once-for-All, ProxylessNAS) and export hwlab tables in OFA's format.

Imported rows are other people's numbers: each one says where it comes from
(``source: imported``, ``imported_from``: repository @ commit, path), on which
device, and which statistic was published. They publish means, so ``median_ms``
stays null and no raw samples are stored; nothing here makes them look like a
hwlab measurement. Keys are kept exactly as the source wrote them, so a
predictor built on the source's key format can look them up unchanged.

Both formats map a block key to its statistics in ms:

* OFA:        ``key: {count, mean, std}``
* ProxylessNAS: ``key: {count, mean, var}`` (var in ms², so ``std_ms = sqrt(var)``)

The two sources write ``expand`` differently: OFA's note10 tables give the
middle channel count (``input:14x14x136 ... expand:408``), ProxylessNAS gives
the expansion ratio (``expand:6``). Rows record which in ``expand_unit`` and
carry the middle channel count in ``mid`` either way.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import yaml

import hwlab
from hwlab.errors import TableError
from hwlab.tables.rows import Row
from hwlab.tables.store import LookupTable
from hwlab.yamlfile import YamlProblem, read_yaml

Format = Literal["ofa", "proxyless"]
FORMATS: tuple[Format, ...] = ("ofa", "proxyless")

KEY_COLUMNS = (
    "op",
    "input_h",
    "input_w",
    "cin",
    "output_h",
    "output_w",
    "cout",
    "expand",
    "kernel",
    "stride",
    "idskip",
    "se",
    "hs",
)

# op name -> (fields every key of it has, fields it may add), in the order the sources write them
_LAYOUTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "expanded_conv": (("input", "output", "expand", "kernel", "stride", "idskip"), ("se", "hs")),
    "Conv": (("input", "output"), ()),
    "Conv_1": (("input", "output"), ()),
    "Conv_2": (("input", "output"), ()),
    "AvgPool2D": (("input", "output"), ()),
    "Logits": (("input", "output"), ()),
}
_FLAGS = ("idskip", "se", "hs")
_STATS: dict[Format, frozenset[str]] = {
    "ofa": frozenset({"count", "mean", "std"}),
    "proxyless": frozenset({"count", "mean", "var"}),
}
_STATISTIC: dict[Format, str] = {"ofa": "mean/std/count", "proxyless": "mean/var/count"}
_EXPAND_UNIT: dict[Format, str] = {"ofa": "channels", "proxyless": "ratio"}
# A table whose slowest block is under 50 µs was almost surely written in seconds, one over 10 s in µs.
_PLAUSIBLE_MAX_MEAN_MS = (0.05, 10_000.0)

_UPSTREAM = "han-cai/files @ a7c9bcd525e17404968bc55aa43772bf7e51909e"


@dataclass(frozen=True)
class KnownSource:
    """Provenance of a published file, recognised by its content hash."""

    format: Format
    source: str
    source_device: str
    table: str


# sha256 of the published files as fetched (see the shared data README for where they come from)
KNOWN_FILES: dict[str, KnownSource] = {
    "a2671a45e9400542679ed03de946b45d6a35010f9ab21834af3e7ba8341d36d1": KnownSource(
        "ofa", f"{_UPSTREAM}, ofa/note10/160_lookup_table.yaml", "Samsung Note10", "ofa-note10-160"
    ),
    "34223ae037d5719a5f33261bdfd9341f590a2999edf520f174309605dc06307c": KnownSource(
        "ofa", f"{_UPSTREAM}, ofa/note10/176_lookup_table.yaml", "Samsung Note10", "ofa-note10-176"
    ),
    "0ff5ca0649e56ad34a42d6a8a6f20adb5121c8d12d135299397b310472db79e2": KnownSource(
        "ofa", f"{_UPSTREAM}, ofa/note10/192_lookup_table.yaml", "Samsung Note10", "ofa-note10-192"
    ),
    "41aa63af766a8298354e6aa5ae69d512ac68656a6e7d0a4fa5dc725c8d438633": KnownSource(
        "ofa", f"{_UPSTREAM}, ofa/note10/208_lookup_table.yaml", "Samsung Note10", "ofa-note10-208"
    ),
    "c13a9bcb3f4becae844bce4897129c4e42975984c1029cbd5acb48c970136530": KnownSource(
        "ofa", f"{_UPSTREAM}, ofa/note10/224_lookup_table.yaml", "Samsung Note10", "ofa-note10-224"
    ),
    "087e855ea77f9b257e72f3637333a3e0938f6df77f579520f16d057ac45380aa": KnownSource(
        "proxyless", f"{_UPSTREAM}, proxylessnas/mobile_trim.yaml", "unnamed phone", "proxylessnas-mobile"
    ),
}


@dataclass
class ImportReport:
    """What one import did: rows appended, and keys skipped because the table already held them."""

    path: Path
    format: Format
    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


@dataclass
class ExportReport:
    """What an export wrote, and the rows it left out with the reason for each."""

    path: Path
    written: int
    skipped: dict[str, str]


# -- keys ---------------------------------------------------------------------------------------------------------

_OP_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_ofa_key(key: str) -> dict[str, Any]:
    """The row columns a block key names; columns the key does not name are None.

    Reads OFA and ProxylessNAS keys (``expanded_conv-input:...``, ``Conv-...``,
    ``Logits-input:1x1x1536-output:1000``). An unknown layout is an error naming
    the key, so a new source format is never half-read.
    """
    if not isinstance(key, str) or not key:
        raise TableError(f"block key must be a non-empty string, got {key!r}", hint="check the YAML's keys")
    op, *parts = key.split("-")
    layout = _LAYOUTS.get(op)
    if layout is None:
        raise TableError(
            f"unknown block key {key!r}: op {op!r} is not one of {', '.join(_LAYOUTS)}",
            hint="only OFA / ProxylessNAS MobileNet-style lookup tables can be imported",
        )
    required, optional = layout

    def bad(reason: str) -> TableError:
        expected = "-".join([op, *(f"{name}:..." for name in required)])
        extra = f" [{'-'.join(f'{name}:...' for name in optional)}]" if optional else ""
        return TableError(f"malformed block key {key!r}: {reason}", hint=f"expected {expected}{extra}")

    values: dict[str, str] = {}
    for part in parts:
        name, sep, value = part.partition(":")
        if not sep or not value:
            raise bad(f"field {part!r} should be NAME:VALUE")
        if name not in required and name not in optional:
            raise bad(f"unknown field {name!r}")
        if name in values:
            raise bad(f"field {name!r} given twice")
        values[name] = value
    missing = [name for name in required if name not in values]
    if missing:
        raise bad(f"missing {', '.join(missing)}")
    if optional and 0 < sum(name in values for name in optional) < len(optional):
        raise bad(f"give all of {', '.join(optional)} or none")

    def number(name: str, text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise bad(f"{name}={text!r} is not a whole number")
        return int(text)

    def dims(name: str, allow_flat: bool) -> tuple[int | None, int | None, int]:
        sizes = values[name].split("x")
        if len(sizes) == 1 and allow_flat:  # Logits writes its output as a class count
            return None, None, number(name, sizes[0])
        if len(sizes) != 3:
            raise bad(f"{name} {values[name]!r} should be HxWxC")
        h, w, c = (number(name, s) for s in sizes)
        return h, w, c

    cols: dict[str, Any] = dict.fromkeys(KEY_COLUMNS)
    cols["op"] = op
    cols["input_h"], cols["input_w"], cols["cin"] = dims("input", allow_flat=False)
    cols["output_h"], cols["output_w"], cols["cout"] = dims("output", allow_flat=op == "Logits")
    for name in (*required, *optional):
        if name in ("input", "output") or name not in values:
            continue
        cols[name] = number(name, values[name])
        if name in _FLAGS and cols[name] not in (0, 1):
            raise bad(f"{name}={cols[name]} should be 0 or 1")
    for name in ("input_h", "input_w", "cin", "output_h", "output_w", "cout", "expand", "kernel", "stride"):
        if cols[name] is not None and cols[name] < 1:
            raise bad(f"{name}={cols[name]} should be >= 1")
    return cols


# -- reading the YAML -----------------------------------------------------------------------------------------------


def _load(path: Path) -> tuple[dict[str, dict[str, Any]], str]:
    """The file's mapping and its sha256, or an error that names the file."""
    try:
        data, raw = read_yaml(path)
    except OSError as err:
        raise TableError(f"cannot read {path}: {err.strerror or err}", hint="check the path") from None
    except YamlProblem as err:
        raise TableError(
            f"{path} {err}", hint="pass an OFA or ProxylessNAS lookup table, one measurement per key"
        ) from None
    if not isinstance(data, dict) or not data:
        raise TableError(
            f"{path} holds no lookup table (expected a mapping of block keys, got {type(data).__name__})",
            hint="pass an OFA or ProxylessNAS lookup table: `key: {count, mean, std}` or `key: {count, mean, var}`",
        )
    for key, stats in data.items():
        if not isinstance(stats, dict):
            raise TableError(
                f"{path}: the value of {key!r} is {type(stats).__name__}, not a mapping of statistics",
                hint="each key should map to {count, mean, std} (OFA) or {count, mean, var} (ProxylessNAS)",
            )
    return data, hashlib.sha256(raw).hexdigest()


def _detect(data: dict[str, dict[str, Any]], path: Path) -> Format:
    for fmt in FORMATS:
        if all(set(stats) == _STATS[fmt] for stats in data.values()):
            return fmt
    key, stats = next((k, s) for k, s in data.items() if set(s) not in _STATS.values())
    raise TableError(
        f"{path}: cannot tell the format: {key!r} has fields {sorted(stats)}",
        hint="OFA tables give {count, mean, std}, ProxylessNAS tables {count, mean, var}, for every key",
    )


def detect_format(path: Path) -> Format:
    """``"ofa"`` or ``"proxyless"``, from the statistics every entry gives."""
    data, _ = _load(path)
    return _detect(data, path)


def identify(path: Path) -> KnownSource | None:
    """The provenance of a published file this module knows by content, else None."""
    try:
        return KNOWN_FILES.get(hashlib.sha256(Path(path).read_bytes()).hexdigest())
    except OSError:
        return None


def _checked_stats(path: Path, key: str, stats: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """Count, mean and spread in ms, after checking each is a number of the right sign."""

    def bad(problem: str) -> TableError:
        return TableError(f"{path}: {key!r}: {problem}", hint="fix the entry or remove it from the file")

    count = stats["count"]
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise bad(f"count={count!r} should be a whole number >= 1")
    out: dict[str, Any] = {"n": count}
    spread = "std" if fmt == "ofa" else "var"
    for name in ("mean", spread):
        value = stats[name]
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise bad(f"{name}={value!r} should be a finite number >= 0")
    out["mean_ms"] = float(stats["mean"])
    out["std_ms"] = float(stats["std"]) if fmt == "ofa" else math.sqrt(stats["var"])
    return out


def _check_units(path: Path, data: dict[str, dict[str, Any]]) -> None:
    slowest = max(float(stats["mean"]) for stats in data.values())
    low, high = _PLAUSIBLE_MAX_MEAN_MS
    if not low <= slowest <= high:
        unit = "seconds" if slowest < low else "µs"
        raise TableError(
            f"{path}: the slowest block takes {slowest:g} 'ms', which looks like {unit}, not ms",
            hint="these formats hold milliseconds: convert the file to ms before importing it",
        )


def _resolution(data: dict[str, dict[str, Any]], given: int | None, path: Path) -> int | None:
    """The input resolution: the first conv's input size, which must agree with the one given."""
    stems = [parse_ofa_key(k) for k in data if k.split("-", 1)[0] == "Conv"]
    found = stems[0]["input_h"] if len(stems) == 1 and stems[0]["input_h"] == stems[0]["input_w"] else None
    if given is not None and found is not None and given != found:
        raise TableError(
            f"{path} is a table for resolution {found} (its first conv takes {found}x{found}), not {given}",
            hint=f"pass resolution {found}, or leave it out",
        )
    return given if given is not None else found


# -- import -------------------------------------------------------------------------------------------------------


def import_yaml(
    path: Path,
    table: LookupTable,
    *,
    device: str,
    source: str,
    format: Format | Literal["auto"] = "auto",
    resolution: int | None = None,
    backend: str = "imported",
    source_device: str | None = None,
) -> ImportReport:
    """Append every key of a published table that ``table`` lacks; re-importing the same file adds nothing.

    ``device`` names the device the numbers were measured on (the rows' ``device``),
    ``source`` where they come from ("owner/repo @ commit, path"). A table holds one
    file: importing a different file (or the same one with other provenance) into it
    is refused, since its keys could collide with other numbers for the same block.
    """
    path = Path(path)
    if not source or not source.strip():
        raise TableError(f"{path}: say where the numbers come from", hint="give source='owner/repo @ commit, path'")
    data, sha256 = _load(path)
    fmt = _detect(data, path)
    if format != "auto" and format != fmt:
        raise TableError(
            f"{path} is a {fmt} table (its entries give {', '.join(sorted(_STATS[fmt]))}), not {format}",
            hint=f"use format {fmt!r} or 'auto'",
        )
    try:
        parsed = {key: parse_ofa_key(key) for key in data}
    except TableError as err:
        raise TableError(f"{path}: {err.message}", hint=err.hint) from None
    stats = {key: _checked_stats(path, key, data[key], fmt) for key in data}
    _check_units(path, data)
    resolution = _resolution(data, resolution, path)
    source_device = source_device or device
    fixed = {
        "device": device,
        "runtime": None,  # the sources do not say which runtime measured them
        "runtime_version": None,
        "threads": None,
        "core_mask": None,
        "imported_from": source,
        "imported_sha256": sha256,
        "resolution": resolution,
        "statistic": _STATISTIC[fmt],
    }
    meta = {
        "device": device,
        "emulated": False,
        "backend": backend,
        "source": "imported",
        "imported_from": source,
        "imported_sha256": sha256,
        "source_device": source_device,
        "source_format": fmt,
        "statistic": _STATISTIC[fmt],
        "units": "ms",
        "resolution": resolution,
        "expand_unit": _EXPAND_UNIT[fmt],
        "samples": None,
        "note": "published means, not measured by hwlab: no raw samples, median unknown",
        "hwlab_version": hwlab.__version__,
    }
    table.open_for_append(fixed, meta)
    have = table.keys()
    report = ImportReport(path=path, format=fmt)
    imported_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    for key in data:
        if key in have:
            report.skipped.append(key)
            continue
        cols = parsed[key]
        row = Row(
            key=key,
            fields={
                **cols,
                "expand_unit": _EXPAND_UNIT[fmt] if cols["expand"] is not None else None,
                "mid": _mid(cols, fmt),
                "resolution": resolution,
            },
            status="ok",
            device=device,
            backend=backend,
            source="imported",
            source_device=source_device,
            imported_from=source,
            statistic=_STATISTIC[fmt],
            imported_at=imported_at,
            **stats[key],
        )
        report.rows.append(table.append(row, None))
    return report


def _mid(cols: dict[str, Any], fmt: Format) -> int | None:
    """The middle channel count: OFA writes it as ``expand``, ProxylessNAS writes the ratio to cin."""
    if cols["expand"] is None:
        return None
    return cols["expand"] if fmt == "ofa" else cols["expand"] * cols["cin"]


# The two source formats, with the format fixed (everything else as in import_yaml).
import_ofa_yaml = partial(import_yaml, format="ofa")
import_proxyless_yaml = partial(import_yaml, format="proxyless")


def export_ofa_yaml(table: LookupTable, path: Path) -> ExportReport:
    """Write ``table`` as an OFA lookup table (``key: {count, mean, std}``, ms) for tools that read that format.

    Keys are written as the table holds them. Only ok rows with a mean, std and
    count are written; the others are left out and named in the report, never
    written as zeros.
    """
    meta = table.meta()
    entries: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for row in table:
        key = row["key"]
        if row.get("status") != "ok":
            skipped[key] = f"status {row.get('status')}: {row.get('error')}"
            continue
        lacking = [col for col in ("mean_ms", "std_ms", "n") if row.get(col) is None]
        if lacking:
            skipped[key] = f"no {', '.join(lacking)}"
            continue
        entries[key] = {"count": int(row["n"]), "mean": float(row["mean_ms"]), "std": float(row["std_ms"])}
    origin = (
        f"imported from {meta.get('imported_from')} ({meta.get('source_device')})"
        if meta.get("source") == "imported"
        else "measured by hwlab"
    )
    header = (
        f"# OFA-format latency lookup table (ms), exported by hwlab {hwlab.__version__}\n"
        f"# table {'/'.join(table.folder.parts[-3:])}: {origin}\n"
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(entries, sort_keys=True, default_flow_style=False))
    return ExportReport(path=path, written=len(entries), skipped=skipped)

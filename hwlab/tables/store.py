"""Lookup tables on disk: append-only JSON lines that survive a kill at any moment.

A table is a folder ``tables/<device>/<backend>/<name>/`` holding

* ``ops.jsonl``     one row per op (``pandas.read_json(path, lines=True)`` reads it in one call),
* ``samples.jsonl`` the raw samples of each row, by key,
* ``meta.json``     runtime versions, device facts, the fixed measurement conditions.

Each row is one ``write`` of a whole line followed by ``fsync``, so a kill
leaves every finished row intact; at worst the last line is cut short, which
reading tolerates with a warning and the next writer repairs (the cut bytes are
kept aside, never silently dropped). ``meta.json`` is replaced atomically.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hwlab import jsonfile
from hwlab.errors import CorruptTailWarning, MissingKeyError, TableError, TableMismatch
from hwlab.names import inside, name_problem
from hwlab.tables.rows import Row, line_problem

FORMAT_VERSION = 1
ROWS = "ops.jsonl"
SAMPLES = "samples.jsonl"
ANCHORS = "anchors.jsonl"  # the anchor lines of every job that filled the table, as the device sent them
GRAPHS = "graphs.jsonl"  # what the runtime executed for each model, where the job captured it
SUPERSEDED = "superseded.jsonl"  # rows measured again (their floor never settled), kept as they were
META = "meta.json"


def write_json_atomic(path: Path, data: Any) -> None:
    """Replace ``path`` with ``data`` as JSON: readers see the old file or the new one, never half."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True, allow_nan=False)  # NaN and Infinity are not JSON
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def read_device_list(path: Path, key: str, hint: str) -> list[dict[str, Any]]:
    """The list of objects under ``key`` of a JSON file kept beside a device's tables (speed references,
    noise reports); none yet is an empty list, anything else unreadable is a TableError with ``hint``."""
    if not path.exists():
        return []
    try:
        data = jsonfile.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise TableError(f"cannot read {path}: {err}", hint=hint) from None
    entries = data.get(key) if isinstance(data, dict) else None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise TableError(f"{path} holds no list of {key!r} objects", hint=hint)
    return entries


def _read_lines(path: Path, check: Callable[[object], str | None] | None = None) -> tuple[list[dict[str, Any]], int]:
    """Parsed lines and the byte length of the intact prefix (the rest is a cut-off tail); ``check`` says
    what is wrong with a line that parses but cannot be used."""
    if not path.exists():
        return [], 0
    try:
        data = path.read_bytes()
    except OSError as err:
        raise TableError(f"cannot read {path}: {err.strerror or err}", hint="restore it, or move it aside") from None
    rows: list[dict[str, Any]] = []
    good = 0
    for raw in data.splitlines(keepends=True):
        try:
            if not raw.endswith(b"\n"):
                raise ValueError("no line end")
            line = jsonfile.loads(raw)
        except ValueError:
            if good + len(raw) < len(data):  # damage before the last line is not a cut-off tail
                raise TableError(
                    f"{path} is damaged at byte {good} (not just a cut-off last line)",
                    hint="restore it from a backup or move it aside and profile again",
                ) from None
            warnings.warn(
                f"{path}: the last line is cut short ({len(raw)} bytes, a profile killed mid-write); ignoring it",
                CorruptTailWarning,
                stacklevel=3,
            )
            break
        problem = check(line) if check else (None if isinstance(line, dict) and "key" in line else "has no key")
        if problem:
            raise TableError(
                f"{path}, line {len(rows) + 1}: {problem}",
                hint="restore the file from a backup, or move it aside and profile again",
            )
        rows.append(line)
        good += len(raw)
    return rows, good


def _append_line(path: Path, record: dict[str, Any]) -> None:
    line = (json.dumps(record, sort_keys=True, allow_nan=False) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def _repair_tail(path: Path, good: int) -> None:
    """Move a cut-off last line aside so the next append starts on a fresh line."""
    size = path.stat().st_size if path.exists() else 0
    if size <= good:
        return
    with open(path, "rb") as fh:
        fh.seek(good)
        tail = fh.read()
    aside = path.with_name(f"{path.name}.cut-{time.strftime('%Y%m%dT%H%M%S')}")
    aside.write_bytes(tail)
    with open(path, "r+b") as fh:
        fh.truncate(good)
        fh.flush()
        os.fsync(fh.fileno())


@dataclass(frozen=True)
class TableId:
    """Which table: a device, a backend and a table name (the space by default)."""

    device: str
    backend: str
    name: str

    def __post_init__(self) -> None:
        for what, value in (("device", self.device), ("backend", self.backend), ("table", self.name)):
            problem = name_problem(value)
            if problem:
                raise TableError(f"{what} {problem}", hint="tables are named DEVICE/BACKEND/NAME, each one safe name")

    def __str__(self) -> str:
        return f"{self.device}/{self.backend}/{self.name}"

    @classmethod
    def parse(cls, text: str) -> TableId:
        parts = text.strip("/").split("/")
        if len(parts) != 3 or not all(parts):
            raise TableError(
                f"{text!r} is not a table name", hint="write DEVICE/BACKEND/NAME, e.g. local/onnxruntime/spos"
            )
        return cls(*parts)


class LookupTable:
    """One table folder: read rows, append rows, look up an op by key."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self._rows: dict[str, dict[str, Any]] | None = None
        self._samples: dict[str, dict[str, Any]] | None = None
        self._graphs: dict[str, dict[str, Any]] | None = None

    @classmethod
    def at(cls, root: Path, table: TableId) -> LookupTable:
        """The table's folder under ``root``; it never resolves outside ``root``."""
        return cls(inside(Path(root), table.device, table.backend, table.name))

    @property
    def exists(self) -> bool:
        return (self.folder / META).exists()

    # -- metadata ---------------------------------------------------------------
    def meta(self) -> dict[str, Any]:
        path = self.folder / META
        try:
            meta = jsonfile.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TableError(
                f"no table at {self.folder}", hint="run `hwlab profile` first, or `hwlab tables list`"
            ) from None
        except OSError as err:
            raise TableError(f"cannot read {path}: {err.strerror or err}", hint="restore it or profile again") from None
        except ValueError as err:  # not JSON, or not UTF-8
            raise TableError(f"{path} is not valid JSON ({err})", hint="restore it or profile again") from None
        problem = _meta_problem(meta)
        if problem:
            raise TableError(f"{path}: {problem}", hint="restore it from a backup, or move the table aside")
        return meta

    def write_meta(self, meta: dict[str, Any]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.folder / META, {**meta, "format": FORMAT_VERSION})

    def open_for_append(self, fixed: dict[str, Any], meta: dict[str, Any]) -> None:
        """Create the table, or check that a resumed one was measured under the same fixed conditions.

        Rows measured with other threads, core mask or runtime version must not
        be mixed (pyperf refuses to merge runs whose fixed metadata differ).
        """
        if self.exists:
            old = self.meta().get("fixed", {})
            diff = {k: (old.get(k), v) for k, v in fixed.items() if old.get(k) != v}
            if diff:
                detail = ", ".join(f"{k}: table has {a!r}, now {b!r}" for k, (a, b) in diff.items())
                raise TableMismatch(
                    f"table {self.folder} was measured under other conditions ({detail})",
                    hint="use the table's settings to resume it, or write a new table with --table NAME",
                )
            meta = {**self.meta(), **meta, "fixed": fixed}
        else:
            meta = {**meta, "fixed": fixed, "created": _now()}
        for name in (ROWS, SAMPLES, GRAPHS):
            _, good = _read_lines(self.folder / name)
            _repair_tail(self.folder / name, good)
        self.write_meta({**meta, "updated": _now()})

    def check_measured_on(self, device: str, backend: str) -> None:
        """Refuse a table whose own metadata names another device or backend (a folder copied or renamed)."""
        meta = self.meta()
        found = (meta.get("device"), meta.get("backend"))
        if found != (device, backend):
            raise TableMismatch(
                f"table {self.folder} was measured on {found[0]}/{found[1]}, not {device}/{backend}",
                hint=f"profile it on {device}/{backend}, or pass --force to use it anyway",
            )

    # -- rows -----------------------------------------------------------------
    def rows(self) -> dict[str, dict[str, Any]]:
        """Rows by key; a key measured twice (a retry) keeps its latest row."""
        if self._rows is None:
            lines, _ = _read_lines(self.folder / ROWS, line_problem)
            self._rows = {row["key"]: row for row in lines}
        return self._rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.rows().values())

    def __len__(self) -> int:
        return len(self.rows())

    def keys(self, status: str | None = None) -> set[str]:
        return {k for k, r in self.rows().items() if status is None or r.get("status") == status}

    def append(
        self, row: Row, samples: dict[str, Any] | None = None, runtime_graph: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Persist one row (its raw samples and runtime graph first, so a row never lacks them); returns the
        line written."""
        line = row.to_json()
        if samples is not None:
            _append_line(self.folder / SAMPLES, {"key": row.key, **samples})
        if runtime_graph is not None:
            _append_line(self.folder / GRAPHS, {"key": row.key, **runtime_graph})
            self._graphs = None
        _append_line(self.folder / ROWS, line)
        if self._rows is not None:
            self._rows[row.key] = line
        if self._samples is not None and samples is not None:
            self._samples[row.key] = {"key": row.key, **samples}
        return line

    def append_anchor(self, result: dict[str, Any]) -> None:
        """Keep an anchor's result line (its raw samples included): the evidence of the table's speed factors."""
        _append_line(self.folder / ANCHORS, {**result, "received_at": _now()})

    def anchor_lines(self) -> list[dict[str, Any]]:
        return _read_lines(self.folder / ANCHORS)[0]

    def drop(self, keys: set[str]) -> None:
        """Rewrite the table without these rows (atomically), e.g. failed ops about to be retried."""
        kept = [r for r in _read_lines(self.folder / ROWS)[0] if r["key"] not in keys]
        tmp = self.folder / f".{ROWS}.tmp"
        with open(tmp, "w") as fh:
            fh.writelines(json.dumps(r, sort_keys=True) + "\n" for r in kept)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.folder / ROWS)
        self._rows = None

    def supersede(self, keys: set[str]) -> None:
        """Move these rows to ``superseded.jsonl`` (appended and synced first, so a kill loses none) and out
        of the table, to be measured again; their raw samples stay in ``samples.jsonl``."""
        if not keys:
            return
        for row in _read_lines(self.folder / ROWS)[0]:
            if row["key"] in keys:
                _append_line(self.folder / SUPERSEDED, row)
        self.drop(keys)

    def samples(self, key: str) -> dict[str, Any]:
        """The raw samples stored for an op (read on first use: they are the bulky part)."""
        if self._samples is None:
            self._samples = {line["key"]: line for line in _read_lines(self.folder / SAMPLES)[0]}
        if key not in self._samples:
            raise MissingKeyError(f"no raw samples for {key!r} in {self.folder}", hint="profile it again")
        return self._samples[key]

    def runtime_graphs(self) -> dict[str, dict[str, Any]]:
        """What the runtime executed, by key (the latest capture of each): its nodes, their in-graph times."""
        if self._graphs is None:
            self._graphs = {line["key"]: line for line in _read_lines(self.folder / GRAPHS)[0]}
        return self._graphs

    def lookup(self, key: str) -> dict[str, Any]:
        """The row of an op; a key the table lacks is an error that names it, never a silent 0."""
        row = self.rows().get(key)
        if row is None:
            raise MissingKeyError(
                f"op {key!r} is not in table {self.folder}",
                hint="profile the space that contains it (`hwlab profile ... --space NAME`)",
            )
        if row.get("status") != "ok":
            raise MissingKeyError(
                f"op {key!r} failed when profiled: {row.get('error')}",
                hint="fix and rerun with --retry-errors",
            )
        return row

    def latency_ms(self, key: str, stat: str = "median_ms") -> float:
        """One statistic of an op's latency; a row that lacks it is an error, never a silent 0."""
        row = self.lookup(key)
        if row.get(stat) is None:
            raise TableError(
                f"op {key!r} has no {stat} (measured by {row.get('runtime_module') or row.get('runtime')})",
                hint="ask for a statistic the row has, e.g. stat='mean_ms'",
            )
        return float(row[stat])

    def dataframe(self):  # type: ignore[no-untyped-def]
        """The rows as a pandas DataFrame (imported here: pandas is slow to import)."""
        import pandas as pd

        return pd.DataFrame(list(self.rows().values()))


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


# Each fixed condition (null where a source does not say it): what it must be, else why not.
_FIXED_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "device": lambda v: None if isinstance(v, str) else "a device name",
    "runtime": lambda v: None if isinstance(v, str) else "a runtime name",
    "runtime_version": lambda v: None if isinstance(v, str) else "a version text",
    "threads": lambda v: None if _whole(v) and v >= 1 else "a thread count >= 1",
    "core_mask": lambda v: (
        None if isinstance(v, list) and all(_whole(c) and c >= 0 for c in v) else "a list of CPU ids"
    ),
}


def _meta_problem(meta: object) -> str | None:
    """Why ``meta`` cannot be a table's metadata (None when it can)."""
    if not isinstance(meta, dict):
        return f"is {type(meta).__name__}, not a table's metadata object"
    version = meta.get("format", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        return f"format {version!r} is not one this hwlab reads (up to {FORMAT_VERSION}): upgrade hwlab"
    fixed = meta.get("fixed", {})
    if not isinstance(fixed, dict):
        return "'fixed' (the conditions every row was measured under) is not an object"
    for key, problem in _FIXED_CHECKS.items():
        if key in fixed and fixed[key] is not None and problem(fixed[key]):
            return f"fixed.{key} is {fixed[key]!r}, not {problem(fixed[key])}"
    for key in ("created", "updated", "device", "backend"):
        if key in meta and not isinstance(meta[key], str):
            return f"'{key}' is {type(meta[key]).__name__}, not text"
    return None


def list_tables(root: Path) -> list[TableId]:
    root = Path(root)
    found = []
    for meta in sorted(root.glob(f"*/*/*/{META}")):
        rel = meta.parent.relative_to(root).parts
        found.append(TableId(*rel))
    return found


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")

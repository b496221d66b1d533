"""Lookup tables: append, resume after a kill mid-write, a cut-off last line, metadata."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from hwlab.errors import CorruptTailWarning, InvalidRequest, MissingKeyError, TableError, TableMismatch
from hwlab.tables import LookupTable, TableId, list_tables
from hwlab.tables.rows import COLUMNS, Row

FIXED = {"device": "d", "runtime": "onnxruntime", "runtime_version": "1.0", "threads": 1, "core_mask": None}


def row(key: str, median: float = 1.0, status: str = "ok") -> Row:
    error = None if status == "ok" else "boom"
    return Row(key, {"op": "conv"}, status, "d", "onnxruntime", error=error, median_ms=median)


def new_table(tmp_path: Path) -> LookupTable:
    table = LookupTable.at(tmp_path, TableId("d", "onnxruntime", "spos"))
    table.open_for_append(FIXED, {"device": "d"})
    return table


def test_append_and_read_back_with_pandas(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    table.append(row("a", 1.5), {"samples_us": [1500.0, 1499.0], "block": 1})
    table.append(row("b", 2.5), {"samples_us": [2500.0], "block": 1})
    frame = pd.read_json(table.folder / "ops.jsonl", lines=True)
    assert list(frame["key"]) == ["a", "b"]
    assert list(frame["median_ms"]) == [1.5, 2.5]
    fresh = LookupTable(table.folder)
    assert fresh.latency_ms("b") == 2.5
    assert fresh.samples("a")["samples_us"] == [1500.0, 1499.0]
    assert list_tables(tmp_path) == [TableId("d", "onnxruntime", "spos")]


def test_every_row_has_every_column_so_pandas_sees_one_schema(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    table.append(row("a"))
    table.append(row("bad", status="error"))
    frame = pd.read_json(table.folder / "ops.jsonl", lines=True)
    assert set(frame.columns) == COLUMNS | {"op"}
    assert frame["power_w"].isna().all() and list(frame["source"]) == ["measured", "measured"]
    with pytest.raises(TableError, match="would overwrite the columns"):
        Row("k", {"median_ms": 1.0}, "ok", "d", "onnxruntime")


def test_missing_key_names_it(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    table.append(row("a"))
    table.append(row("bad", status="error"))
    with pytest.raises(MissingKeyError, match="'nope' is not in table"):
        table.lookup("nope")
    with pytest.raises(MissingKeyError, match="'bad' failed when profiled: boom"):
        table.lookup("bad")


def test_metadata_and_fixed_conditions(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    meta = table.meta()
    assert meta["fixed"] == FIXED and meta["format"] == 1 and meta["device"] == "d"
    assert "created" in meta and "updated" in meta
    again = LookupTable(table.folder)
    again.open_for_append(FIXED, {"device": "d"})  # same conditions: resumes
    assert again.meta()["created"] == meta["created"]
    with pytest.raises(TableMismatch, match="threads: table has 1, now 4"):
        again.open_for_append({**FIXED, "threads": 4}, {})


def test_a_table_copied_into_another_devices_folder_is_refused(tmp_path: Path) -> None:
    import shutil

    table = LookupTable.at(tmp_path, TableId("d", "onnxruntime", "spos"))
    table.open_for_append(FIXED, {"device": "d", "backend": "onnxruntime"})  # as profile writes it
    table.append(row("a"))
    copy = tmp_path / "other" / "onnxruntime" / "spos"
    shutil.copytree(table.folder, copy)
    LookupTable(table.folder).check_measured_on("d", "onnxruntime")
    with pytest.raises(TableMismatch, match="was measured on d/onnxruntime, not other/onnxruntime") as err:
        LookupTable(copy).check_measured_on("other", "onnxruntime")
    assert "--force" in str(err.value.hint)
    with pytest.raises(TableMismatch, match="device: table has 'd', now 'other'"):  # nor is it resumed there
        LookupTable(copy).open_for_append({**FIXED, "device": "other"}, {"device": "other"})


def test_cut_off_last_line_is_tolerated_then_repaired(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    table.append(row("a"))
    with open(table.folder / "ops.jsonl", "ab") as fh:
        fh.write(b'{"key": "b", "med')  # a kill in the middle of a write
    with pytest.warns(CorruptTailWarning, match="last line is cut short"):
        assert set(LookupTable(table.folder).keys()) == {"a"}
    resumed = LookupTable(table.folder)
    with pytest.warns(CorruptTailWarning):
        resumed.open_for_append(FIXED, {})
    resumed.append(row("b"))
    assert [json.loads(x)["key"] for x in (table.folder / "ops.jsonl").read_text().splitlines()] == ["a", "b"]
    kept = list(table.folder.glob("ops.jsonl.cut-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == b'{"key": "b", "med'


def test_damage_before_the_last_line_is_an_error(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    (table.folder / "ops.jsonl").write_text('{"key": "a"}\nGARBAGE\n{"key": "b"}\n')
    with pytest.raises(TableError, match="damaged at byte 13"):
        LookupTable(table.folder).rows()


def test_drop_rewrites_without_rows(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    for key in "abc":
        table.append(row(key))
    table.drop({"b"})
    assert LookupTable(table.folder).keys() == {"a", "c"}


WRITER = textwrap.dedent(
    """
    import sys
    from hwlab.tables import LookupTable
    from hwlab.tables.rows import Row
    table = LookupTable(sys.argv[1])
    i = 0
    while True:
        row = Row(f"op{i}", {}, "ok", "d", "onnxruntime", median_ms=float(i))
        table.append(row, {"samples_us": [1.0] * 2000})
        print(i, flush=True)
        i += 1
    """
)


def test_killed_writer_keeps_every_finished_row(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(table.folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    reported = [proc.stdout.readline() for _ in range(20)]  # twenty rows confirmed written
    assert reported == [f"{i}\n" for i in range(20)]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rows = LookupTable(table.folder).rows()
    assert {f"op{i}" for i in range(20)} <= set(rows)
    assert all(rows[f"op{i}"]["median_ms"] == float(i) for i in range(len(rows)))
    reread = LookupTable(table.folder)
    for key in rows:  # every row has its samples: they are written first
        assert reread.samples(key)["samples_us"][0] == 1.0


@pytest.mark.parametrize("text", ["../outside/t", "d/onnxruntime/..", "d/../t", "d/b/x y", "d/[b]/x"])
def test_table_names_never_leave_the_tables_folder(text: str) -> None:
    with pytest.raises(TableError, match="is not a safe name"):
        TableId.parse(text)


def test_a_link_that_leads_out_of_the_tables_folder_is_refused(tmp_path: Path) -> None:
    root, outside = tmp_path / "tables", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    (root / "d" / "onnxruntime").symlink_to(outside)
    with pytest.raises(InvalidRequest, match="leads outside"):
        LookupTable.at(root, TableId("d", "onnxruntime", "t"))


def test_metadata_that_is_a_folder_or_not_an_object_is_an_error_naming_it(tmp_path: Path) -> None:
    table = new_table(tmp_path)
    (table.folder / "meta.json").unlink()
    (table.folder / "meta.json").mkdir()
    with pytest.raises(TableError, match="cannot read .*meta.json"):
        LookupTable(table.folder).meta()
    (table.folder / "meta.json").rmdir()
    (table.folder / "meta.json").write_text("[1, 2]")
    with pytest.raises(TableError, match="is list, not a table's metadata object"):
        LookupTable(table.folder).meta()

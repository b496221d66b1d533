"""Import of published lookup tables (OFA note10, ProxylessNAS mobile) and export in OFA's format."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import yaml

from hwlab.cli import main
from hwlab.errors import MissingKeyError, TableError, TableMismatch
from hwlab.tables import LookupTable, TableId
from hwlab.tables.interop import (
    detect_format,
    export_ofa_yaml,
    identify,
    import_ofa_yaml,
    import_proxyless_yaml,
    parse_ofa_key,
)
from hwlab.tables.rows import Row

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"shared data folder {DATA} is absent")

UPSTREAM = "han-cai/files @ a7c9bcd525e17404968bc55aa43772bf7e51909e"
RESOLUTIONS = (160, 176, 192, 208, 224)
OFA_KEYS = 96  # per file: 91 expanded_conv + Conv, Conv_1, Conv_2, AvgPool2D, Logits
PROXYLESS_KEYS = 72  # 69 expanded_conv + Conv, Conv_1, Logits
PROXYLESS = DATA / "proxylessnas" / "mobile_trim.yaml"


def ofa_file(res: int) -> Path:
    return DATA / "ofa_note10" / f"{res}_lookup_table.yaml"


def table_at(root: Path, name: str) -> LookupTable:
    return LookupTable.at(root, TableId("note10", "imported", name))


def import_ofa(root: Path, res: int) -> LookupTable:
    table = table_at(root, f"ofa-{res}")
    import_ofa_yaml(
        ofa_file(res),
        table,
        device="Samsung Note10",
        source=f"{UPSTREAM}, ofa/note10/{res}_lookup_table.yaml",
        resolution=res,
    )
    return table


# -- keys ---------------------------------------------------------------------------------------------------------


def test_parse_every_key_kind() -> None:
    block = parse_ofa_key(
        "expanded_conv-input:112x112x24-output:112x112x24-expand:3-kernel:5-stride:1-idskip:1-se:0-hs:0"
    )
    assert block == {
        "op": "expanded_conv",
        **{"input_h": 112, "input_w": 112, "cin": 24, "output_h": 112, "output_w": 112, "cout": 24},
        **{"expand": 3, "kernel": 5, "stride": 1, "idskip": 1, "se": 0, "hs": 0},
    }
    proxyless = parse_ofa_key("expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:7-stride:2-idskip:0")
    assert (proxyless["expand"], proxyless["stride"], proxyless["se"], proxyless["hs"]) == (6, 2, None, None)
    stem = parse_ofa_key("Conv-input:224x224x3-output:112x112x32")
    assert (stem["op"], stem["cin"], stem["output_h"], stem["cout"], stem["kernel"]) == ("Conv", 3, 112, 32, None)
    pool = parse_ofa_key("AvgPool2D-input:7x7x1152-output:1x1x1152")
    assert (pool["input_h"], pool["output_h"], pool["cout"]) == (7, 1, 1152)
    logits = parse_ofa_key("Logits-input:1x1x1536-output:1000")
    assert (logits["cin"], logits["output_h"], logits["output_w"], logits["cout"]) == (1536, None, None, 1000)
    for name in ("Conv_1", "Conv_2"):
        assert parse_ofa_key(f"{name}-input:1x1x1152-output:1x1x1536")["op"] == name


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("bottleneck-input:56x56x64-output:56x56x256", "unknown block key"),
        ("Conv-input:224x224-output:112x112x32", "should be HxWxC"),
        ("Conv-input:224x224x3", "missing output"),
        ("Conv-input:224x224x3-output:112x112x32-kernel:3", "unknown field 'kernel'"),
        ("expanded_conv-input:7x7x192-output:7x7x192-expand:3-kernel:3-stride:1-idskip:2", "idskip=2"),
        ("expanded_conv-input:7x7x192-output:7x7x192-expand:3-kernel:3-stride:1-idskip:1-se:1", "or none"),
        ("expanded_conv-input:7x7x192-output:7x7x192-expand:x-kernel:3-stride:1-idskip:1", "not a whole number"),
        ("Logits-input:1x1x1536-output:1000-output:1000", "given twice"),
        ("", "non-empty"),
    ],
)
def test_bad_key_is_an_error_naming_it(key: str, problem: str) -> None:
    with pytest.raises(TableError, match=problem) as err:
        parse_ofa_key(key)
    assert key in str(err.value)


# -- import -------------------------------------------------------------------------------------------------------


@needs_data
@pytest.mark.parametrize("res", RESOLUTIONS)
def test_import_ofa_note10(tmp_path: Path, res: int) -> None:
    published = yaml.safe_load(ofa_file(res).read_text())
    assert detect_format(ofa_file(res)) == "ofa"
    table = import_ofa(tmp_path, res)
    assert len(published) == OFA_KEYS and len(table) == OFA_KEYS and table.keys("ok") == set(published)
    for key, stats in published.items():
        row = table.lookup(key)
        assert (row["mean_ms"], row["std_ms"], row["n"]) == (stats["mean"], stats["std"], stats["count"])
        assert row["median_ms"] is None and row["source"] == "imported" and row["resolution"] == res
    ops = [r["op"] for r in table]
    assert ops.count("expanded_conv") == 91
    assert {"Conv", "Conv_1", "Conv_2", "AvgPool2D", "Logits"} <= set(ops)
    assert table.lookup(f"Conv-input:{res}x{res}x3-output:{res // 2}x{res // 2}x24")["cout"] == 24
    assert all(0.005 < r["mean_ms"] < 10 for r in table)  # per-block ms on a phone


@needs_data
def test_ofa_values_cross_checked_and_provenance(tmp_path: Path) -> None:
    table = import_ofa(tmp_path, 160)
    row = table.lookup("expanded_conv-input:10x10x136-output:10x10x136-expand:408-kernel:3-stride:1-idskip:1-se:1-hs:1")
    assert (row["mean_ms"], row["std_ms"], row["n"]) == (0.86918, 0.013281099352086765, 100)
    assert (row["cin"], row["expand"], row["expand_unit"], row["mid"], row["kernel"]) == (136, 408, "channels", 408, 3)
    assert (row["se"], row["hs"], row["idskip"]) == (1, 1, 1)
    logits = table.lookup("Logits-input:1x1x1536-output:1000")
    assert (logits["mean_ms"], logits["n"]) == (0.656440881763527, 499)
    assert row["imported_from"] == f"{UPSTREAM}, ofa/note10/160_lookup_table.yaml"
    assert row["device"] == "Samsung Note10" and row["statistic"] == "mean/std/count"
    assert row["measured_at"] is None and row["imported_at"]
    with pytest.raises(MissingKeyError, match="no raw samples"):
        table.samples(row["key"])
    assert not (table.folder / "samples.jsonl").exists()
    with pytest.raises(TableError, match="has no median_ms"):
        table.latency_ms(row["key"])
    assert table.latency_ms(row["key"], "mean_ms") == 0.86918
    meta = table.meta()
    assert meta["source"] == "imported" and meta["imported_from"] == row["imported_from"]
    assert (meta["source_device"], meta["statistic"], meta["units"], meta["resolution"]) == (
        "Samsung Note10",
        "mean/std/count",
        "ms",
        160,
    )
    assert meta["fixed"]["imported_sha256"] == hashlib.sha256(ofa_file(160).read_bytes()).hexdigest()


@needs_data
def test_import_proxyless(tmp_path: Path) -> None:
    published = yaml.safe_load(PROXYLESS.read_text())
    assert detect_format(PROXYLESS) == "proxyless"
    table = table_at(tmp_path, "proxyless")
    report = import_proxyless_yaml(
        PROXYLESS,
        table,
        device="unnamed phone",
        source=f"{UPSTREAM}, proxylessnas/mobile_trim.yaml",
    )
    assert len(published) == PROXYLESS_KEYS and len(report.rows) == PROXYLESS_KEYS and len(table) == PROXYLESS_KEYS
    for key, stats in published.items():
        row = table.lookup(key)
        assert row["mean_ms"] == stats["mean"] and row["n"] == stats["count"]
        assert row["std_ms"] == pytest.approx(math.sqrt(stats["var"]), rel=1e-15)
    row = table.lookup("expanded_conv-input:112x112x16-output:56x56x24-expand:6-kernel:7-stride:2-idskip:0")
    assert (row["mean_ms"], row["n"]) == (22.104676829268296, 164)
    assert (row["expand"], row["expand_unit"], row["mid"], row["se"], row["hs"]) == (6, "ratio", 96, None, None)
    assert table.lookup("Conv-input:224x224x3-output:112x112x32")["mean_ms"] == 4.083755600814664
    meta = table.meta()
    assert (meta["statistic"], meta["resolution"], meta["source_device"]) == ("mean/var/count", 224, "unnamed phone")
    assert row["source"] == "imported" and row["median_ms"] is None


@needs_data
def test_reimport_is_idempotent_and_other_files_are_refused(tmp_path: Path) -> None:
    table = import_ofa(tmp_path, 224)
    again = import_ofa_yaml(
        ofa_file(224), table, device="Samsung Note10", source=f"{UPSTREAM}, ofa/note10/224_lookup_table.yaml"
    )
    assert again.rows == [] and len(again.skipped) == OFA_KEYS
    assert len((table.folder / "ops.jsonl").read_text().splitlines()) == OFA_KEYS
    with pytest.raises(TableMismatch, match="imported_sha256"):  # 208 shares keys with 224 (other numbers)
        import_ofa_yaml(ofa_file(208), table, device="Samsung Note10", source=f"{UPSTREAM}, ofa/note10/208.yaml")


@needs_data
def test_wrong_format_and_resolution_are_refused(tmp_path: Path) -> None:
    with pytest.raises(TableError, match="is a proxyless table"):
        import_ofa_yaml(PROXYLESS, table_at(tmp_path, "x"), device="d", source="s")
    with pytest.raises(TableError, match="resolution 160"):
        import_ofa_yaml(ofa_file(160), table_at(tmp_path, "y"), device="d", source="s", resolution=224)
    with pytest.raises(TableError, match="where the numbers come from"):
        import_ofa_yaml(ofa_file(160), table_at(tmp_path, "z"), device="d", source=" ")


def flat(text: str) -> str:
    """Console output with rich's line wrapping undone."""
    return " ".join(text.split())


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bad_files_are_clear_errors(tmp_path: Path) -> None:
    table = table_at(tmp_path, "bad")
    good = "Conv-input:224x224x3-output:112x112x32: {count: 10, mean: 4.0, std: 0.1}\n"
    cases = {
        "not valid YAML": "a: [1,\n",
        "holds no lookup table": "- 1\n- 2\n",
        "not a mapping of statistics": "Conv-input:224x224x3-output:112x112x32: 4.0\n",
        "cannot tell the format": "Conv-input:224x224x3-output:112x112x32: {count: 1, mean: 4.0}\n",
        "appears twice": good + good,
        "unknown block key": "Pool-input:7x7x3-output:1x1x3: {count: 1, mean: 4.0, std: 0.1}\n",
        "should be a finite number": "Conv-input:224x224x3-output:112x112x32: {count: 1, mean: .nan, std: 0.1}\n",
        "count=0": "Conv-input:224x224x3-output:112x112x32: {count: 0, mean: 4.0, std: 0.1}\n",
        "looks like seconds": "Conv-input:224x224x3-output:112x112x32: {count: 9, mean: 0.004, std: 0.0001}\n",
        "looks like µs": "Conv-input:224x224x3-output:112x112x32: {count: 9, mean: 40000.0, std: 1.0}\n",
    }
    for i, (problem, text) in enumerate(cases.items()):
        path = write(tmp_path / f"bad{i}.yaml", text)
        with pytest.raises(TableError, match=problem) as err:
            import_ofa_yaml(path, table, device="d", source="s")
        assert str(path) in str(err.value)
    with pytest.raises(TableError, match="cannot read"):
        detect_format(tmp_path / "missing.yaml")
    assert not table.exists  # nothing half-imported


# -- export -------------------------------------------------------------------------------------------------------


@needs_data
def test_round_trip_export_reads_back_the_same_numbers(tmp_path: Path) -> None:
    table = import_ofa(tmp_path, 192)
    out = tmp_path / "out" / "192.yaml"
    report = export_ofa_yaml(table, out)
    assert report.written == OFA_KEYS and report.skipped == {}
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(ofa_file(192).read_text())
    assert "imported from han-cai/files" in out.read_text().splitlines()[1]
    again = table_at(tmp_path, "again")
    import_ofa_yaml(out, again, device="Samsung Note10", source="exported copy")
    assert {r["key"]: r["mean_ms"] for r in again} == {r["key"]: r["mean_ms"] for r in table}


def test_export_skips_failed_and_incomplete_rows(tmp_path: Path) -> None:
    table = LookupTable.at(tmp_path, TableId("local", "onnxruntime", "t"))
    table.open_for_append({"device": "local"}, {"device": "local"})
    key = "conv-input:8x8x4-output:8x8x4-kernel:3-stride:1-groups:1"
    table.append(Row(key, {}, "ok", "d", "onnxruntime", median_ms=0.5, mean_ms=0.52, std_ms=0.01, n=50))
    table.append(Row("gap-input:8x8x4-output:1x1x4", {}, "error", "d", "onnxruntime", error="boom"))
    table.append(Row("fc-input:1x1x4-output:1x1x8", {}, "ok", "d", "onnxruntime", mean_ms=0.1, std_ms=None, n=5))
    report = export_ofa_yaml(table, tmp_path / "t.yaml")
    assert report.written == 1
    assert report.skipped == {
        "gap-input:8x8x4-output:1x1x4": "status error: boom",
        "fc-input:1x1x4-output:1x1x8": "no std_ms",
    }
    text = (tmp_path / "t.yaml").read_text()
    assert yaml.safe_load(text) == {key: {"count": 50, "mean": 0.52, "std": 0.01}}
    assert "measured by hwlab" in text


# -- CLI ----------------------------------------------------------------------------------------------------------


@needs_data
def test_cli_import_and_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert identify(ofa_file(224)) is not None and identify(PROXYLESS) is not None
    tables = str(tmp_path / "tables")
    argv = ["tables", "import", *map(str, (ofa_file(r) for r in RESOLUTIONS)), str(PROXYLESS)]
    assert main([*argv, "--device", "note10", "--tables-dir", tables, "--json"]) == 0
    done = json.loads(capsys.readouterr().out)
    assert [d["added"] for d in done] == [OFA_KEYS] * 5 + [PROXYLESS_KEYS]
    assert done[-1]["table"] == "note10/imported/proxylessnas-mobile" and done[-1]["format"] == "proxyless"
    assert done[0]["imported_from"] == f"{UPSTREAM}, ofa/note10/160_lookup_table.yaml"
    table = table_at(tmp_path / "tables", "ofa-note10-224")
    assert table.meta()["source_device"] == "Samsung Note10" and table.meta()["device"] == "note10"

    assert main([*argv[:3], "--device", "note10", "--tables-dir", tables, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["skipped"] == OFA_KEYS

    out = tmp_path / "note10_224.yaml"
    rc = main(
        [
            "tables",
            "export",
            "note10/imported/ofa-note10-224",
            "--format",
            "ofa",
            "-o",
            str(out),
            "--tables-dir",
            tables,
        ]
    )
    assert rc == 0 and "96 rows" in flat(capsys.readouterr().out)
    assert yaml.safe_load(out.read_text()) == yaml.safe_load(ofa_file(224).read_text())


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = str(tmp_path / "tables")
    unknown = write(tmp_path / "mine.yaml", "Conv-input:224x224x3-output:112x112x32: {count: 9, mean: 4.0, std: 0.1}\n")
    assert main(["tables", "import", str(unknown), "--device", "d", "--tables-dir", tables]) == 1
    assert "provenance is unknown" in flat(capsys.readouterr().err)
    rc = main(
        ["tables", "import", str(unknown), "--device", "d", "--source", "me @ 0, mine.yaml", "--tables-dir", tables]
    )
    assert rc == 0 and "d/imported/mine: 1 rows added" in flat(capsys.readouterr().out)
    assert main(["tables", "import", str(unknown), str(unknown), "--table", "x", "--device", "d", "--source", "s"]) == 1
    assert "--table names one table" in flat(capsys.readouterr().err)
    broken = write(tmp_path / "broken.yaml", "Conv-input:224x224x3: {count: 9, mean: 4.0, std: 0.1}\n")
    assert main(["tables", "import", str(broken), "--device", "d", "--source", "s", "--tables-dir", tables]) == 1
    assert "malformed block key 'Conv-input:224x224x3'" in flat(capsys.readouterr().err)
    rc = main(
        [
            "tables",
            "export",
            "d/imported/none",
            "--format",
            "ofa",
            "-o",
            str(tmp_path / "o.yaml"),
            "--tables-dir",
            tables,
        ]
    )
    assert rc == 1 and "no table d/imported/none" in flat(capsys.readouterr().err)

"""Jobs measured at different speeds of the machine sit on one scale through the anchors; old rows say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hwlab_runner.rounds import Member, RoundRule, measure_rounds
from simulated_machine import Machine

from hwlab.cli import main
from hwlab.measure.anchors import ANCHORS, anchor_module, is_anchor
from hwlab.measure.speed import REFERENCE_FILE, Setting, SpeedScale, reference_for, speed_factor
from hwlab.tables import LookupTable, TableId
from hwlab.tables.rows import Row, row_from_result, uncorrected_note

RULE = RoundRule(min_rounds=5, max_rounds=5, ci_rel=None, visit_min_time_s=1e-5, visit_warmup=1)
ANCHOR_BASES = {"anchor:conv": 4000, "anchor:dwsep": 2500, "anchor:fc": 900}
MODEL_BASES = {"k1": 1000, "k2": 6000, "k3": 15000}
SETTING = Setting("onnxruntime", "1.0", 1, None)


def job_lines(speeds: list[float], models: dict[str, int]) -> list[dict]:  # type: ignore[type-arg]
    """The lines a runner writes for one group measured on a machine with these round speeds."""
    machine = Machine(speeds)
    bases = {**ANCHOR_BASES, **models}
    members = {key: Member(machine.model(base)) for key, base in bases.items()}
    result = measure_rounds(members, RULE, 1e-6, 0, clock=machine.clock, on_round=machine.on_round)
    lines = []
    for key in bases:
        c = result.corrected[key]
        raw = sorted(result.members[key].samples_us)
        lines.append({"key": key, "status": "ok", "anchor": is_anchor(key), "schedule": "rounds",
                      "summary": {"n": len(raw), "median_us": raw[len(raw) // 2]},
                      "rounds": {"group": 0, "n": 5, "corrected_median_us": c.median_us, "ci_rel": c.ci_rel,
                                 "spread_rel": c.spread_rel}})  # fmt: skip
    return lines


def rows_of(lines: list[dict], scale: SpeedScale) -> dict[str, Row]:  # type: ignore[type-arg]
    rows = {}
    for line in lines:
        if line["anchor"]:
            scale.add_anchor(line)
            continue
        rows[line["key"]], _ = row_from_result(line, line["key"], {}, device="d", backend="onnxruntime",
                                               emulated=False, speed_factor=scale.factor_for(line))  # fmt: skip
    return rows


def test_two_jobs_at_different_speeds_align_through_the_anchors(tmp_path: Path) -> None:
    # Yesterday: kernels k1, k2 at the machine's usual speed. Today: k2 and k3, the machine 30 % slower
    # and drifting within the job. Each job's figures are divided by its anchors' speed against the
    # reference yesterday's job set, so k2 reads the same both days and k3 is on yesterday's scale.
    yesterday = SpeedScale(tmp_path, "d", SETTING, set_by="d/onnxruntime/kernels")
    first = rows_of(job_lines([1.0, 1.02, 0.98, 1.0, 1.01], {k: MODEL_BASES[k] for k in ("k1", "k2")}), yesterday)
    assert "this run set the reference speed" in str(yesterday.note)
    assert (tmp_path / "d" / REFERENCE_FILE).exists()
    assert first["k1"].speed_factor == 1.0 and first["k1"].correction == "rounds+anchors"
    today = SpeedScale(tmp_path, "d", SETTING, set_by="d/onnxruntime/models")
    second = rows_of(job_lines([1.3, 1.4, 1.25, 1.3, 1.35], {k: MODEL_BASES[k] for k in ("k2", "k3")}), today)
    assert today.note is None  # the reference was there: it is used, never rewritten
    assert second["k2"].speed_factor == pytest.approx(1.3 / 1.0, rel=1e-9)
    assert second["k2"].median_ms == pytest.approx(first["k2"].median_ms, rel=1e-6)
    assert second["k3"].median_ms / first["k1"].median_ms == pytest.approx(15.0, rel=1e-5)
    assert second["k2"].raw_median_ms > 1.25 * first["k2"].raw_median_ms  # raw figures kept beside


def test_a_reference_belongs_to_one_setting(tmp_path: Path) -> None:
    rows_of(job_lines([1.0] * 5, {"k1": 1000}), SpeedScale(tmp_path, "d", SETTING, set_by="t"))
    two_threads = Setting("onnxruntime", "1.0", 2, None)
    assert reference_for(tmp_path, "d", SETTING) is not None and reference_for(tmp_path, "d", two_threads) is None
    assert speed_factor({"a": 2.0, "b": 3.0, "c": 8.0}, {"a": 1.0, "b": 1.0, "c": 1.0, "x": 5.0}) == pytest.approx(3.0)
    assert speed_factor({"a": 2.0}, {"b": 1.0}) is None


def test_rows_without_anchors_say_they_are_off_the_reference_scale(tmp_path: Path) -> None:
    scale = SpeedScale(tmp_path, "d", SETTING, set_by="t")
    models_only = [line for line in job_lines([1.0] * 5, {"k1": 1000}) if not line["anchor"]]
    row = rows_of(models_only, scale)["k1"]
    assert row.speed_factor is None and row.correction == "rounds" and "no anchor was measured" in str(scale.note)
    assert "had no anchor measured with them" in str(uncorrected_note([row.to_json()]))


def test_an_old_table_without_corrected_columns_reads_with_a_note(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "local" / "onnxruntime" / "old"
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"format": 1, "device": "local", "backend": "onnxruntime"}))
    (folder / "ops.jsonl").write_text(json.dumps({"key": "conv", "status": "ok", "median_ms": 0.5, "n": 40}) + "\n")
    table = LookupTable.at(tmp_path, TableId("local", "onnxruntime", "old"))
    assert table.latency_ms("conv") == 0.5
    assert main(["tables", "show", "local/onnxruntime/old", "--tables-dir", str(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "1 of 1 rows were measured before drift correction: their median_ms is the raw median" in out


def test_anchors_are_the_same_modules_everywhere() -> None:
    import torch

    for anchor in ANCHORS:
        (one, x1), (two, x2) = anchor_module(anchor), anchor_module(anchor)
        weights = zip(one.state_dict().values(), two.state_dict().values(), strict=True)
        assert torch.equal(x1, x2) and all(torch.equal(a, b) for a, b in weights)

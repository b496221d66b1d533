"""Jobs measured in different states of the machine sit on one scale through the anchors, each model moved
by its own sensitivity; old rows say so."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
from hwlab_runner.rounds import Member, RoundRule, measure_rounds
from simulated_machine import Machine

from hwlab.cli import main
from hwlab.measure.anchors import ANCHORS, anchor_module, is_anchor
from hwlab.measure.speed import REFERENCE_FILE, Setting, SpeedScale, grain_line, reference_for, state_shift
from hwlab.tables import LookupTable, TableId
from hwlab.tables.rows import Row, row_from_result, uncorrected_note

RULE = RoundRule(min_rounds=5, max_rounds=5, ci_rel=None, visit_min_time_s=1e-5, visit_warmup=1)
# (base ns, sensitivity): a busy machine slows fine-grained work (many tiny kernels) more than coarse work.
ANCHOR_BASES = {"anchor:chain": (900, 2.0), "anchor:dwsep": (2500, 1.0), "anchor:large": (40000, 0.5)}
MODEL_BASES = {"k1": (1000, 1.6), "k2": (6000, 1.0), "k3": (15000, 0.6)}
SETTING = Setting("onnxruntime", "1.0", 1, None)


def job_lines(speeds: list[float], models: dict[str, tuple[int, float]]) -> list[dict]:  # type: ignore[type-arg]
    """The lines a runner writes for one group measured on a machine with these round speeds."""
    machine = Machine(speeds)
    bases = {**ANCHOR_BASES, **models}
    members = {key: Member(machine.model(base, sensitivity)) for key, (base, sensitivity) in bases.items()}
    result = measure_rounds(members, RULE, 1e-6, 0, clock=machine.clock, on_round=machine.on_round,
                            anchors=list(ANCHOR_BASES))  # fmt: skip
    lines = []
    for key in bases:
        c = result.corrected[key]
        raw = sorted(result.members[key].samples_us)
        lines.append({"key": key, "status": "ok", "anchor": is_anchor(key), "schedule": "rounds",
                      "summary": {"n": len(raw), "median_us": raw[len(raw) // 2]},
                      "rounds": {"group": 0, "n": 5, "corrected_median_us": c.median_us, "ci_rel": c.ci_rel,
                                 "spread_rel": c.spread_rel, "sensitivity": c.sensitivity,
                                 "floor_us": c.floor.us, "floor_ci_rel": c.floor.ci_rel}})  # fmt: skip
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


def test_two_jobs_in_different_states_align_through_the_anchors(tmp_path: Path) -> None:
    # Yesterday: kernels k1, k2 with the machine quiet in three rounds of five. Today: k1 and k3, the
    # machine never quiet (at best 1.3, so k1, of sensitivity 1.6, runs 1.3^1.6 = 52 % slower and k3, of
    # 0.6, 17 %) and drifting within the job. Each model is divided by exp(its sensitivity x its group's
    # shift against the reference yesterday's job set), so k1 reads the same both days and k3 is on
    # yesterday's scale.
    yesterday = SpeedScale(tmp_path, "d", SETTING, set_by="d/onnxruntime/kernels")
    first = rows_of(job_lines([1.0, 1.2, 1.0, 1.0, 1.1], {k: MODEL_BASES[k] for k in ("k1", "k2")}), yesterday)
    assert "this run set the reference speed" in str(yesterday.note)
    assert (tmp_path / "d" / REFERENCE_FILE).exists()
    assert first["k1"].speed_factor == 1.0 and first["k1"].correction == "floor+anchors"
    today = SpeedScale(tmp_path, "d", SETTING, set_by="d/onnxruntime/models")
    second = rows_of(job_lines([1.3, 1.6, 1.3, 1.3, 1.45], {k: MODEL_BASES[k] for k in ("k1", "k3")}), today)
    assert today.note is None  # the reference was there: it is used, never rewritten
    assert second["k1"].raw_median_ms > 1.45 * first["k1"].raw_median_ms  # raw figures kept beside
    assert second["k1"].speed_factor == pytest.approx(1.3**1.6, rel=2e-3)
    assert second["k3"].speed_factor == pytest.approx(1.3**0.6, rel=2e-3)
    assert second["k1"].median_ms == pytest.approx(first["k1"].median_ms, rel=2e-3)
    assert second["k3"].median_ms / first["k2"].median_ms == pytest.approx(15000 / 6000, rel=2e-3)


def test_two_jobs_align_by_grain_where_node_counts_are_known(tmp_path: Path) -> None:
    """Today the machine slows each model by a factor set by its time per node (log-linear, as measured
    here): the anchors' line moves every model back onto yesterday's scale exactly, without the rounds'
    sensitivities; a model finer or coarser than every anchor gets the nearest anchor's factor."""
    nodes = {"anchor:chain": 24, "anchor:dwsep": 3, "anchor:large": 1, "fine": 30, "coarse": 1, "k2": 2}
    grain_of = {"anchor:chain": (900, 1.0), "anchor:dwsep": (2500, 1.0), "anchor:large": (40000, 1.0),
                "fine": (700, 1.0), "coarse": (90000, 1.0), "k2": (6000, 1.0)}  # fmt: skip

    def slowdown(key: str) -> float:  # 2x at 0.0375 µs a node, less by 0.1 in log per e-fold of grain
        grain = math.log(grain_of[key][0] / 1000 / nodes[key])
        return math.exp(0.4 - 0.1 * grain)

    lines = job_lines([1.0] * 5, {k: grain_of[k] for k in ("fine", "coarse", "k2")})
    yesterday = SpeedScale(tmp_path, "d", SETTING, set_by="y", nodes=nodes)
    first = rows_of(lines, yesterday)
    slowed = json.loads(json.dumps(lines))
    for line in slowed:
        line["rounds"]["floor_us"] *= slowdown(line["key"])
    second = rows_of(slowed, SpeedScale(tmp_path, "d", SETTING, set_by="t", nodes=nodes))
    assert second["k2"].speed_factor == pytest.approx(slowdown("k2"), rel=1e-5)
    assert second["k2"].median_ms == pytest.approx(first["k2"].median_ms, rel=1e-5)
    chain, large = slowdown("anchor:chain"), slowdown("anchor:large")
    assert second["fine"].speed_factor == pytest.approx(chain, rel=1e-5)  # finer than every anchor: clipped
    assert second["coarse"].speed_factor == pytest.approx(large, rel=1e-5)
    assert grain_line({"a": 2.0}, {"a": 1.0}, {"a": 1}) is None  # one grain tells no line


def test_a_reference_belongs_to_one_setting(tmp_path: Path) -> None:
    rows_of(job_lines([1.0] * 5, {"k1": (1000, 1.0)}), SpeedScale(tmp_path, "d", SETTING, set_by="t"))
    two_threads = Setting("onnxruntime", "1.0", 2, None)
    assert reference_for(tmp_path, "d", SETTING) is not None and reference_for(tmp_path, "d", two_threads) is None
    shift = state_shift({"a": 2.0, "b": 4.0}, {"a": 1.0, "b": 1.0, "x": 5.0}, {"a": 1.0, "b": 2.0})
    assert shift == pytest.approx(math.log(2.0), rel=1e-12)  # a: 2 = e^(1 x ln 2), b: 4 = e^(2 x ln 2)
    assert state_shift({"a": 2.0}, {"b": 1.0}) is None


def test_a_reference_of_medians_is_never_mixed_with_floors(tmp_path: Path) -> None:
    """A reference an older hwlab set holds its anchors' medians in a median state: floors of today's jobs
    against it would read as a faster machine. It is kept, and a floor reference starts beside it."""
    older = {**asdict(SETTING), "anchors_us": {"anchor:dwsep": 3.0}, "set_by": "old", "set_at": "then"}
    del older["statistic"]
    path = tmp_path / "d" / REFERENCE_FILE
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"format": 1, "references": [older]}))
    assert reference_for(tmp_path, "d", SETTING) is None
    scale = SpeedScale(tmp_path, "d", SETTING, set_by="today")
    rows_of(job_lines([1.0] * 5, {"k1": (1000, 1.0)}), scale)
    assert "this run set the reference speed" in str(scale.note)
    entries = json.loads(path.read_text())["references"]
    assert [e.get("statistic") for e in entries] == [None, "floor"]


def test_rows_without_anchors_say_they_are_off_the_reference_scale(tmp_path: Path) -> None:
    scale = SpeedScale(tmp_path, "d", SETTING, set_by="t")
    models_only = [line for line in job_lines([1.0] * 5, {"k1": (1000, 1.0)}) if not line["anchor"]]
    row = rows_of(models_only, scale)["k1"]
    assert row.speed_factor is None and row.correction == "floor" and "no anchor was measured" in str(scale.note)
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

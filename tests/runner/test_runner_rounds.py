"""Interleaved rounds: drift divided out exactly on a simulated machine, a seeded visiting order, a
model that fails mid-way, the job's rounds and anchors fields, and a real job through the runner."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hwlab_runner import PROTOCOL_VERSION
from hwlab_runner.job import JobError, parse_job
from hwlab_runner.rounds import FLOOR_VISITS, Member, RoundRule, correct, floors, measure_rounds, median_polish
from simulated_machine import Machine

RUNNERS = str(Path(__file__).resolve().parents[2] / "runners")


RULE = RoundRule(min_rounds=5, max_rounds=5, ci_rel=None, visit_min_time_s=1e-5, visit_min_samples=3, visit_warmup=2)
BASES = {"a": 1000, "b": 3000, "c": 7000, "d": 20000}
SPEEDS = [1.0, 1.25, 0.8, 1.5, 1.1]  # the machine's common speed in each round: median 1.1


def run_rounds(speeds: list[float], seed: int = 0, bases: dict[str, int] = BASES):  # type: ignore[no-untyped-def]
    machine = Machine(speeds)
    members = {key: Member(machine.model(base)) for key, base in bases.items()}
    return measure_rounds(members, RULE, 1e-6, seed, clock=machine.clock, on_round=machine.on_round)


def test_a_known_drift_is_divided_out_exactly() -> None:
    result = run_rounds(SPEEDS)
    assert result.stop_reason == "max_rounds" and len(result.order) == 5
    # Each round's factor is its speed over the median speed; each model's corrected median is its base
    # time at the median speed, with nothing left between rounds.
    assert result.factors == pytest.approx([s / 1.1 for s in SPEEDS], rel=1e-12)
    for key, base in BASES.items():
        member, corrected = result.members[key], result.corrected[key]
        assert member.visit_us == pytest.approx([base * s / 1000 for s in SPEEDS], rel=1e-12)
        assert corrected.median_us == pytest.approx(base * 1.1 / 1000, rel=1e-12)
        assert corrected.spread_rel == pytest.approx(0.0, abs=1e-12) and corrected.ci_rel == pytest.approx(
            0.0, abs=1e-12
        )
        assert member.block == 1 and member.warmup_count == 5 * RULE.visit_warmup


def test_each_model_is_corrected_by_its_own_sensitivity_to_the_state() -> None:
    """A busy machine slows a model of tiny kernels (sensitivity 2) twice as much, in log terms, as the
    anchors (1); a large convolution (0.5) half as much. Each model's corrected median is its time in
    the group's median state, exactly, and its sensitivity is recovered in the anchors' unit."""
    speeds = [1.0, 1.25, 0.8, 1.5, 1.1, 0.9, 1.2]  # median 1.1
    models = {"anchor:a": (1000, 1.0), "fine": (3000, 2.0), "coarse": (7000, 0.5), "anchor:b": (20000, 1.0)}
    machine = Machine(speeds)
    members = {key: Member(machine.model(base, beta)) for key, (base, beta) in models.items()}
    rule = RoundRule(min_rounds=7, max_rounds=7, ci_rel=None, visit_min_time_s=1e-5, visit_warmup=1)
    result = measure_rounds(members, rule, 1e-6, 0, clock=machine.clock, on_round=machine.on_round,
                            anchors=["anchor:a", "anchor:b"])  # fmt: skip
    assert result.factors == pytest.approx([s / 1.1 for s in speeds], rel=1e-9)
    for key, (base, beta) in models.items():
        corrected = result.corrected[key]
        assert corrected.median_us == pytest.approx(base * 1.1**beta / 1000, rel=1e-4)  # a call is whole ns
        assert corrected.sensitivity == pytest.approx(beta, rel=5e-3)
        assert corrected.spread_rel < 2e-3
    # One common factor (median polish) leaves the fine model's extra swings between rounds:
    table = [[math.log(v) for v in result.members[k].visit_us] for k in models]
    _, _, states = median_polish(table)  # type: ignore[arg-type]
    fine = [v - s for v, s in zip(table[1], states, strict=True)]
    assert max(fine) - min(fine) > 0.3


def test_a_quiet_machine_leaves_every_sensitivity_at_one() -> None:
    visits = {k: [b * s for s in (1.0, 1.0001, 0.9999, 1.0, 1.0)] for k, b in BASES.items()}
    visits["a"][1] *= 1.0003  # a little noise where the state hardly moves: no slope can be told
    _, corrected = correct(visits)
    assert all(c.sensitivity == pytest.approx(1.0, abs=0.2) for c in corrected.values())


def test_visiting_order_is_seeded_and_reproducible() -> None:
    first, again, other = run_rounds(SPEEDS, seed=7), run_rounds(SPEEDS, seed=7), run_rounds(SPEEDS, seed=8)
    assert first.order == again.order != other.order
    assert all(sorted(round_) == sorted(BASES) for round_ in first.order)
    assert len({tuple(r) for r in first.order}) > 1  # a fresh order each round, not one order repeated


def test_noise_on_one_model_stays_in_its_ci_not_in_the_others() -> None:
    # Model "a" alone is disturbed in round 3 (x2): a round factor is a median over models, so the others
    # stay exact; "a"'s corrected median is unmoved and only its spread shows the disturbance.
    visits = {k: [b * s for s in SPEEDS] for k, b in BASES.items()}
    visits["a"][2] *= 2.0
    factors, corrected = correct(visits)
    assert factors == pytest.approx([s / 1.1 for s in SPEEDS], rel=1e-12)
    assert corrected["b"].median_us == pytest.approx(3000 * 1.1, rel=1e-12)
    assert corrected["a"].median_us == pytest.approx(1000 * 1.1, rel=1e-12)
    assert corrected["a"].spread_rel > corrected["b"].spread_rel == 0.0


def test_median_polish_recovers_an_additive_table() -> None:
    rows, cols = [0.5, -1.0, 2.0, 0.0], [0.2, -0.3, 0.0, 0.1, -0.1]
    table = [[3.0 + r + c for c in cols] for r in rows]
    overall, row_eff, col_eff = median_polish(table)  # type: ignore[arg-type]
    fitted = [overall + r + c for r in row_eff for c in col_eff]
    assert fitted == pytest.approx([v for row in table for v in row], abs=1e-12)
    assert sorted(col_eff)[2] == pytest.approx(0.0, abs=1e-12)


def test_a_model_that_fails_mid_way_leaves_the_group() -> None:
    machine = Machine(SPEEDS)
    calls = {"n": 0}

    def flaky() -> None:
        calls["n"] += 1
        if calls["n"] > 20:
            raise RuntimeError("device lost")
        machine.now += 5000

    members = {key: Member(machine.model(base)) for key, base in BASES.items()}
    members["flaky"] = Member(flaky)
    result = measure_rounds(members, RULE, 1e-6, 0, clock=machine.clock, on_round=machine.on_round)
    assert result.members["flaky"].error == "RuntimeError: device lost"
    assert "flaky" not in result.corrected and set(result.corrected) == set(BASES)
    assert result.corrected["c"].median_us == pytest.approx(7.7, rel=1e-12)


def test_rounds_stop_once_every_ci_is_narrow() -> None:
    rule = RoundRule(min_rounds=3, max_rounds=30, ci_rel=0.01, visit_min_time_s=1e-5, visit_warmup=0)
    machine = Machine([1.0] * 30)
    members = {key: Member(machine.model(base)) for key, base in BASES.items()}
    result = measure_rounds(members, rule, 1e-6, 0, clock=machine.clock, on_round=machine.on_round)
    assert result.stop_reason == "ci" and len(result.order) == 3  # no drift, no noise: narrow at once


def test_the_floor_is_each_model_in_the_machines_quiet_state_exactly() -> None:
    """Disturbance only adds time: rounds at 1.0 are the quiet state, whatever the others did, and every
    model's floor is its base time there, however sensitive it is to the disturbances."""
    speeds = [1.3, 1.0, 1.6, 1.0, 1.2, 1.0, 1.45, 1.1]
    models = {"anchor:a": (1000, 1.0), "fine": (3000, 2.0), "coarse": (7000, 0.5)}
    machine = Machine(speeds)
    members = {key: Member(machine.model(base, beta)) for key, (base, beta) in models.items()}
    rule = RoundRule(min_rounds=8, max_rounds=8, ci_rel=None, visit_min_time_s=1e-5, visit_warmup=1)
    result = measure_rounds(members, rule, 1e-6, 0, clock=machine.clock, on_round=machine.on_round,
                            anchors=["anchor:a"])  # fmt: skip
    for key, (base, _) in models.items():
        floor = result.corrected[key].floor
        assert floor is not None and floor.us == pytest.approx(base / 1000, rel=1e-12)
        assert floor.ci_low_us == pytest.approx(floor.us, rel=1e-12)  # nothing was ever faster
        assert floor.ci_high_us > floor.us  # resamples that miss a quiet round see a slower floor


def test_the_floor_ci_is_seeded_and_unbounded_for_one_round() -> None:
    visits = {"a": [1.0, 1.3, 1.1, 1.6, 1.05, 1.2], "b": [2.0, 2.5, 2.1, 2.2, 2.9, 2.05]}
    assert floors(visits) == floors(visits)  # the same visits, the same CI
    one = floors({"a": [1.0], "b": [2.0]})
    assert one["a"].us == 1.0 and one["a"].ci_rel == math.inf
    assert floors(visits)["a"].us == pytest.approx((1.0 * 1.05 * 1.1) ** (1 / FLOOR_VISITS))


def test_rounds_go_on_until_the_quiet_state_has_shown_itself() -> None:
    """A steady but disturbed start would give a narrow median CI at once; the floor's CI stays wide until
    the quiet state has been seen in enough rounds to survive resampling."""
    disturbed = [1.5, 1.35, 1.6, 1.4, 1.3, 1.55]
    speeds = disturbed + [1.0] * 24
    rule = RoundRule(min_rounds=3, max_rounds=30, ci_rel=0.01, visit_min_time_s=1e-5, visit_warmup=0)
    machine = Machine(speeds)
    members = {key: Member(machine.model(base)) for key, base in BASES.items()}
    result = measure_rounds(members, rule, 1e-6, 0, clock=machine.clock, on_round=machine.on_round)
    assert result.stop_reason == "ci" and len(result.order) > len(disturbed) + FLOOR_VISITS
    assert all(c.floor is not None and c.floor.us == pytest.approx(BASES[k] / 1000, rel=1e-12)
               for k, c in result.corrected.items())  # fmt: skip


BASE_JOB = {
    "protocol": PROTOCOL_VERSION,
    "runtime": "onnxruntime",
    "models": [{"key": "m", "path": "m.onnx", "inputs": []}],
}


@pytest.mark.parametrize(
    ("fields", "said"),
    [({"rounds": {"min_rounds": 0}}, "job field 'rounds.min_rounds': expected an integer >= 1"),
     ({"rounds": {"min_rounds": 9, "max_rounds": 3}}, "job field 'rounds.max_rounds': expected at least min_rounds"),
     ({"rounds": {"visits": 3}}, "job field 'rounds.visits': unknown key"),
     ({"anchors": [{"key": "m", "path": "a.onnx", "inputs": []}]}, "key 'm' appears twice"),
     ({"anchors": [{"path": "a.onnx", "inputs": []}]}, "job field 'anchors[0].key': missing")],
)  # fmt: skip
def test_bad_rounds_and_anchors_fields_are_named(fields: dict, said: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(JobError) as err:
        parse_job({**BASE_JOB, **fields})
    assert said in str(err.value)


def test_rounds_default_on_and_null_means_one_block() -> None:
    assert parse_job(BASE_JOB).settings.rounds == RoundRule()
    assert parse_job({**BASE_JOB, "rounds": None}).settings.rounds is None


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    folder = tmp_path_factory.mktemp("rounds")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        for name, channels in (("small", 4), ("large", 16), ("anchor", 8)):
            module = torch.nn.Sequential(torch.nn.Conv2d(channels, channels, 3, padding=1), torch.nn.ReLU()).eval()
            torch.onnx.export(module, (torch.randn(1, channels, 16, 16),), str(folder / f"{name}.onnx"), dynamo=False)
    return folder


def spec(key: str, name: str, channels: int) -> dict:  # type: ignore[type-arg]
    return {"key": key, "path": f"{name}.onnx", "inputs": [{"shape": [1, channels, 16, 16], "dtype": "float32"}]}


def run(folder: Path, job: dict) -> tuple[subprocess.CompletedProcess[str], list[dict]]:  # type: ignore[type-arg]
    (folder / "job.json").write_text(json.dumps({"protocol": PROTOCOL_VERSION, "runtime": "onnxruntime", **job}))
    env = dict(os.environ, PYTHONPATH=RUNNERS)
    proc = subprocess.run([sys.executable, "-m", "hwlab_runner", "run", "job.json"], cwd=str(folder), env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
def test_a_job_in_rounds_writes_anchors_first_with_every_figure(models: Path) -> None:
    rounds = {"min_rounds": 4, "max_rounds": 4, "ci_rel": None, "visit_min_time_s": 0.002, "group_size": 1}
    job = {"models": [spec("small", "small", 4), spec("missing", "nowhere", 4), spec("large", "large", 16)],
           "anchors": [spec("anchor:x", "anchor", 8)], "rounds": rounds, "power": None}  # fmt: skip
    proc, lines = run(models, job)
    assert proc.returncode == 0, proc.stderr  # a failed model is a result
    # group_size 1: three groups, each the anchor then its model
    assert [line["key"] for line in lines] == ["anchor:x", "small", "anchor:x", "missing", "anchor:x", "large"]
    assert [line.get("anchor", False) for line in lines] == [True, False] * 3
    missing = lines[3]
    assert missing["status"] == "error" and "model file not found" in missing["error"]
    for line in (lines[0], lines[1], lines[5]):
        assert line["status"] == "ok" and line["schedule"] == "rounds", line.get("error")
        r = line["rounds"]
        assert r["n"] == len(r["visit_median_us"]) == len(r["factors"]) == 4 and line["stop_reason"] == "max_rounds"
        assert r["ci_low_us"] <= r["corrected_median_us"] <= r["ci_high_us"]
        assert r["floor_ci_low_us"] <= r["floor_us"] <= r["floor_ci_high_us"] and r["floor_ci_rel"] >= 0
        fastest = math.prod(sorted(r["visit_median_us"])[:3]) ** (1 / 3)  # the three fastest visits, as written
        assert r["floor_us"] == pytest.approx(fastest, abs=1e-3)  # written to 3 decimals
        assert math.isclose(sorted(r["factors"])[1] * sorted(r["factors"])[2], 1.0, rel_tol=0.2)
        assert len(line["samples_us"]) == line["summary"]["n"] >= 4 * 3
    assert [lines[i]["rounds"]["group"] for i in (0, 1, 4, 5)] == [0, 0, 2, 2]
    assert lines[4]["rounds"]["seed"] == 2  # each group's order from the job's seed plus its index


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning")
def test_a_lone_model_is_measured_in_one_block(models: Path) -> None:
    proc, lines = run(models, {"models": [spec("small", "small", 4)], "power": None,
                               "stop": {"min_count": 5, "min_time_s": 0.01, "max_time_s": 0.2}})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert lines[0]["schedule"] == "single" and "rounds" not in lines[0]
    assert "one block per model: one model" in proc.stderr

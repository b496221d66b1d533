"""Models measured over real inputs, call by call: the loop against a simulated clock, the job's
``input_data`` field, and real runner subprocesses on an early-exit model (an ONNX ``If``) and static convs.

The latency assertions are ratios with a wide margin against a work gap far wider still, so they hold
however fast or drifting this machine is.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hwlab_runner import PROTOCOL_VERSION
from hwlab_runner.calls import distribution, measure_calls
from hwlab_runner.job import InputData, JobError, job_to_json, load_job, parse_job
from hwlab_runner.timing import StopRule, Warmup

from hwlab.zoo.early_exit import EarlyExit, write_early_exit, write_early_exit_data

RUNNERS = str(Path(__file__).resolve().parents[2] / "runners")
SHAPE = [1, 4, 16, 16]
FAST = {"warmup": {"min_count": 3, "min_time_s": 0.0}}

pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*treespec.*:FutureWarning"),
]


class Clock:
    """Integer ns; a call on sample i takes (i + 1) µs, feeding takes 7 ns (never timed)."""

    def __init__(self) -> None:
        self.now = 0
        self.sample = 0
        self.fed: list[int] = []

    def clock(self) -> int:
        return self.now

    def feed(self, i: int) -> None:
        self.sample = i
        self.fed.append(i)
        self.now += 7

    def call(self) -> None:
        self.now += (self.sample + 1) * 1000


def test_calls_cycle_the_samples_and_stop_at_the_end_of_a_cycle() -> None:
    c = Clock()
    m = measure_calls(c.call, c.feed, 3, Warmup(4, 0.0), StopRule(min_count=5, min_time_s=0.0), clock=c.clock)
    assert (m.calls_us, m.stop_reason, m.inputs, m.warmup_count) == ((1.0, 2.0, 3.0, 1.0, 2.0, 3.0), "cycles", 3, 4)
    assert c.fed == [0, 1, 2, 0] + [0, 1, 2, 0, 1, 2]  # warm-up cycles too, then sampling starts at sample 0
    assert m.sampling_time_s == (12_000 + 6 * 7) / 1e9


def test_max_time_cuts_a_cycle_and_max_count_bounds_it() -> None:
    c = Clock()
    stop = StopRule(min_count=100, min_time_s=0.0, max_time_s=4.5e-6)
    m = measure_calls(c.call, c.feed, 3, Warmup(0, 0.0), stop, clock=c.clock)
    assert (m.calls_us, m.stop_reason) == ((1.0, 2.0, 3.0), "max_time")  # 6.02 µs >= 4.5 µs after three calls
    m = measure_calls(c.call, c.feed, 3, Warmup(0, 0.0), StopRule(min_count=100, max_count=4), clock=c.clock)
    assert (m.calls_us, m.stop_reason) == ((1.0, 2.0, 3.0, 1.0), "max_count")


def test_distribution_of_calls() -> None:
    calls = [10.0, 100.0, 12.0, 110.0, 11.0, 90.0, 10.0]  # sample 0 fast, sample 1 slow; sample 0 visited 4 times
    # p90: 100 + 0.4 x 10 (linear, rank 5.4 of 0..6); spreads: IQR / median of [10, 12, 11, 10] (1.25 / 10.5)
    # and of [100, 110, 90] (10 / 100), their median 0.109524.
    d = distribution(calls, 2)
    assert d == {
        "inputs": 2, "calls": 7, "p50_us": 12.0, "p90_us": 104.0, "p99_us": 109.4, "min_us": 10.0,
        "max_us": 110.0, "mean_us": 49.0, "input_median_us": [10.5, 100.0], "input_spread_rel": 0.109524,
    }  # fmt: skip
    assert distribution([5.0], 3)["input_median_us"] == [5.0, None, None]
    assert distribution([5.0], 3)["input_spread_rel"] is None


# --- the job field -------------------------------------------------------------------------------

MODEL = {"key": "m", "path": "m.onnx", "inputs": [{"shape": [1, 3, 8, 8], "dtype": "float32"}]}
JOB = {"protocol": PROTOCOL_VERSION, "runtime": "onnxruntime", "models": [MODEL]}


def with_data(data: object) -> dict:
    job = copy.deepcopy(JOB)
    job["models"][0]["input_data"] = data
    return job


def test_input_data_is_parsed_and_round_trips() -> None:
    job = parse_job(with_data({"path": "d.npz"}))
    assert job.models[0].input_data == InputData("d.npz", ("arr_0",))
    assert parse_job(json.loads(json.dumps(job_to_json(job)))) == job
    assert "input_data" not in job_to_json(parse_job(JOB))["models"][0]  # an ordinary model's entry is unchanged


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("d.npz", "job field 'models[0].input_data': expected an object"),
        ({"members": ["x"]}, "job field 'models[0].input_data.path': missing"),
        ({"path": "d.npz", "names": ["x"]}, "job field 'models[0].input_data.names': unknown key"),
        ({"path": "d.npz", "members": ["x", "y"]}, "'models[0].input_data.members': expected one member per input"),
        ({"path": "d.npz", "members": "x"}, "'models[0].input_data.members': expected a list of member names"),
    ],
)
def test_bad_input_data_fields_are_named(data: object, message: str) -> None:
    with pytest.raises(JobError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_job(with_data(data))


def test_an_anchor_cannot_have_input_data() -> None:
    job = dict(JOB, anchors=[dict(MODEL, key="a", input_data={"path": "d.npz"})])
    with pytest.raises(JobError, match=r"'anchors\[0\]\.input_data': an anchor is measured in rounds"):
        parse_job(job)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((4, 3, 8, 8), np.float32)}, None),
        ({"x": np.zeros((4, 1, 3, 8, 8), np.float32), "labels": np.arange(4)}, None),
        ({"y": np.zeros((4, 3, 8, 8), np.float32)}, "has no member 'x' for input 0 (members: y)"),
        ({"x": np.zeros((4, 3, 8, 8))}, "member 'x' is float64, input 0 takes float32: save it as float32"),
        ({"x": np.zeros((4, 3, 9, 8), np.float32)}, "needs (N, 1, 3, 8, 8) or (N, 3, 8, 8)"),
        ({"x": np.zeros((0, 3, 8, 8), np.float32)}, "holds no sample"),
    ],
)
def test_the_runner_checks_the_archive_when_it_reads_the_job(tmp_path: Path, arrays: dict, message: str) -> None:
    np.savez(tmp_path / "d.npz", **arrays)
    (tmp_path / "job.json").write_text(json.dumps(with_data({"path": "d.npz", "members": ["x"]})))
    if message is None:
        assert load_job(str(tmp_path / "job.json")).models[0].input_data is not None
        return
    with pytest.raises(JobError) as err:
        load_job(str(tmp_path / "job.json"))
    assert str(err.value).startswith(f"job field 'models[0].input_data': {tmp_path / 'd.npz'}: ")
    assert message in str(err.value)


def test_a_file_that_is_not_an_archive_is_a_bad_job(tmp_path: Path) -> None:
    (tmp_path / "d.npz").write_bytes(b"not a zip")
    (tmp_path / "job.json").write_text(json.dumps(with_data({"path": "d.npz"})))
    with pytest.raises(JobError, match="d.npz is not an .npz archive"):
        load_job(str(tmp_path / "job.json"))
    (tmp_path / "job.json").write_text(json.dumps(with_data({"path": "absent.npz"})))
    with pytest.raises(JobError, match="cannot read .*absent.npz: No such file"):
        load_job(str(tmp_path / "job.json"))


# --- real runs -----------------------------------------------------------------------------------


def run_job(
    folder: Path, runtime: str, models: list[dict], **fields: object
) -> tuple[subprocess.CompletedProcess, list]:
    job = {"protocol": PROTOCOL_VERSION, "runtime": runtime, "threads": 1, **FAST, **fields, "models": models}
    (folder / f"job-{runtime}.json").write_text(json.dumps(job))
    env = dict(os.environ, PYTHONPATH=RUNNERS)
    proc = subprocess.run([sys.executable, "-m", "hwlab_runner", "run", f"job-{runtime}.json"], cwd=folder,
                          env=env, capture_output=True, text=True, timeout=120)  # fmt: skip
    return proc, [json.loads(line) for line in proc.stdout.splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The early-exit model and its data (8 samples, half of them exiting early), a small static conv in each
    format, and its data (8 samples)."""
    import torch

    folder = tmp_path_factory.mktemp("dynamic")
    write_early_exit(folder / "early-exit.onnx")
    early = write_early_exit_data(folder / "early-exit.npz", count=8)
    np.save(folder / "early.npy", early)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        conv = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.ReLU()).eval()
        x = torch.randn(*SHAPE)
        torch.onnx.export(conv, (x,), str(folder / "conv.onnx"), dynamo=False)
        torch.export.save(torch.export.export(conv, (x,)), str(folder / "conv.pt2"))
    np.savez(folder / "conv.npz", np.random.default_rng(0).standard_normal((8, *SHAPE)).astype(np.float32))
    try:
        import litert_torch

        litert_torch.convert(conv, (x,)).export(str(folder / "conv.tflite"))
    except Exception:  # noqa: BLE001 - the converter is an optional, heavy extra: the litert case skips
        pass
    return folder


def early_exit_entry(key: str = "early-exit") -> dict:
    shape = list(EarlyExit().input_shape)
    return {"key": key, "path": "early-exit.onnx", "inputs": [{"shape": shape, "dtype": "float32"}],
            "input_data": {"path": "early-exit.npz", "members": ["x"]}}  # fmt: skip


def test_an_early_exit_model_shows_a_wide_distribution(folder: Path) -> None:
    stop = {"min_count": 40, "min_time_s": 0.02, "max_time_s": 3.0}
    proc, lines = run_job(folder, "onnxruntime", [early_exit_entry()], stop=stop)
    assert proc.returncode == 0, proc.stderr
    (line,) = lines
    assert line["status"] == "ok", line.get("error")
    assert (line["protocol"], line["schedule"], line["block"], line["stop_reason"]) == (4, "calls", 1, "cycles")
    d, early = line["distribution"], np.load(folder / "early.npy")
    assert d["inputs"] == 8 and d["calls"] == len(line["samples_us"]) >= 40 and d["calls"] % 8 == 0
    assert line["summary"]["median_us"] == d["p50_us"] and line["summary"]["n"] == d["calls"]
    assert d["min_us"] <= d["p50_us"] <= d["p90_us"] <= d["p99_us"] <= d["max_us"]
    medians = np.array(d["input_median_us"])
    # The second stage does ~350x the first's work: late exits are far slower than 2x the early ones.
    assert medians[~early].min() >= 2 * medians[early].max(), medians
    assert d["p90_us"] >= 2 * np.quantile(line["samples_us"], 0.10)


@pytest.mark.parametrize(
    ("runtime", "name"), [("onnxruntime", "conv.onnx"), ("torch", "conv.pt2"), ("litert", "conv.tflite")]
)
def test_a_static_model_shows_one_narrow_distribution(folder: Path, runtime: str, name: str) -> None:
    if not (folder / name).exists():
        pytest.skip("litert_torch cannot convert here (an optional, heavy extra)")
    entry = {"key": "conv", "path": name, "inputs": [{"shape": SHAPE, "dtype": "float32"}],
             "input_data": {"path": "conv.npz"}}  # fmt: skip
    proc, lines = run_job(folder, runtime, [entry], stop={"min_count": 80, "min_time_s": 0.02, "max_time_s": 2.0})
    assert proc.returncode == 0, proc.stderr
    (line,) = lines
    assert line["status"] == "ok", line.get("error")
    d = line["distribution"]
    assert d["inputs"] == 8 and d["calls"] >= 80
    medians = d["input_median_us"]
    assert max(medians) / min(medians) < 1.5, medians  # the same work for every input


def test_ordinary_models_keep_their_schedule_beside_a_dynamic_one(folder: Path) -> None:
    conv = {"key": "conv", "path": "conv.onnx", "inputs": [{"shape": SHAPE, "dtype": "float32"}]}
    rounds = {"min_rounds": 3, "max_rounds": 3, "visit_min_time_s": 0.001, "visit_warmup": 1}
    models = [early_exit_entry("dynamic"), conv, dict(conv, key="conv2")]
    stop = {"min_count": 16, "min_time_s": 0.0, "max_time_s": 1.0}
    proc, lines = run_job(folder, "onnxruntime", models, stop=stop, rounds=rounds)
    assert proc.returncode == 0, proc.stderr
    assert [(line["key"], line["status"], line["schedule"]) for line in lines] == [
        ("conv", "ok", "rounds"), ("conv2", "ok", "rounds"), ("dynamic", "ok", "calls"),
    ]  # fmt: skip
    assert "distribution" not in lines[0] and lines[2]["distribution"]["inputs"] == 8


def test_max_time_before_every_input_is_said(folder: Path) -> None:
    stop = {"min_count": 1, "min_time_s": 0.0, "max_time_s": 1e-9}
    proc, lines = run_job(folder, "onnxruntime", [early_exit_entry()], stop=stop)
    assert proc.returncode == 0, proc.stderr
    d = lines[0]["distribution"]
    assert lines[0]["stop_reason"] == "max_time" and d["calls"] == 1
    assert d["input_median_us"][1:] == [None] * 7
    assert "max_time before every input was timed (1 of 8): raise stop.max_time_s" in proc.stderr


def test_a_bad_archive_exits_2_naming_the_field(folder: Path) -> None:
    np.savez(folder / "wrong.npz", x=np.zeros((2, 3, 30, 30), np.float32))
    entry = early_exit_entry()
    entry["input_data"]["path"] = "wrong.npz"
    proc, lines = run_job(folder, "onnxruntime", [entry])
    assert proc.returncode == 2 and lines == []
    assert "job field 'models[0].input_data'" in proc.stderr and "member 'x' has shape (2, 3, 30, 30)" in proc.stderr

"""End to end: real models, a real job file, ``python -m hwlab_runner`` as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hwlab_runner import PROTOCOL_VERSION

RUNNERS = str(Path(__file__).resolve().parents[2] / "runners")

# The legacy exporter is chosen on purpose (dynamo=False);
# the LiteRT converter warns about torch internals.
pytestmark = [
    pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*treespec.*:FutureWarning"),
]

SHAPE = [1, 4, 16, 16]
INPUTS = [{"shape": SHAPE, "dtype": "float32"}]
OK_FIELDS = {
    "protocol", "key", "status", "runtime", "runtime_version", "threads", "core_mask", "samples_us", "block",
    "warmup_count", "warmup_time_s", "stop_reason", "summary", "load_time_s", "wall_time_s",
    "freq_khz_before", "freq_khz_after", "temp_c_before", "temp_c_after",
}  # fmt: skip
SUMMARY_FIELDS = {
    "n", "median_us", "mean_us", "std_us", "p10_us", "p90_us", "q1_us", "q3_us", "iqr_us", "min_us", "max_us",
    "ci_low_us", "ci_high_us", "ci_rel",
}  # fmt: skip
FAST_RULES = {
    "warmup": {"min_count": 3, "min_time_s": 0.0},
    "stop": {"min_count": 10, "min_time_s": 0.01, "max_time_s": 0.5, "ci_rel": 0.05, "confidence": 0.95},
    "block_min_time_s": 0.0002,
}


def tiny_module():
    import torch

    class TinyConv(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = torch.nn.Conv2d(4, 8, 3, padding=1)

        def forward(self, x):
            return torch.relu(self.conv(x))

    with torch.random.fork_rng(devices=[]):  # the runner's tests import no hwlab: torch's own fork
        torch.manual_seed(0)
        return TinyConv().eval(), torch.randn(*SHAPE)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A tiny conv saved as ONNX and as a torch.export program, plus a garbage file."""
    import torch

    folder = tmp_path_factory.mktemp("models")
    module, x = tiny_module()
    torch.onnx.export(module, (x,), str(folder / "conv.onnx"), dynamo=False)
    torch.export.save(torch.export.export(module, (x,)), str(folder / "conv.pt2"))
    (folder / "garbage.onnx").write_bytes(b"this is not a model\n" * 10)
    return folder


def run_runner(*args: str, cwd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=RUNNERS)
    return subprocess.run(
        [sys.executable, "-m", "hwlab_runner", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_job(folder, runtime: str, model_list: list, **fields) -> tuple:
    job = {"protocol": PROTOCOL_VERSION, "runtime": runtime, "threads": 1, "core_mask": None, "seed": 0, **FAST_RULES}
    job.update(fields, models=model_list)
    path = folder / f"job-{runtime}.json"
    path.write_text(json.dumps(job))
    proc = run_runner("run", path.name, cwd=str(folder))
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    return proc, lines


def assert_ok(line: dict, key: str, runtime: str) -> None:
    assert line["status"] == "ok", line.get("error")
    assert set(line) >= OK_FIELDS
    assert set(line["summary"]) == SUMMARY_FIELDS
    assert (line["key"], line["runtime"], line["protocol"], line["threads"]) == (key, runtime, PROTOCOL_VERSION, 1)
    assert len(line["samples_us"]) == line["summary"]["n"] >= 1
    assert all(round(s, 3) == s for s in line["samples_us"])
    assert line["stop_reason"] in {"ci", "max_time", "max_count", "max_rounds"}
    assert line["block"] >= 1 and line["warmup_count"] >= 3
    assert line["summary"]["min_us"] <= line["summary"]["median_us"] <= line["summary"]["max_us"]


def test_onnxruntime_job_with_failures_in_between(models):
    proc, lines = run_job(
        models,
        "onnxruntime",
        [
            {"key": "conv", "path": "conv.onnx", "inputs": INPUTS},
            {"key": "absent", "path": "absent.onnx", "inputs": INPUTS},
            {"key": "garbage", "path": "garbage.onnx", "inputs": INPUTS},
            {"key": "conv-abs", "path": str(models / "conv.onnx"), "inputs": INPUTS},
        ],
        core_mask=[0],
    )
    assert proc.returncode == 0, proc.stderr
    assert [line["key"] for line in lines] == ["conv", "absent", "garbage", "conv-abs"]
    assert_ok(lines[0], "conv", "onnxruntime")
    assert_ok(lines[3], "conv-abs", "onnxruntime")
    assert lines[0]["runtime_version"] == lines[1]["runtime_version"]
    if hasattr(os, "sched_setaffinity"):
        assert lines[0]["core_mask"] == [0]
    absent, garbage = lines[1], lines[2]
    assert absent["status"] == "error"
    assert absent["error"].startswith("FileNotFoundError: model file not found")
    assert garbage["status"] == "error" and garbage["error"]
    assert "samples_us" not in garbage and garbage["runtime"] == "onnxruntime"
    assert "model absent failed" in proc.stderr


def test_torch_export_program(models):
    proc, lines = run_job(models, "torch", [{"key": "conv", "path": "conv.pt2", "inputs": INPUTS}])
    assert proc.returncode == 0, proc.stderr
    assert len(lines) == 1
    assert_ok(lines[0], "conv", "torch")


def test_wrong_input_count_is_an_error_line(models):
    two = INPUTS * 2
    proc, lines = run_job(models, "onnxruntime", [{"key": "conv", "path": "conv.onnx", "inputs": two}])
    assert proc.returncode == 0
    assert lines[0]["error"] == f"ValueError: {models / 'conv.onnx'} has 1 inputs but the job gives 2"


def test_litert_model(models):
    try:
        import litert_torch
    except Exception as e:  # the converter is an optional, heavy extra
        pytest.skip(f"litert_torch cannot be imported: {type(e).__name__}: {e}")
    module, x = tiny_module()
    litert_torch.convert(module, (x,)).export(str(models / "conv.tflite"))
    proc, lines = run_job(models, "litert", [{"key": "conv", "path": "conv.tflite", "inputs": INPUTS}])
    assert proc.returncode == 0, proc.stderr
    assert_ok(lines[0], "conv", "litert")
    assert lines[0]["runtime_module"] in {"ai_edge_litert", "tflite_runtime"}


def test_unappliable_core_mask_fails_every_model(models):
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this OS")
    model_list = [{"key": k, "path": "conv.onnx", "inputs": INPUTS} for k in ("a", "b")]
    proc, lines = run_job(models, "onnxruntime", model_list, core_mask=[65535])
    assert proc.returncode == 0
    assert [line["status"] for line in lines] == ["error", "error"]
    assert lines[0]["error"].startswith("AffinityError: core_mask [65535] cannot be applied")


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"protocol": PROTOCOL_VERSION, "runtime": "onnxruntime"}, "job field 'models': missing"),
        ({"protocol": PROTOCOL_VERSION, "runtime": "tvm", "models": []}, "job field 'runtime': unknown runtime 'tvm'"),
        ("{broken", "is not valid JSON"),
    ],
)
def test_bad_job_exits_2(tmp_path, job, message):
    path = tmp_path / "job.json"
    path.write_text(job if isinstance(job, str) else json.dumps(job))
    proc = run_runner("run", str(path), cwd=str(tmp_path))
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert message in proc.stderr


def test_version_and_help(tmp_path):
    proc = run_runner("--version", cwd=str(tmp_path))
    assert proc.returncode == 0
    assert proc.stdout.split()[-1] == str(PROTOCOL_VERSION)
    help_text = run_runner("--help", cwd=str(tmp_path)).stdout
    assert "run" in help_text and "facts" in help_text


def test_stray_output_goes_to_stderr(tmp_path):
    code = (
        "import os, sys\n"
        "from hwlab_runner.__main__ import claim_stdout\n"
        "out = claim_stdout()\n"
        "print('python noise')\n"
        "os.write(1, b'native noise\\n')\n"
        "out.write('result\\n'); out.flush()\n"
    )
    env = dict(os.environ, PYTHONPATH=RUNNERS)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.stdout == "result\n"
    assert "python noise" in proc.stderr and "native noise" in proc.stderr


def test_facts_command(tmp_path):
    proc = run_runner("facts", cwd=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    facts = json.loads(proc.stdout)
    for key in (
        "protocol", "runner_version", "hostname", "os", "kernel", "machine", "python", "cpu_model",
        "cpu_count", "online_cpus", "clusters", "governors", "freq_khz", "max_freq_khz", "thermal_c",
        "memory_total_mib", "memory_available_mib", "runtimes", "affinity",
    ):  # fmt: skip
        assert key in facts, key
    assert facts["protocol"] == PROTOCOL_VERSION
    assert set(facts["runtimes"]) == {"onnxruntime", "litert", "torch", "numpy"}
    assert facts["runtimes"]["numpy"]["module"] == "numpy"
    assert facts["runtimes"]["onnxruntime"]["version"]

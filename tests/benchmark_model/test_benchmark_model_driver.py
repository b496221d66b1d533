"""benchmark_model's command line, the result line it becomes, and a run end to end.

Flag names and meanings: google-ai-edge/LiteRT ``tflite/tools/benchmark/benchmark_model.cc``
(``GetFlags``: num_runs, min_secs, max_secs, num_threads, warmup_runs,
warmup_min_secs) and ``benchmark_tflite_model.cc`` (graph, enable_op_profiling),
tensorflow/tensorflow ``tensorflow/lite/tools/delegates/xnnpack_delegate_provider.cc``
(use_xnnpack). The end-to-end runs go through the real LocalTransport to a
stand-in for the binary (see conftest.py) that replays the recorded logs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from hwlab_runner import PROTOCOL_VERSION

from hwlab.errors import InvalidRequest
from hwlab.measure.benchmark_model import (
    benchmark_command,
    benchmark_result,
    cpu_mask_hex,
    default_timeout,
    error_result,
    parse_benchmark_output,
    pinned,
    run_benchmark_model,
)
from hwlab.measure.settings import MeasureSettings, StopRule, Warmup, stopping
from hwlab.transport.local import LocalTransport

BINARY = "/data/local/tmp/hwlab/benchmark_model"
GRAPH = "/data/local/tmp/hwlab/models/3f2a.tflite"
PROTOCOL_FIELDS = {
    "protocol", "key", "status", "runtime", "runtime_version", "threads", "core_mask", "samples_us", "block",
    "warmup_count", "warmup_time_s", "stop_reason", "summary", "load_time_s", "wall_time_s",
    "freq_khz_before", "freq_khz_after", "temp_c_before", "temp_c_after", "runtime_module", "sampling_time_s",
}  # fmt: skip
SUMMARY_FIELDS = {
    "n", "median_us", "mean_us", "std_us", "p10_us", "p90_us", "q1_us", "q3_us", "iqr_us", "min_us", "max_us",
    "ci_low_us", "ci_high_us", "ci_rel",
}  # fmt: skip


def test_command_maps_the_measure_settings():
    settings = MeasureSettings(
        warmup=Warmup(min_count=5, min_time_s=0.1), stop=StopRule(min_count=30, min_time_s=0.5, max_time_s=4.0)
    )
    assert benchmark_command(BINARY, GRAPH, 2, settings) == [
        BINARY,
        f"--graph={GRAPH}",
        "--num_threads=2",
        "--warmup_runs=5",
        "--warmup_min_secs=0.1",
        "--num_runs=30",
        "--min_secs=0.5",
        "--max_secs=4.0",
    ]
    extra = benchmark_command(BINARY, GRAPH, 1, MeasureSettings(), op_profiling=True, use_xnnpack=False)
    assert extra[-2:] == ["--enable_op_profiling=true", "--use_xnnpack=false"]
    assert benchmark_command(BINARY, GRAPH, 1, MeasureSettings(), use_xnnpack=True)[-1] == "--use_xnnpack=true"


@pytest.mark.parametrize("threads", [0, -1, True, 1.5])
def test_command_refuses_bad_threads(threads):
    with pytest.raises(InvalidRequest, match="threads"):
        benchmark_command(BINARY, GRAPH, threads, MeasureSettings())


def test_command_refuses_an_empty_graph():
    with pytest.raises(InvalidRequest, match="graph"):
        benchmark_command(BINARY, "", 1, MeasureSettings())


@pytest.mark.parametrize(
    ("cpus", "mask"), [([0], "1"), ([0, 1], "3"), ([4, 5, 6, 7], "f0"), ([0, 8], "101"), ([2, 2], "4")]
)
def test_taskset_mask_from_cpu_ids(cpus, mask):
    assert cpu_mask_hex(cpus) == mask
    assert pinned(["bm", "--graph=g"], cpus) == ["taskset", mask, "bm", "--graph=g"]


@pytest.mark.parametrize("cpus", [[], [-1], [True], ["0"]])
def test_taskset_mask_refuses_bad_cpu_ids(cpus):
    with pytest.raises(InvalidRequest, match="CPU ids"):
        cpu_mask_hex(cpus)


def test_no_core_mask_no_taskset():
    assert pinned(["bm"], None) == ["bm"]


def test_result_line_from_an_old_release(log_text):
    parsed = parse_benchmark_output(log_text("tf22_no_percentiles", graph=GRAPH, threads=1))
    result = benchmark_result(parsed, "conv-k", 1, core_mask=[4, 5], runtime_version="2.2.0", command_time_s=1.5)
    assert result == {
        "protocol": PROTOCOL_VERSION,
        "key": "conv-k",
        "status": "ok",
        "runtime": "litert",
        "runtime_module": "benchmark_model",
        "runtime_version": "2.2.0",
        "threads": 1,
        "core_mask": [4, 5],
        "samples_us": [],
        "block": 1,
        "warmup_count": 42,
        "warmup_time_s": 0.050775,
        "sampling_time_s": 0.199915,
        "stop_reason": "benchmark_model",
        "summary": {
            "n": 166,
            "median_us": None,
            "mean_us": 1204.31,
            "std_us": 38.0,
            "p10_us": None,
            "p90_us": None,
            "q1_us": None,
            "q3_us": None,
            "iqr_us": None,
            "min_us": 1159.0,
            "max_us": 1428.0,
            "ci_low_us": None,
            "ci_high_us": None,
            "ci_rel": None,
            "p5_us": None,
            "p95_us": None,
        },
        "load_time_s": 0.003578,
        "wall_time_s": None,
        "command_time_s": 1.5,
        "freq_khz_before": {},
        "freq_khz_after": {},
        "temp_c_before": {},
        "temp_c_after": {},
        "first_inference_us": 2893.0,
        "model_size_mb": 0.018876,
        "memory_mb": {"kind": "max_rss", "init_mb": 2.84375, "overall_mb": 3.10547},
    }


def test_default_timeout_outlasts_both_phases():
    assert default_timeout(stopping(max_time_s=3.0)) == 126.0


def _seen(binary: Path) -> dict:
    return json.loads(binary.with_name("seen.json").read_text())


def test_run_end_to_end_with_op_profiling(standin, tmp_path):
    binary = standin("litert_op_profiling")
    model = str(tmp_path / "model.tflite")
    result = run_benchmark_model(
        LocalTransport(), str(binary), model, "conv-k", 4, MeasureSettings(), op_profiling=True, use_xnnpack=True
    )
    assert (
        _seen(binary)["argv"]
        == benchmark_command(str(binary), model, 4, MeasureSettings(), op_profiling=True, use_xnnpack=True)[1:]
    )
    assert result["status"] == "ok" and result.keys() >= PROTOCOL_FIELDS
    assert result["summary"].keys() >= SUMMARY_FIELDS
    assert (result["threads"], result["core_mask"], result["warmup_count"]) == (4, None, 123)
    s = result["summary"]
    assert (s["n"], s["median_us"], s["mean_us"], s["std_us"], s["p5_us"], s["p95_us"]) == (
        497,
        397.0,
        402.318,
        31.0,
        377.0,
        441.0,
    )
    assert isinstance(result["command_time_s"], float)
    assert [op["node_type"] for op in result["op_profile"]][-1] == "ARG_MAX"
    assert result["op_profile"][1] == {
        "graph": "primary",
        "node_type": "Convolution (NHWC, F32) IGEMM",
        "name": "Delegate/Convolution (NHWC, F32) IGEMM:0",
        "first_ms": 0.162,
        "avg_ms": 0.151,
        "pct": 22.63,
        "cdf_pct": 72.829,
        "mem_kb": 0.0,
        "times_called": 1,
    }
    json.dumps(result, allow_nan=False)  # a valid result line


def test_run_end_to_end_old_release_logging_on_stderr(standin, tmp_path):
    binary = standin("tf22_no_percentiles", all_stderr=True)
    result = run_benchmark_model(LocalTransport(), str(binary), str(tmp_path / "m.tflite"), "k", 1, MeasureSettings())
    assert result["status"] == "ok" and "op_profile" not in result
    assert (result["summary"]["n"], result["summary"]["mean_us"], result["load_time_s"]) == (166, 1204.31, 0.003578)


def test_failed_run_is_an_error_line_with_the_last_lines(standin, tmp_path):
    binary = standin("litert_load_failure", rc=1)
    model = str(tmp_path / "missing.tflite")
    result = run_benchmark_model(
        LocalTransport(), str(binary), model, "k", 2, MeasureSettings(), core_mask=None, runtime_version="2.16.1"
    )
    assert result == {
        "protocol": PROTOCOL_VERSION,
        "key": "k",
        "status": "error",
        "runtime": "litert",
        "runtime_module": "benchmark_model",
        "runtime_version": "2.16.1",
        "threads": 2,
        "core_mask": None,
        "error": result["error"],
    }
    assert result["error"].startswith(f"CommandFailed: command '{binary}' exited with 1\n")
    assert result["error"].endswith(f"Failed to load model {model}\n    ERROR: Benchmarking failed.")


def test_exit_zero_without_statistics_is_an_error_line(standin, tmp_path):
    binary = standin("litert_load_failure", rc=0)
    result = run_benchmark_model(LocalTransport(), str(binary), str(tmp_path / "m.tflite"), "k", 1, MeasureSettings())
    assert result["status"] == "error"
    assert result["error"].startswith("BenchmarkParseError: benchmark_model printed no regular-run statistics")
    assert result["error"].endswith("ERROR: Benchmarking failed.")


def test_a_run_past_its_deadline_is_an_error_line(tmp_path):
    hung = tmp_path / "benchmark_model"
    hung.write_text("#!/bin/sh\nexec sleep 60\n")
    hung.chmod(0o755)
    result = run_benchmark_model(LocalTransport(), str(hung), "m.tflite", "k", 1, MeasureSettings(), timeout=0.3)
    assert result["status"] == "error" and result["error"].startswith("CommandTimeout: ")


def test_a_missing_binary_is_an_error_line_like_a_shells_127(tmp_path):
    result = run_benchmark_model(LocalTransport(), str(tmp_path / "absent"), "m.tflite", "k", 1, MeasureSettings())
    assert result["status"] == "error"
    assert result["error"].startswith(f"CommandFailed: command '{tmp_path / 'absent'}' exited with 127")


def test_error_result_names_the_exception_type():
    assert error_result("k", 1, ValueError("bad"))["error"] == "ValueError: bad"
    assert error_result("k", 1, "as given", core_mask=[0])["core_mask"] == [0]


@pytest.mark.skipif(
    shutil.which("taskset") is None or 0 not in os.sched_getaffinity(0), reason="needs taskset and CPU 0"
)
def test_core_mask_runs_under_taskset_for_real(standin, tmp_path):
    binary = standin("litert_op_profiling")
    result = run_benchmark_model(
        LocalTransport(), str(binary), str(tmp_path / "m.tflite"), "k", 1, MeasureSettings(), core_mask=[0]
    )
    assert result["status"] == "ok" and result["core_mask"] == [0]
    assert _seen(binary)["affinity"] == [0]

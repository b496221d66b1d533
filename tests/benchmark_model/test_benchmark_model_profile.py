"""`profile` on a phone without Python: facts from its shell, models timed by benchmark_model.

The phone is this host (local transport) with no usable Python for the runner,
and benchmark_model is the replaying stand-in of conftest.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwlab.inventory import DeviceSpec
from hwlab.measure.jobs import GraphRule
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.space import get_space
from hwlab.tables import LookupTable

pytest.importorskip("litert_torch", reason="the TFLite exporter (hwlab[tflite]) is needed to make .tflite files")


def _request(binary: Path, tmp_path: Path, count: int, **fields) -> ProfileRequest:  # type: ignore[no-untyped-def]
    """A profile of ``count`` generic ops on a phone (this host) with no Python, timed by ``binary``."""
    phone = DeviceSpec(
        name="phone", transport="local", source="<test>", python="/nonexistent/python3",
        benchmark_model=str(binary), workdir=str(tmp_path / "phone"),
    )  # fmt: skip
    return ProfileRequest(
        device=phone, backend="litert", specs=get_space("generic", count=count, seed=1), space="generic",
        tables_root=tmp_path / "t", settings=stopping(min_count=7), **fields,
    )  # fmt: skip


def test_phone_without_python_profiles_through_benchmark_model(
    standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    binary = standin("litert_op_profiling")
    request = _request(binary, tmp_path, 2)
    specs = request.specs
    report = profile(request)
    assert report.errors == [] and len(report.measured) == 2
    table = LookupTable(report.table.folder)
    for row in table:
        assert row["runtime_module"] == "benchmark_model" and row["stop_reason"] == "benchmark_model"
        assert row["mean_ms"] > 0 and row["n"] > 0 and row["p10_ms"] is None
        assert row["power_w"] is None and row["power_note"]
    facts = table.meta()["device_facts"]
    assert facts["python"] is None and facts["runtimes"]["litert"]["module"] == "benchmark_model"
    key = specs[0].key
    assert table.samples(key)["op_profile"]  # the per-op table of --enable_op_profiling is kept
    seen = (binary.parent / "seen.json").read_text()
    assert "--num_runs=7" in seen and ".tflite" in seen


def test_runtime_graph_comes_from_a_separate_op_profiled_run(
    standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    binary = standin("litert_op_profiling")
    request = _request(binary, tmp_path, 1, runtime_graph=GraphRule(runs=5, warmup=2))
    specs = request.specs
    report = profile(request)
    assert report.errors == []
    calls = [json.loads(line)["argv"] for line in (binary.parent / "calls.jsonl").read_text().splitlines()]
    model_calls = [argv for argv in calls if any(specs[0].key in a or ".tflite" in a for a in argv)]
    timed, profiled = model_calls[-2:]
    assert "--num_runs=7" in timed and not any(a.startswith("--enable_op_profiling") for a in timed)
    assert "--enable_op_profiling=true" in profiled and "--num_runs=5" in profiled and "--warmup_runs=2" in profiled
    graph = LookupTable(report.table.folder).runtime_graphs()[specs[0].key]
    assert graph["source"] == "benchmark_model op profiling" and graph["runs"] == 497
    assert [n["type"] for n in graph["nodes"]][:2] == ["TfLiteXNNPackDelegate", "Convolution (NHWC, F32) IGEMM"]
    assert graph["nodes"][1]["avg_us"] == 151.0

"""`profile` on a phone without Python: facts from its shell, models timed by benchmark_model.

The phone is this host (local transport) with no usable Python for the runner,
and benchmark_model is the replaying stand-in of conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hwlab.inventory import DeviceSpec
from hwlab.measure.settings import stopping
from hwlab.profile import ProfileRequest, profile
from hwlab.space import get_space
from hwlab.tables import LookupTable

pytest.importorskip("litert_torch", reason="the TFLite exporter (hwlab[tflite]) is needed to make .tflite files")


def test_phone_without_python_profiles_through_benchmark_model(
    standin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    binary = standin("litert_op_profiling")
    phone = DeviceSpec(
        name="phone", transport="local", source="<test>", python="/nonexistent/python3",
        benchmark_model=str(binary), workdir=str(tmp_path / "phone"),
    )  # fmt: skip
    specs = get_space("generic", count=2, seed=1)
    request = ProfileRequest(
        device=phone, backend="litert", specs=specs, space="generic", tables_root=tmp_path / "t",
        settings=stopping(min_count=7),
    )  # fmt: skip
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

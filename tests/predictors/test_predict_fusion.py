"""Fusion rules: probes measured on onnxruntime, and the decision made exactly from rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.predictors.fusion import OVERHEAD, measure_fusion_rules, probe_items, rules_from_table
from hwlab.predictors.kernels import FusionEvidence, FusionRules
from hwlab.profile import ProfileRequest
from hwlab.tables import LookupTable, TableId


def test_the_probe_measures_every_model_on_the_runtime_and_decides_from_those_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which pairs a runtime fuses is decided from timings near the noise, so it is no test's business to
    expect one answer here: the decision rule is tested on fixed rows below."""
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))
    pairs = [("conv", "relu"), ("add", "relu")]
    request = ProfileRequest(
        device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="fusion", tables_root=tmp_path / "t",
        settings=stopping(min_time_s=0.02, max_time_s=0.2, min_count=5),
    )  # fmt: skip
    rules = measure_fusion_rules(request, pairs=pairs)
    table = LookupTable.at(tmp_path / "t", TableId("local", "onnxruntime", "fusion"))
    assert table.keys("ok") == {item.key for item in probe_items(pairs)}
    assert rules == rules_from_table(table.rows(), pairs)
    assert {(e.first, e.second) for e in rules.evidence} == set(pairs)
    assert all(e.overhead_ms > 0 and e.t_pair_ms > 0 for e in rules.evidence)


def _rows(times: dict[str, float]) -> dict[str, dict]:  # type: ignore[type-arg]
    return {k: {"status": "ok", "median_ms": v} for k, v in times.items()}


def test_rules_from_rows_subtract_the_fixed_cost() -> None:
    pairs, shapes = [("conv", "relu"), ("conv", "relu6")], [(28, 32)]
    keys = [item.key for item in probe_items(pairs, shapes)]
    assert keys == [
        OVERHEAD.key,
        "fusion-conv-input:28x28x32",
        "fusion-relu-input:28x28x32",
        "fusion-conv+relu-input:28x28x32",
        "fusion-relu6-input:28x28x32",
        "fusion-conv+relu6-input:28x28x32",
    ]
    times = dict(zip(keys, [0.003, 0.103, 0.005, 0.1035, 0.005, 0.106], strict=True))
    rules = rules_from_table(_rows(times), pairs, shapes)
    # conv+relu: saving 0.103 + 0.005 - 0.1035 - 0.003 = 0.0015 > 0.5 * min(0.100, 0.002) = 0.001
    # conv+relu6: saving 0.103 + 0.005 - 0.106 - 0.003 = -0.001
    assert rules.fused == frozenset({("conv", "relu")})
    assert rules.evidence[0].saving_ms == pytest.approx(0.0015)
    del times["fusion-conv+relu6-input:28x28x32"]  # an unmeasured pair decides nothing
    assert [(e.first, e.second) for e in rules_from_table(_rows(times), pairs, shapes).evidence] == [("conv", "relu")]


def test_rules_round_trip_through_json() -> None:
    rules = FusionRules.from_evidence([FusionEvidence("conv", "relu", 0.1, 0.005, 0.1, 0.003)])
    assert FusionRules.from_json(rules.to_json()) == rules

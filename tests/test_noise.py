"""`hwlab doctor --noise`: two runs of reference models, compared raw and corrected, stored with the device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwlab.cli import main
from hwlab.errors import InvalidRequest
from hwlab.noise import Agreement, NoisePlan, noise_ceiling, reference_models, steal_share, stored_noise

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def test_two_runs_are_measured_compared_and_stored(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tables = tmp_path / "tables"
    assert "not measured; run `hwlab doctor --device local --noise`" in noise_ceiling(tables, "local", "onnxruntime")
    argv = ["doctor", "--device", "local", "--noise", "--models", "2", "--gap", "0", "--tables-dir", str(tables),
            "--min-rounds", "3", "--max-rounds", "3", "--json"]  # fmt: skip
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["device"] == "local" and report["models"] == 2 and report["gap_s"] == 0
    for kind in ("raw", "raw_after_common", "corrected"):
        assert 0.0 <= report[kind]["within_5"] <= report[kind]["within_10"] <= 1.0
    assert report["state_factors"] and report["state_factors"][0] > 0  # the first run set the reference
    assert len(report["steal"]) == 2 and all(s is None or 0.0 <= s < 1.0 for s in report["steal"])
    first, second = (Path(t) for t in report["tables"])
    assert first.name.endswith("-a") and second.name.endswith("-b") and (first / "ops.jsonl").exists()
    assert [r["measured_at"] for r in stored_noise(tables, "local")] == [report["measured_at"]]
    assert "two runs 0 min apart agree" in noise_ceiling(tables, "local", "onnxruntime")


def test_agreement_and_steal_arithmetic() -> None:
    a = Agreement.of([1.0, 1.04, 0.93, 1.2])
    assert (a.within_5, a.within_10) == (0.5, 0.75) and a.median_abs == pytest.approx(0.055)
    before, after = [100, 0, 50, 800, 0, 0, 0, 10], [200, 0, 100, 1600, 0, 0, 0, 60]
    assert steal_share(before, after) == pytest.approx(50 / 1000)
    assert steal_share(None, after) is None and steal_share([1, 2], [3, 4]) is None


def test_reference_models_are_half_search_space_half_families() -> None:
    models = reference_models(6, seed=7)
    assert [m.family for m in models].count("spos") == 3 and len({m.name for m in models}) == 6
    assert all(m.input_shape[2] == 32 for m in models[:3])
    assert [m.name for m in reference_models(6, seed=7)] == [m.name for m in models]


def test_a_plan_that_cannot_tell_anything_is_refused() -> None:
    with pytest.raises(InvalidRequest):
        NoisePlan(models=1)
    with pytest.raises(InvalidRequest):
        NoisePlan(gap_s=float("nan"))

"""farm.yaml is validated when it is read: every problem names the file, the field and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from farmkit import write_plan

from hwlab.farm.plan import PlanError, load_plan
from hwlab.inventory import LOCAL_DEFAULT, DeviceSpec


def _plan(tmp_path: Path, body: str):  # type: ignore[no-untyped-def]
    (tmp_path / "m.onnx").write_bytes(b"x")
    return load_plan(write_plan(tmp_path, body))


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        ("devices: [local]\nmodel: [m.onnx]\n", "model", "did you mean 'models'"),
        ("devices: local\nmodels: [m.onnx]\n", "devices", "expected a list"),
        ("devices: [local]\nmodels: [m.onnx]\nbackends: [tensorrt]\n", "backends", "unknown ['tensorrt']"),
        ("devices: [local]\nmodels: [missing.onnx]\n", "models[0].file", "is not a file"),
        ("devices: [local]\nmodels: [{zoo: alexnet}]\n", "models[0].zoo", "unknown family"),
        ("devices: [local]\nmodels: [{zoo: vgg, file: m.onnx}]\n", "models[0]", "zoo and file"),
        ("models: [m.onnx]\n", "devices", "selects nothing"),
        ("devices: [local]\n", "models", "nothing to measure"),
        ("devices: [local]\nmodels: [m.onnx, {file: m.onnx}]\n", "models", "both named 'm'"),
        ("devices: [local]\nmodels: [m.onnx]\nmeasuring: {max_time_s: -1}\n", "measuring.max_time_s", "> 0"),
        ("devices: [local]\nmodels: [m.onnx]\nmeasuring: {threads: true}\n", "measuring.threads", "an integer"),
        ("devices: [local]\nmodels: [m.onnx]\nthresholds: {p_value: 2}\n", "thresholds.p_value", "between 0 and 1"),
        ("devices: [local]\nmodels: [m.onnx]\nretries: {count: 1, delay: 3}\n", "retries.delay", "delay_s"),
        ("devices: [local]\ndevices: [x]\nmodels: [m.onnx]\n", None, "appears twice"),
    ],
)
def test_plan_problems_name_the_field_and_the_fix(tmp_path: Path, body: str, field: str | None, problem: str) -> None:
    with pytest.raises(PlanError) as info:
        _plan(tmp_path, body)
    assert info.value.field == field
    assert problem in str(info.value)
    assert str(tmp_path / "farm.yaml") in str(info.value) and info.value.hint


def test_a_valid_plan_reads_with_its_settings_and_selects_devices(tmp_path: Path) -> None:
    plan = _plan(tmp_path, "devices: [local]\ntags: [nightly]\nmodels: [{file: m.onnx, name: detector}]\n"
                           "measuring: {max_time_s: 0.5, min_rounds: 4, max_rounds: 6, ci: 0.01}\n"
                           "retries: {count: 1, delay_s: 0}\nthresholds: {k: 4}\n")  # fmt: skip
    assert plan.models[0].name == "detector" and plan.models[0].file == (tmp_path / "m.onnx").resolve()
    settings = plan.settings()
    assert settings.stop.max_time_s == 0.5 and settings.stop.ci_rel == 0.01
    assert settings.rounds is not None and (settings.rounds.min_rounds, settings.rounds.max_rounds) == (4, 6)
    assert plan.retries == 1 and plan.thresholds.k == 4 and plan.thresholds.p_value == 0.002
    board = DeviceSpec(name="board", transport="ssh", source="<test>", host="h", tags=("nightly",))
    other = DeviceSpec(name="other", transport="ssh", source="<test>", host="h")
    chosen = plan.select({"local": LOCAL_DEFAULT, "board": board, "other": other})
    assert [d.name for d in chosen] == ["local", "board"]
    with pytest.raises(PlanError, match="names 'locl'.*") as info:
        _plan(tmp_path, "devices: [locl]\nmodels: [m.onnx]\n").select({"local": LOCAL_DEFAULT})
    assert "did you mean 'local'" in str(info.value)


def test_the_plan_hash_follows_its_bytes(tmp_path: Path) -> None:
    first = _plan(tmp_path, "devices: [local]\nmodels: [m.onnx]\n").digest
    assert _plan(tmp_path, "devices: [local]\nmodels: [m.onnx]\n").digest == first
    assert _plan(tmp_path, "devices: [local]\nmodels: [m.onnx]  # changed\n").digest != first

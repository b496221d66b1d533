"""Job validation: every bad field is named; defaults fill what a job leaves out."""

from __future__ import annotations

import copy
import json

import pytest
from hwlab_runner import PROTOCOL_VERSION, backends
from hwlab_runner.job import Job, JobError, MeasureSettings, checked, job_to_json, load_job, parse_job
from hwlab_runner.run import line_writer, run_job
from hwlab_runner.timing import StopRule

GOOD = {
    "protocol": PROTOCOL_VERSION,
    "runtime": "onnxruntime",
    "models": [{"key": "k", "path": "m.onnx", "inputs": [{"shape": [1, 3], "dtype": "float32"}]}],
}


def with_field(path: str, value: object) -> dict:
    job = copy.deepcopy(GOOD)
    node = job
    *parents, last = path.split(".")
    for name in parents:
        node = node[int(name)] if isinstance(node, list) else node[name]
    node[last] = value
    return job


def test_defaults_fill_a_minimal_job():
    job = parse_job(GOOD, base_dir="/jobs")
    assert (job.threads, job.core_mask, job.settings.seed, job.settings.block_min_time_s) == (1, None, 0, 0.0002)
    assert job.settings == MeasureSettings() and job.settings.cooldown.max_temp_c is None
    assert job.model_path(job.models[0]) == "/jobs/m.onnx"
    assert job.models[0].inputs[0].shape == (1, 3)


def test_partial_rules_keep_other_defaults():
    data = dict(GOOD, stop={"ci_rel": None, "max_time_s": 1}, core_mask=[3, 1, 3])
    job = parse_job(data)
    assert job.settings.stop == StopRule(ci_rel=None, max_time_s=1.0)
    assert job.core_mask == (1, 3)


def test_a_host_built_job_is_checked_by_the_runners_rules_even_before_it_has_models():
    rules = MeasureSettings(stop=StopRule(max_time_s=0.5))
    assert checked(Job(runtime="torch", models=(), settings=rules)).settings == rules
    with pytest.raises(JobError, match="'stop.max_time_s': expected a number > 0.0"):
        checked(Job(runtime="torch", models=(), settings=MeasureSettings(stop=StopRule(max_time_s=0.0))))
    with pytest.raises(JobError, match="'threads'"):
        checked(Job(runtime="torch", models=(), threads=0))


def test_job_round_trips_through_json():
    job = parse_job(dict(GOOD, threads=2, seed=7, cooldown={"max_temp_c": 55}))
    assert parse_job(json.loads(json.dumps(job_to_json(job)))) == job


def test_unknown_top_level_and_model_keys_are_ignored():
    data = with_field("models.0.op", "conv")
    data["host_note"] = "x"
    assert parse_job(data).models[0].key == "k"


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("protocol", 1, f"job field 'protocol': this runner speaks protocol {PROTOCOL_VERSION}, the job is protocol 1"),
        ("protocol", "1", "job field 'protocol': expected a positive integer"),
        ("runtime", "tvm", "'runtime': unknown runtime 'tvm': expected one of litert, onnxruntime, torch"),
        ("threads", 0, "job field 'threads': expected an integer >= 1, got 0"),
        ("threads", True, "job field 'threads': expected an integer >= 1, got True"),
        ("core_mask", [], "job field 'core_mask'"),
        ("core_mask", [-1], "job field 'core_mask'"),
        ("models", [], "job field 'models': expected a non-empty list"),
        ("models.0.path", "", "job field 'models[0].path': expected a non-empty string"),
        ("models.0.inputs", {"shape": [1]}, "job field 'models[0].inputs': expected a list"),
        ("models.0.inputs.0.shape", [1, 0], "job field 'models[0].inputs[0].shape'"),
        ("models.0.inputs.0.dtype", "complex64", "job field 'models[0].inputs[0].dtype'"),
        ("stop", {"max_time": 3}, "job field 'stop.max_time': unknown key"),
        ("stop", {"confidence": 1.5}, "job field 'stop.confidence'"),
        ("stop", {"max_time_s": 0}, "job field 'stop.max_time_s': expected a number > 0.0"),
        ("warmup", {"min_time_s": -1}, "job field 'warmup.min_time_s'"),
        ("cooldown", [], "job field 'cooldown': expected an object"),
        ("block_min_time_s", "fast", "job field 'block_min_time_s'"),
    ],
)
def test_bad_fields_are_named(path, value, message):
    with pytest.raises(JobError) as err:
        parse_job(with_field(path, value))
    assert message in str(err.value)


@pytest.mark.parametrize("missing", ["protocol", "runtime", "models"])
def test_missing_required_fields(missing):
    data = copy.deepcopy(GOOD)
    del data[missing]
    with pytest.raises(JobError, match=f"job field '{missing}': missing"):
        parse_job(data)


def test_missing_model_inputs():
    data = copy.deepcopy(GOOD)
    del data["models"][0]["inputs"]
    with pytest.raises(JobError, match=r"job field 'models\[0\]\.inputs': missing"):
        parse_job(data)


def test_unreadable_and_invalid_job_files(tmp_path):
    with pytest.raises(JobError, match="cannot read job file"):
        load_job(str(tmp_path / "absent.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(JobError, match="is not valid JSON"):
        load_job(str(bad))


def test_missing_runtime_gives_error_lines(monkeypatch, tmp_path):
    real_find_spec = backends.importlib.util.find_spec

    def find_spec(name, *args):
        return None if name == "onnxruntime" else real_find_spec(name, *args)

    monkeypatch.setattr(backends.importlib.util, "find_spec", find_spec)
    job = parse_job(dict(GOOD, models=GOOD["models"] * 2), base_dir=str(tmp_path))
    lines = []
    assert run_job(job, lines.append) == 2
    assert [line["status"] for line in lines] == ["error", "error"]
    assert lines[0]["error"] == (
        "RuntimeNotInstalled: onnxruntime is not installed on the device: pip install onnxruntime"
    )
    assert lines[0]["runtime_version"] is None and lines[0]["runtime"] == "onnxruntime"


def test_line_writer_flushes_valid_json_lines():
    class Stream:
        def __init__(self):
            self.text, self.flushes = "", 0

        def write(self, s):
            self.text += s

        def flush(self):
            self.flushes += 1

    stream = Stream()
    line_writer(stream)({"key": "a", "x": float("nan"), "y": [float("inf"), 1.5]})
    assert stream.text == '{"key": "a", "x": null, "y": [null, 1.5]}\n'
    assert stream.flushes == 1

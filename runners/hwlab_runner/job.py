"""The job file: parsed and validated before anything is measured.

A bad job fails at once with the field named (exit code 2), not halfway
through a long run. Unknown top-level and per-model keys are ignored so a newer
host can add fields; unknown keys inside ``warmup``/``stop``/``cooldown``/``power``
are rejected because there they are typos of a rule.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

from . import PROTOCOL_VERSION
from .backends import BACKENDS
from .inputdata import InputDataError, default_members, problem, read_headers
from .rounds import RoundRule
from .runtime_graph import GraphRule
from .timing import StopRule, Warmup

DTYPES = ("float16", "float32", "float64", "int8", "uint8", "int16", "int32", "int64", "bool")
DEVICES = ("cpu", "cuda")
MAX_SAMPLE_HZ = 1000.0  # a faster sampler would be a busy thread beside the model


class JobError(ValueError):
    """The job file is unreadable or a field is missing or invalid."""


@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of one model input; the runner fills it with seeded random data."""

    shape: tuple[int, ...]
    dtype: str


@dataclass(frozen=True)
class InputData:
    """Real inputs for a model (an ``.npz``, see inputdata.py): ``members[i]`` feeds input i."""

    path: str
    members: tuple[str, ...]


@dataclass(frozen=True)
class ModelSpec:
    """One model to measure; ``path`` is as written in the job. With ``input_data`` it is measured
    call by call over those inputs (calls.py), its ``inputs`` being one sample's shapes and dtypes."""

    key: str
    path: str
    inputs: tuple[InputSpec, ...]
    input_data: InputData | None = None


@dataclass(frozen=True)
class Cooldown:
    """Before each model: wait until the hottest zone is below ``max_temp_c``, then pause."""

    max_temp_c: float | None = None
    pause_s: float = 0.0
    timeout_s: float = 60.0


@dataclass(frozen=True)
class MeasureSettings:
    """How long and how carefully each model is measured: the one set of measuring defaults.

    The host builds its jobs from this class too, so what a job leaves out and what
    the host sends by default never differ.
    """

    warmup: Warmup = Warmup()
    stop: StopRule = StopRule()
    block_min_time_s: float = 0.0002
    cooldown: Cooldown = Cooldown()
    seed: int = 0
    rounds: RoundRule | None = RoundRule()  # None: each model in one block of its own (``stop``)


@dataclass(frozen=True)
class PowerRule:
    """Which sensor to sample (``sensors`` None = the best one found), how often, and the idle baseline."""

    sensors: tuple[str, ...] | None = None
    sample_hz: float = 50.0
    idle_s: float = 1.0


@dataclass(frozen=True)
class Job:
    """A validated job; defaults are the protocol's defaults for omitted fields."""

    runtime: str
    models: tuple[ModelSpec, ...]
    anchors: tuple[ModelSpec, ...] = ()  # measured in every group of rounds: the scale between jobs
    threads: int = 1
    core_mask: tuple[int, ...] | None = None
    settings: MeasureSettings = MeasureSettings()
    power: PowerRule | None = None
    governor: str | None = None
    device: str = "cpu"
    runtime_graph: GraphRule | None = None  # capture what the runtime executes, after each model's measurement
    base_dir: str = "."
    protocol: int = PROTOCOL_VERSION

    def model_path(self, model: ModelSpec) -> str:
        """The model's file: relative paths are relative to the job file's folder."""
        return self.resolve(model.path)

    def resolve(self, path: str) -> str:
        """A path of the job: relative to the job file's folder unless absolute."""
        return path if os.path.isabs(path) else os.path.join(self.base_dir, path)


def _fail(where: str, problem: str) -> JobError:
    return JobError(f"job field '{where}': {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (isinstance(value, (int, float))) and not isinstance(value, bool)


def _int(value: Any, where: str, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise _fail(where, f"expected an integer >= {minimum}, got {value!r}")
    return int(value)


def _number(value: Any, where: str, minimum: float = 0.0, strict: bool = False) -> float:
    bad = not _is_number(value) or value != value or (value <= minimum if strict else value < minimum)
    if bad:
        bound = ">" if strict else ">="
        raise _fail(where, f"expected a number {bound} {minimum}, got {value!r}")
    return float(value)


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(where, f"expected an object, got {type(value).__name__}")
    return value


def _require(data: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in data:
        raise _fail(f"{where}{key}", "missing")
    return data[key]


def _rule(cls: type, value: Any, where: str, checks: dict[str, Any]) -> Any:
    """Build a rule dataclass from a partial object: missing keys keep their defaults."""
    data = _mapping(value, where)
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", f"unknown key (expected one of {', '.join(sorted(known))})")
    return cls(**{k: checks[k](v, f"{where}.{k}") for k, v in data.items()})


def _optional(check: Any) -> Any:
    return lambda v, where: None if v is None else check(v, where)


_WARMUP_CHECKS = {
    "min_count": lambda v, w: _int(v, w, 0),
    "min_time_s": lambda v, w: _number(v, w),
}
_STOP_CHECKS = {
    "min_count": lambda v, w: _int(v, w, 1),
    "min_time_s": lambda v, w: _number(v, w),
    "max_time_s": lambda v, w: _number(v, w, strict=True),
    "ci_rel": _optional(lambda v, w: _number(v, w)),
    "confidence": lambda v, w: _confidence(v, w),
    "max_count": lambda v, w: _int(v, w, 1),
}
_ROUNDS_CHECKS = {
    "min_rounds": lambda v, w: _int(v, w, 1),
    "max_rounds": lambda v, w: _int(v, w, 1),
    "max_time_s": lambda v, w: _number(v, w, strict=True),
    "ci_rel": _optional(lambda v, w: _number(v, w)),
    "confidence": lambda v, w: _confidence(v, w),
    "visit_min_time_s": lambda v, w: _number(v, w),
    "visit_min_samples": lambda v, w: _int(v, w, 1),
    "visit_warmup": lambda v, w: _int(v, w, 0),
    "group_size": lambda v, w: _int(v, w, 1),
}
_GRAPH_CHECKS = {
    "runs": lambda v, w: _int(v, w, 1),
    "warmup": lambda v, w: _int(v, w, 0),
}
_COOLDOWN_CHECKS = {
    "max_temp_c": _optional(lambda v, w: _number(v, w, minimum=-273.15)),
    "pause_s": lambda v, w: _number(v, w),
    "timeout_s": lambda v, w: _number(v, w),
}


def _sensor_names(value: Any, where: str) -> tuple[str, ...] | None:
    if value == "auto":
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise _fail(where, f'expected "auto" or a non-empty list of sensor names, got {value!r}')
    return tuple(value)


def _sample_hz(value: Any, where: str) -> float:
    hz = _number(value, where, strict=True)
    if hz > MAX_SAMPLE_HZ:
        raise _fail(where, f"expected at most {MAX_SAMPLE_HZ:g} samples per second, got {value!r}")
    return hz


_POWER_CHECKS = {
    "sensors": _sensor_names,
    "sample_hz": _sample_hz,
    "idle_s": lambda v, w: _number(v, w),
}


_DEFAULTS = MeasureSettings()


def _power(value: Any) -> PowerRule | None:
    """null (no power), "auto", or an object whose missing keys keep their defaults."""
    if value is None:
        return None
    if value == "auto":
        return PowerRule()
    if not isinstance(value, Mapping):
        raise _fail("power", f'expected null, "auto" or an object with sensors, sample_hz, idle_s; got {value!r}')
    return _rule(PowerRule, value, "power", _POWER_CHECKS)


def _governor(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z0-9_]+", value):
        raise _fail("governor", f'expected null or a governor name such as "performance", got {value!r}')
    return value


def _device(value: Any, runtime: str) -> str:
    if value not in DEVICES:
        raise _fail("device", f"expected one of {', '.join(DEVICES)}, got {value!r}")
    if value not in BACKENDS[runtime].devices:
        raise _fail("device", f"runtime {runtime} runs on {', '.join(BACKENDS[runtime].devices)} only")
    return value


def _confidence(value: Any, where: str) -> float:
    if not _is_number(value) or not 0.0 < value < 1.0:
        raise _fail(where, f"expected a number between 0 and 1 (exclusive), got {value!r}")
    return float(value)


def _inputs(value: Any, where: str) -> tuple[InputSpec, ...]:
    if not isinstance(value, list):
        raise _fail(where, "expected a list of {shape, dtype} objects")
    specs = []
    for i, item in enumerate(value):
        here = f"{where}[{i}]"
        item = _mapping(item, here)
        shape = _require(item, "shape", here + ".")
        if not isinstance(shape, list) or not all(_is_int(d) and d >= 1 for d in shape):
            raise _fail(f"{here}.shape", f"expected a list of positive integers, got {shape!r}")
        dtype = _require(item, "dtype", here + ".")
        if dtype not in DTYPES:
            raise _fail(f"{here}.dtype", f"expected one of {', '.join(DTYPES)}, got {dtype!r}")
        specs.append(InputSpec(shape=tuple(shape), dtype=dtype))
    return tuple(specs)


def _rounds(value: Any) -> RoundRule | None:
    """null (one block per model) or an object whose missing keys keep their defaults."""
    if value is None:
        return None
    rule = _rule(RoundRule, value, "rounds", _ROUNDS_CHECKS)
    if rule.max_rounds < rule.min_rounds:
        raise _fail("rounds.max_rounds", f"expected at least min_rounds ({rule.min_rounds}), got {rule.max_rounds}")
    return rule


def _runtime_graph(value: Any) -> GraphRule | None:
    """null (nothing captured) or an object whose missing keys keep their defaults."""
    return None if value is None else _rule(GraphRule, value, "runtime_graph", _GRAPH_CHECKS)


def _anchors(value: Any, models: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
    if value is None or value == []:
        return ()
    anchors = _models(value, "anchors")
    keys = [m.key for m in anchors] + [m.key for m in models]
    if len(set(keys)) != len(keys):
        dup = next(k for k in keys if keys.count(k) > 1)
        raise _fail("anchors", f"key {dup!r} appears twice among the models and anchors")
    return anchors


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(where, f"expected a non-empty string, got {value!r}")
    return value


def _input_data(value: Any, where: str, inputs: tuple[InputSpec, ...]) -> InputData | None:
    """null, or {"path", "members"} (members default: arr_0, arr_1, ... as numpy.savez names them)."""
    if value is None:
        return None
    data = _mapping(value, where)
    unknown = sorted(set(data) - {"path", "members"})
    if unknown:
        raise _fail(f"{where}.{unknown[0]}", "unknown key (expected path, members)")
    path = _text(_require(data, "path", where + "."), f"{where}.path")
    members = data.get("members", default_members(len(inputs)))
    if not isinstance(members, list) or not all(isinstance(m, str) and m for m in members):
        raise _fail(f"{where}.members", f"expected a list of member names, got {members!r}")
    if len(members) != len(inputs) or not inputs:
        raise _fail(f"{where}.members", f"expected one member per input ({len(inputs)}), got {len(members)}")
    return InputData(path=path, members=tuple(members))


def _models(value: Any, name: str = "models") -> tuple[ModelSpec, ...]:
    if not isinstance(value, list) or not value:
        raise _fail(name, f"expected a non-empty list of {name}")
    models = []
    for i, item in enumerate(value):
        here = f"{name}[{i}]"
        item = _mapping(item, here)
        key = _text(_require(item, "key", here + "."), f"{here}.key")
        path = _text(_require(item, "path", here + "."), f"{here}.path")
        inputs = _inputs(_require(item, "inputs", here + "."), f"{here}.inputs")
        data = _input_data(item.get("input_data"), f"{here}.input_data", inputs)
        if data is not None and name == "anchors":
            raise _fail(f"{here}.input_data", "an anchor is measured in rounds, on seeded inputs: leave it out")
        models.append(ModelSpec(key=key, path=path, inputs=inputs, input_data=data))
    return tuple(models)


def _core_mask(value: Any) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(_is_int(c) and c >= 0 for c in value):
        raise _fail("core_mask", f"expected null or a non-empty list of CPU ids, got {value!r}")
    return tuple(sorted(set(value)))


def parse_job(data: Any, base_dir: str = ".") -> Job:
    """Validate a decoded job object; raise :class:`JobError` naming the first bad field."""
    data = _mapping(data, "(job)")
    protocol = _require(data, "protocol", "")
    if not _is_int(protocol) or protocol < 1:
        raise _fail("protocol", f"expected a positive integer, got {protocol!r}")
    if protocol != PROTOCOL_VERSION:
        raise _fail(
            "protocol",
            f"this runner speaks protocol {PROTOCOL_VERSION}, the job is protocol {protocol}: "
            "copy the runner that matches the host to the device",
        )
    runtime = _require(data, "runtime", "")
    if runtime not in BACKENDS:
        raise _fail("runtime", f"unknown runtime {runtime!r}: expected one of {', '.join(sorted(BACKENDS))}")
    models = _models(_require(data, "models", ""))
    return Job(
        protocol=protocol,
        runtime=runtime,
        models=models,
        anchors=_anchors(data.get("anchors"), models),
        threads=_int(data.get("threads", 1), "threads", 1),
        core_mask=_core_mask(data.get("core_mask")),
        settings=MeasureSettings(
            warmup=_rule(Warmup, data.get("warmup", {}), "warmup", _WARMUP_CHECKS),
            stop=_rule(StopRule, data.get("stop", {}), "stop", _STOP_CHECKS),
            block_min_time_s=_number(data.get("block_min_time_s", _DEFAULTS.block_min_time_s), "block_min_time_s"),
            cooldown=_rule(Cooldown, data.get("cooldown", {}), "cooldown", _COOLDOWN_CHECKS),
            seed=_int(data.get("seed", 0), "seed", 0),
            rounds=_rounds(data.get("rounds", {})),
        ),
        power=_power(data.get("power")),
        governor=_governor(data.get("governor")),
        device=_device(data.get("device", "cpu"), runtime),
        runtime_graph=_runtime_graph(data.get("runtime_graph")),
        base_dir=base_dir,
    )


def checked(job: Job) -> Job:
    """``job`` as the runner will read it, every field validated as a job file's would be.

    A job without models yet (the host checks its rules before exporting any) is
    validated in everything but ``models``.
    """
    data = job_to_json(job)
    if job.models:
        return parse_job(data, base_dir=job.base_dir)
    data["models"] = [{"key": "-", "path": "-", "inputs": []}]
    return replace(parse_job(data, base_dir=job.base_dir), models=())


def load_job(path: str) -> Job:
    """Read and validate a job file; relative model paths resolve against its folder."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise JobError(f"cannot read job file {path}: {e.strerror or e}") from None
    except ValueError as e:
        raise JobError(f"job file {path} is not valid JSON: {e}") from None
    job = parse_job(data, base_dir=os.path.dirname(os.path.abspath(path)))
    check_input_data(job)
    return job


def check_input_data(job: Job) -> None:
    """Every model's input data readable here and fitting its inputs (from the archives' headers): a bad
    archive is a bad job, refused before anything is measured. Run where the files are (the device)."""
    for i, model in enumerate(job.models):
        if model.input_data is None:
            continue
        path = job.resolve(model.input_data.path)
        try:
            found = problem(read_headers(path), model.input_data.members, model.inputs)
        except InputDataError as e:
            found = str(e)
        else:
            found = found and f"{path}: {found}"
        if found:
            raise _fail(f"models[{i}].input_data", found)


def _fields_of(rule: Any) -> dict[str, Any]:
    return {f.name: getattr(rule, f.name) for f in fields(rule)}


def job_to_json(job: Job) -> dict[str, Any]:
    """The job as the protocol writes it (the host builds its jobs from these classes)."""
    s = job.settings
    return {
        "protocol": job.protocol,
        "runtime": job.runtime,
        "threads": job.threads,
        "core_mask": list(job.core_mask) if job.core_mask is not None else None,
        "seed": s.seed,
        "warmup": _fields_of(s.warmup),
        "stop": _fields_of(s.stop),
        "block_min_time_s": s.block_min_time_s,
        "cooldown": _fields_of(s.cooldown),
        "rounds": _fields_of(s.rounds) if s.rounds is not None else None,
        "power": _power_to_json(job.power),
        "governor": job.governor,
        "device": job.device,
        "runtime_graph": _fields_of(job.runtime_graph) if job.runtime_graph is not None else None,
        "models": [_model_to_json(m) for m in job.models],
        "anchors": [_model_to_json(m) for m in job.anchors],
    }


def _model_to_json(model: ModelSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "key": model.key,
        "path": model.path,
        "inputs": [{"shape": list(i.shape), "dtype": i.dtype} for i in model.inputs],
    }
    if model.input_data is not None:  # left out otherwise: an ordinary model's entry is as before
        out["input_data"] = {"path": model.input_data.path, "members": list(model.input_data.members)}
    return out


def _power_to_json(rule: PowerRule | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    sensors = list(rule.sensors) if rule.sensors is not None else "auto"
    return {"sensors": sensors, "sample_hz": rule.sample_hz, "idle_s": rule.idle_s}


__all__ = [
    "Cooldown",
    "GraphRule",
    "InputData",
    "InputSpec",
    "Job",
    "JobError",
    "MeasureSettings",
    "ModelSpec",
    "PowerRule",
    "RoundRule",
    "check_input_data",
    "checked",
    "job_to_json",
    "load_job",
    "parse_job",
]

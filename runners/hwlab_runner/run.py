"""Running a job: each model in order, one result line each, failures included.

A model that cannot be loaded or run becomes a ``"status": "error"`` line and
the job goes on: on a remote board a partial table is worth more than none.
What a job changes on the device (the governor) is put back when it ends,
on an error, SIGTERM, SIGHUP or Ctrl-C alike.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
from contextlib import ExitStack
from dataclasses import dataclass, replace
from typing import Any, Callable, Dict, Sequence, TextIO

from . import PROTOCOL_VERSION, sysinfo
from .affinity import apply_core_mask, current_affinity
from .backends import Backend, Loaded, get_backend
from .calls import distribution, measure_calls
from .cooldown import cool_down
from .energy import PowerPlan, PowerSampler, plan_power, power_result
from .governor import CpuGovernor, set_for_job
from .inputdata import load_samples
from .job import Job, ModelSpec
from .rounds import Floor, Member, RoundsResult, measure_rounds
from .signals import exit_on_signals
from .stats import summarize
from .timing import measure
from .watchdog import watch_host

Writer = Callable[[Dict[str, Any]], None]

SAMPLE_DIGITS = 3  # samples and summary in µs: ns resolution
TIME_DIGITS = 6  # durations in seconds


def _finite(value: Any) -> Any:
    """Replace NaN/infinity (not JSON) by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def line_writer(stream: TextIO) -> Writer:
    """Write each result as one JSON line and flush at once, so a crash later loses nothing."""

    def write(result: dict[str, Any]) -> None:
        stream.write(json.dumps(_finite(result), allow_nan=False) + "\n")
        stream.flush()

    return write


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Setup:
    """What the job-level set-up decided, shared by every model of the job."""

    root: str = "/"
    threads: int = 1
    cpus: list[int] | None = None  # CPUs whose governors are recorded; None = all
    power: PowerPlan | None = None


def _device_state(root: str = "/") -> dict[str, Any]:
    return {"freq_khz": sysinfo.cur_freq_khz(root), "temp_c": sysinfo.thermal_zones(root)}


def _governors(setup: Setup) -> dict[str, str]:
    governors = sysinfo.governors(setup.root)
    if setup.cpus is None:
        return governors
    return {cpu: gov for cpu, gov in governors.items() if int(cpu) in setup.cpus}


def capped_threads(threads: int, affinity: list[int] | None) -> int:
    """``threads``, or the number of CPUs in ``affinity`` when fewer: more would only time-share cores."""
    return min(threads, len(affinity)) if affinity else threads


def load_model(job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any], setup: Setup) -> Loaded:
    """Load one model, filling ``line`` with what loading tells (its time, the timer, the runtime's facts)."""
    path = job.model_path(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    start = time.perf_counter()
    loaded = backend.load(path, model.inputs, setup.threads, job.settings.seed, job.device)
    line["load_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    line["core_mask"] = current_affinity()
    line["timer"] = loaded.timer
    line.update(loaded.info)
    return loaded


def _state_before(line: dict[str, Any], setup: Setup) -> None:
    before = _device_state(setup.root)
    line["freq_khz_before"], line["temp_c_before"] = before["freq_khz"], before["temp_c"]


def _state_after(line: dict[str, Any], setup: Setup) -> None:
    after = _device_state(setup.root)
    line["freq_khz_after"], line["temp_c_after"] = after["freq_khz"], after["temp_c"]


def _samples_and_summary(samples_us: Sequence[float], confidence: float) -> dict[str, Any]:
    samples = [round(s, SAMPLE_DIGITS) for s in samples_us]
    # From the rounded samples, so a host recomputing it from samples_us gets the same numbers.
    return {"samples_us": samples, "summary": summarize(samples, confidence).to_json("us", SAMPLE_DIGITS)}


def _sampler(plan: PowerPlan | None) -> PowerSampler | None:
    """The power sampler of one model's timed window, when the job's sensor was found and read."""
    return PowerSampler(plan.sensor, plan.sample_hz) if plan and plan.sensor and not plan.reason else None


def measure_model(
    job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any], setup: Setup | None = None
) -> dict[str, Any]:
    """Load and measure one model in one block of its own, filling ``line`` in place as facts become known.

    ``line`` already holds the runtime fields, so whatever was learned before
    an exception is still reported with the error.
    """
    setup = setup or Setup(root=sysinfo.sysfs_root(), threads=job.threads)
    start = time.perf_counter()
    loaded = load_model(job, model, backend, line, setup)
    _state_before(line, setup)
    plan = setup.power
    sampler = _sampler(plan)
    try:
        with loaded.context():
            result = measure(
                loaded,
                job.settings.warmup,
                job.settings.stop,
                job.settings.block_min_time_s,
                block_timer=loaded.block_timer,
                on_sampling_start=sampler.start if sampler else None,
                on_sampling_end=sampler.stop if sampler else None,
            )
    finally:
        window = sampler.stop() if sampler else None  # idempotent: stops the thread after a failure too
    _state_after(line, setup)
    line["wall_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    line.update(
        status="ok",
        schedule="single",
        **_samples_and_summary(result.samples_us, job.settings.stop.confidence),
        block=result.block,
        warmup_count=result.warmup_count,
        warmup_time_s=round(result.warmup_time_s, TIME_DIGITS),
        sampling_time_s=round(result.sampling_time_s, TIME_DIGITS),
        stop_reason=result.stop_reason,
    )
    if plan is not None and window is not None:
        line["power"] = power_result(plan, window, float(line["summary"]["mean_us"]))
    return line


def measure_over_inputs(
    job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any], setup: Setup | None = None
) -> dict[str, Any]:
    """Load a model with input data and measure it call by call over its samples (calls.py), filling
    ``line`` in place: ``samples_us`` holds every call, ``summary`` is of them, ``distribution`` tells
    the quantiles and each sample's median."""
    assert model.input_data is not None
    setup = setup or Setup(root=sysinfo.sysfs_root(), threads=job.threads)
    start = time.perf_counter()
    loaded = load_model(job, model, backend, line, setup)
    samples = load_samples(job.resolve(model.input_data.path), model.input_data.members, model.inputs)
    _state_before(line, setup)
    plan = setup.power
    sampler = _sampler(plan)
    timer = loaded.block_timer
    try:
        with loaded.context():
            result = measure_calls(
                loaded,
                lambda i: loaded.feed(samples[i]),
                len(samples),
                job.settings.warmup,
                job.settings.stop,
                call_timer=(lambda: timer(1)) if timer is not None else None,
                on_sampling_start=sampler.start if sampler else None,
                on_sampling_end=sampler.stop if sampler else None,
            )
    finally:
        window = sampler.stop() if sampler else None
    _state_after(line, setup)
    line["wall_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    timed = _samples_and_summary(result.calls_us, job.settings.stop.confidence)
    line.update(
        status="ok",
        schedule="calls",
        **timed,
        block=1,
        warmup_count=result.warmup_count,
        warmup_time_s=round(result.warmup_time_s, TIME_DIGITS),
        sampling_time_s=round(result.sampling_time_s, TIME_DIGITS),
        stop_reason=result.stop_reason,
        distribution=distribution(timed["samples_us"], result.inputs),
    )
    if result.stop_reason != "cycles" and len(result.calls_us) < result.inputs:
        print(
            f"hwlab_runner: {model.key}: {result.stop_reason} before every input was timed "
            f"({len(result.calls_us)} of {result.inputs}): raise stop.max_time_s",
            file=sys.stderr,
        )
    if plan is not None and window is not None:
        line["power"] = power_result(plan, window, float(line["summary"]["mean_us"]))
    return line


def _identify(job: Job, backend: Backend) -> tuple[str | None, str | None, str | None]:
    """(runtime module, version, why no model can run or None)."""
    try:
        module, version = backend.identify()
    except Exception as e:
        return None, None, _error_text(e)
    try:
        backend.check_device(job.device)
    except Exception as e:
        return module, version, _error_text(e)
    return module, version, None


def _set_governor(governor: CpuGovernor, target: str, setup_error: str | None) -> dict[str, Any]:
    """The ``governor`` object of every line; the governor is left alone when no model can run."""
    if setup_error is not None:
        return {"requested": target, "applied": False, "reason": "not set: no model can run"}
    result = set_for_job(governor, target)
    if not result["applied"]:
        print(f"hwlab_runner: governor not set: {result['reason']}", file=sys.stderr)
    return result


def _plan_power(job: Job, root: str) -> PowerPlan | None:
    if job.power is None:
        return None
    plan = plan_power(root, job.power.sensors, job.power.sample_hz, job.power.idle_s)
    if plan.reason:
        print(f"hwlab_runner: no power numbers: {plan.reason}", file=sys.stderr)
    return plan


def run_job(job: Job, write: Writer, root: str | None = None, results_fd: int | None = None) -> int:
    """Measure every model of ``job`` in order, writing one line each; return how many failed.

    ``root`` is where sysfs is read (default: "/", or ``HWLAB_RUNNER_SYSFS_ROOT`` for tests).
    ``results_fd``: the descriptor the lines go to, watched for a reader that is gone.
    A governor the job sets is restored on the way out, whatever the way.
    """
    root = sysinfo.sysfs_root() if root is None else root
    watch_host(results_fd)  # a host killed outright cannot stop the job: the runner stops itself
    setup_error: str | None = None
    try:
        affinity: list[int] | None = apply_core_mask(job.core_mask)
    except Exception as e:
        setup_error, affinity = _error_text(e), current_affinity()
    if job.core_mask is not None and affinity is None and setup_error is None:
        print("hwlab_runner: this OS cannot pin threads; core_mask is ignored", file=sys.stderr)
    threads = capped_threads(job.threads, affinity)
    if threads < job.threads:
        print(f"hwlab_runner: threads capped from {job.threads} to {threads}: only {threads} CPUs", file=sys.stderr)
    backend = get_backend(job.runtime)
    module, version, problem = _identify(job, backend)
    setup_error = setup_error or problem
    if setup_error is not None:
        print(f"hwlab_runner: no model can run: {setup_error}", file=sys.stderr)
    cpus = affinity if affinity is not None else sysinfo.cpu_ids(root)
    governor = CpuGovernor(cpus, root) if job.governor is not None else None
    head: dict[str, Any] = {
        "runtime": job.runtime,
        "runtime_module": module,
        "runtime_version": version,
        "threads": threads,
        "threads_requested": job.threads,
        "device": job.device,
        "core_mask": affinity,
    }
    with exit_on_signals():
        try:
            if governor is not None and job.governor is not None:
                head["governor"] = _set_governor(governor, job.governor, setup_error)
            plan = _plan_power(job, root) if setup_error is None else None
            setup = Setup(root=root, threads=threads, cpus=cpus, power=plan)
            return _run_models(job, backend, write, setup, setup_error, head)
        finally:
            for failure in governor.undo() if governor is not None else []:
                print(f"hwlab_runner: {failure}: restore it by hand", file=sys.stderr)


def schedule_of(job: Job, setup: Setup) -> tuple[str, str | None]:
    """("rounds" or "single", why not rounds): rounds unless the job, its size or its power rule rules them out."""
    if job.settings.rounds is None:
        return "single", "the job asks for one block per model"
    if len(job.models) + len(job.anchors) < 2:
        return "single", "one model: there is no other to share its rounds' speed with"
    if setup.power is not None and setup.power.sensor is not None and not setup.power.reason:
        return "single", "power is sampled over one block per model"
    return "rounds", None


def _line(key: str, head: dict[str, Any], setup: Setup, anchor: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "key": key, "status": "error", **head}
    if anchor:
        line["anchor"] = True
    line["governors"] = _governors(setup)
    if setup.power is not None and (setup.power.sensor is None or setup.power.reason):
        line["power"] = setup.power.unavailable()
    return line


def _failed(line: dict[str, Any], key: str, exc: BaseException) -> None:
    line["status"], line["error"] = "error", _error_text(exc)
    print(f"hwlab_runner: model {key} failed:", file=sys.stderr)
    traceback.print_exc(file=sys.stderr)


def _cool_down(job: Job, setup: Setup) -> float:
    rule = job.settings.cooldown
    return round(cool_down(rule.max_temp_c, rule.pause_s, rule.timeout_s, setup.root), TIME_DIGITS)


def _run_models(
    job: Job, backend: Backend, write: Writer, setup: Setup, setup_error: str | None, head: dict[str, Any]
) -> int:
    """The ordinary models (with the anchors), then each model with input data on its own, call by call.
    Returns the models that failed."""
    plain = tuple(m for m in job.models if m.input_data is None)
    failures = _run_plain(replace(job, models=plain), backend, write, setup, setup_error, head) if plain else 0
    if not plain and job.anchors:
        print("hwlab_runner: no anchor measured: they scale ordinary models, and every model has input data",
              file=sys.stderr)  # fmt: skip
    for model in job.models:
        if model.input_data is not None:
            failures += _run_over_inputs(job, model, backend, write, setup, setup_error, head)
    return failures


def _run_over_inputs(
    job: Job,
    model: ModelSpec,
    backend: Backend,
    write: Writer,
    setup: Setup,
    setup_error: str | None,
    head: dict[str, Any],
) -> bool:
    """One model with input data: its line, ok or error; True when it failed."""
    line = _line(model.key, head, setup, anchor=False)
    try:
        if setup_error is not None:
            line["error"] = setup_error
        else:
            line["cooldown_s"] = _cool_down(job, setup)
            measure_over_inputs(job, model, backend, line, setup)
            _capture_graph(job, model, backend, line, setup)
    except Exception as e:
        _failed(line, model.key, e)
    write(line)
    gc.collect()
    return line["status"] != "ok"


def _run_plain(
    job: Job, backend: Backend, write: Writer, setup: Setup, setup_error: str | None, head: dict[str, Any]
) -> int:
    """Anchors first, then the models; in groups of rounds, or one block each. Returns the models that failed."""
    schedule, why_not = schedule_of(job, setup) if setup_error is None else ("single", None)
    if schedule == "rounds":
        return _run_groups(job, backend, write, setup, head)
    if why_not and job.settings.rounds is not None:
        print(f"hwlab_runner: one block per model: {why_not}", file=sys.stderr)
    failures = 0
    for model in (*job.anchors, *job.models):
        anchor = model in job.anchors
        line = _line(model.key, head, setup, anchor)
        try:
            if setup_error is not None:
                line["error"] = setup_error
            else:
                line["cooldown_s"] = _cool_down(job, setup)
                measure_model(job, model, backend, line, setup)
                if not anchor:
                    _capture_graph(job, model, backend, line, setup)
        except Exception as e:
            _failed(line, model.key, e)
        failures += line["status"] != "ok" and not anchor
        write(line)
        gc.collect()
    return failures


def _run_groups(job: Job, backend: Backend, write: Writer, setup: Setup, head: dict[str, Any]) -> int:
    rule = job.settings.rounds
    assert rule is not None
    failures = 0
    for index, start in enumerate(range(0, len(job.models), rule.group_size)):
        failures += _run_group(job, index, job.models[start : start + rule.group_size], backend, write, setup, head)
        gc.collect()
    return failures


def _run_group(
    job: Job,
    index: int,
    models: Sequence[ModelSpec],
    backend: Backend,
    write: Writer,
    setup: Setup,
    head: dict[str, Any],
) -> int:
    """Load the anchors and ``models``, measure them in rounds, then write their lines (anchors first)."""
    rule = job.settings.rounds
    assert rule is not None
    seed = job.settings.seed + index
    lines: dict[str, dict[str, Any]] = {}
    members: dict[str, Member] = {}
    start = time.perf_counter()
    cooldown_s = _cool_down(job, setup)
    with ExitStack() as contexts:
        for model in (*job.anchors, *models):
            line = lines[model.key] = _line(model.key, head, setup, model in job.anchors)
            line["cooldown_s"] = cooldown_s
            try:
                loaded = load_model(job, model, backend, line, setup)
                contexts.enter_context(loaded.context())
                members[model.key] = Member(loaded, loaded.block_timer)
            except Exception as e:
                _failed(line, model.key, e)
        for line in lines.values():
            _state_before(line, setup)
        anchors = [m.key for m in job.anchors]
        result = (
            measure_rounds(members, rule, job.settings.block_min_time_s, seed, anchors=anchors) if members else None
        )
    wall_time_s = round(time.perf_counter() - start, TIME_DIGITS)
    for key, line in lines.items():
        _state_after(line, setup)
        if result is not None and key in members:
            _round_result(line, key, result, index, seed, rule.confidence)
        line["wall_time_s"] = wall_time_s
    for model in models:  # after every model of the group was timed: the capture never overlaps a measurement
        _capture_graph(job, model, backend, lines[model.key], setup)
    for line in lines.values():
        write(line)
    return sum(lines[m.key]["status"] != "ok" for m in models)


def _capture_graph(job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any], setup: Setup) -> None:
    """The runtime graph of a model measured without error, when the job asks (see runtime_graph.py); a
    capture that fails is said in the line, and the measurement stands."""
    if job.runtime_graph is None or line.get("status") != "ok":
        return
    if job.device != "cpu":
        line["runtime_graph"] = {"error": "the runtime graph is captured on the CPU only"}
        return
    try:
        line["runtime_graph"] = backend.runtime_graph(
            job.model_path(model), model.inputs, setup.threads, job.settings.seed, job.runtime_graph
        )
    except Exception as e:  # noqa: BLE001 - a capture that fails is a note on a good measurement
        line["runtime_graph"] = {"error": _error_text(e)}


def _floor_fields(floor: Floor) -> dict[str, Any]:
    finite = math.isfinite(floor.ci_high_us)
    return {
        "floor_us": round(floor.us, SAMPLE_DIGITS),
        "floor_ci_low_us": round(floor.ci_low_us, SAMPLE_DIGITS),
        "floor_ci_high_us": round(floor.ci_high_us, SAMPLE_DIGITS) if finite else None,
        "floor_ci_rel": round(floor.ci_rel, 6) if finite else None,
    }


def _round_result(
    line: dict[str, Any], key: str, result: RoundsResult, group: int, seed: int, confidence: float
) -> None:
    member = result.members[key]
    if member.error is not None:
        line["status"], line["error"] = "error", member.error
        return
    corrected = result.corrected[key]
    line.update(
        status="ok",
        schedule="rounds",
        **_samples_and_summary(member.samples_us, confidence),
        block=member.block,
        warmup_count=member.warmup_count,
        warmup_time_s=round(member.warmup_ns / 1e9, TIME_DIGITS),
        sampling_time_s=round(member.sampling_ns / 1e9, TIME_DIGITS),
        stop_reason=result.stop_reason,
        rounds={
            "group": group,
            "seed": seed,
            "members": len(result.corrected),
            "n": len(member.visit_us),
            "time_s": round(result.time_s, TIME_DIGITS),
            "visit_median_us": [round(v, SAMPLE_DIGITS) for v in member.visit_us],
            "factors": [round(f, 6) for f in result.factors],
            "corrected_median_us": round(corrected.median_us, SAMPLE_DIGITS),
            "ci_low_us": round(corrected.ci_low_us, SAMPLE_DIGITS),
            "ci_high_us": round(corrected.ci_high_us, SAMPLE_DIGITS) if math.isfinite(corrected.ci_high_us) else None,
            "ci_rel": round(corrected.ci_rel, 6) if math.isfinite(corrected.ci_rel) else None,
            "spread_rel": round(corrected.spread_rel, 6) if math.isfinite(corrected.spread_rel) else None,
            "sensitivity": round(corrected.sensitivity, 6),
            **_floor_fields(corrected.floor),
        },
    )

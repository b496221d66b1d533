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
from dataclasses import dataclass
from typing import Any, Callable, Dict, TextIO

from . import PROTOCOL_VERSION, sysinfo
from .affinity import apply_core_mask, current_affinity
from .backends import Backend, get_backend
from .cooldown import cool_down
from .energy import PowerPlan, PowerSampler, plan_power, power_result
from .governor import CpuGovernor, set_for_job
from .job import Job, ModelSpec
from .signals import exit_on_signals
from .stats import summarize
from .timing import measure
from .watchdog import watch_parent

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


def measure_model(
    job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any], setup: Setup | None = None
) -> dict[str, Any]:
    """Load and measure one model, filling ``line`` in place as facts become known.

    ``line`` already holds the runtime fields, so whatever was learned before
    an exception is still reported with the error.
    """
    setup = setup or Setup(root=sysinfo.sysfs_root(), threads=job.threads)
    path = job.model_path(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    start = time.perf_counter()
    loaded = backend.load(path, model.inputs, setup.threads, job.settings.seed, job.device)
    line["load_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    line["core_mask"] = current_affinity()
    line["timer"] = loaded.timer
    line.update(loaded.info)
    before = _device_state(setup.root)
    line["freq_khz_before"], line["temp_c_before"] = before["freq_khz"], before["temp_c"]
    plan = setup.power
    sampler = PowerSampler(plan.sensor, plan.sample_hz) if plan and plan.sensor and not plan.reason else None
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
    after = _device_state(setup.root)
    line["wall_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    samples = [round(s, SAMPLE_DIGITS) for s in result.samples_us]
    # From the rounded samples, so a host recomputing it from samples_us gets the same numbers.
    summary = summarize(samples, job.settings.stop.confidence).to_json("us", SAMPLE_DIGITS)
    line.update(
        status="ok",
        samples_us=samples,
        block=result.block,
        warmup_count=result.warmup_count,
        warmup_time_s=round(result.warmup_time_s, TIME_DIGITS),
        sampling_time_s=round(result.sampling_time_s, TIME_DIGITS),
        stop_reason=result.stop_reason,
        summary=summary,
        freq_khz_after=after["freq_khz"],
        temp_c_after=after["temp_c"],
    )
    if plan is not None and window is not None:
        line["power"] = power_result(plan, window, float(summary["mean_us"]))  # type: ignore[arg-type]
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


def run_job(job: Job, write: Writer, root: str | None = None) -> int:
    """Measure every model of ``job`` in order, writing one line each; return how many failed.

    ``root`` is where sysfs is read (default: "/", or ``HWLAB_RUNNER_SYSFS_ROOT`` for tests).
    A governor the job sets is restored on the way out, whatever the way.
    """
    root = sysinfo.sysfs_root() if root is None else root
    watch_parent()  # a host killed outright cannot stop the job: the runner stops itself
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


def _run_models(
    job: Job, backend: Backend, write: Writer, setup: Setup, setup_error: str | None, head: dict[str, Any]
) -> int:
    failures = 0
    for model in job.models:
        line: dict[str, Any] = {"protocol": PROTOCOL_VERSION, "key": model.key, "status": "error", **head}
        line["governors"] = _governors(setup)
        if setup.power is not None and (setup.power.sensor is None or setup.power.reason):
            line["power"] = setup.power.unavailable()
        try:
            if setup_error is not None:
                line["error"] = setup_error
            else:
                rule = job.settings.cooldown
                line["cooldown_s"] = round(
                    cool_down(rule.max_temp_c, rule.pause_s, rule.timeout_s, setup.root), TIME_DIGITS
                )
                measure_model(job, model, backend, line, setup)
        except Exception as e:
            line["status"], line["error"] = "error", _error_text(e)
            print(f"hwlab_runner: model {model.key} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        failures += line["status"] != "ok"
        write(line)
        gc.collect()
    return failures

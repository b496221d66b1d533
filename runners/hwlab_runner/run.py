"""Running a job: each model in order, one result line each, failures included.

A model that cannot be loaded or run becomes a ``"status": "error"`` line and
the job goes on: on a remote board a partial table is worth more than none.
"""

from __future__ import annotations

import gc
import json
import math
import os
import sys
import time
import traceback
from typing import Any, Callable, Dict, TextIO

from . import PROTOCOL_VERSION, sysinfo
from .affinity import apply_core_mask, current_affinity
from .backends import Backend, get_backend
from .cooldown import cool_down
from .job import Job, ModelSpec
from .stats import summarize
from .timing import measure

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


def _device_state() -> dict[str, Any]:
    return {"freq_khz": sysinfo.cur_freq_khz(), "temp_c": sysinfo.thermal_zones()}


def measure_model(job: Job, model: ModelSpec, backend: Backend, line: dict[str, Any]) -> dict[str, Any]:
    """Load and measure one model, filling ``line`` in place as facts become known.

    ``line`` already holds the runtime fields, so whatever was learned before
    an exception is still reported with the error.
    """
    path = job.model_path(model)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"model file not found: {path}")
    start = time.perf_counter()
    loaded = backend.load(path, model.inputs, job.threads, job.seed)
    line["load_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    line["core_mask"] = current_affinity()
    before = _device_state()
    line["freq_khz_before"], line["temp_c_before"] = before["freq_khz"], before["temp_c"]
    with loaded.context():
        result = measure(loaded, job.warmup, job.stop, job.block_min_time_s)
    after = _device_state()
    line["wall_time_s"] = round(time.perf_counter() - start, TIME_DIGITS)
    samples = [round(s, SAMPLE_DIGITS) for s in result.samples_us]
    line.update(
        status="ok",
        samples_us=samples,
        block=result.block,
        warmup_count=result.warmup_count,
        warmup_time_s=round(result.warmup_time_s, TIME_DIGITS),
        sampling_time_s=round(result.sampling_time_s, TIME_DIGITS),
        stop_reason=result.stop_reason,
        # From the rounded samples, so a host recomputing it from samples_us gets the same numbers.
        summary=summarize(samples, job.stop.confidence).to_json("us", SAMPLE_DIGITS),
        freq_khz_after=after["freq_khz"],
        temp_c_after=after["temp_c"],
    )
    return line


def run_job(job: Job, write: Writer) -> int:
    """Measure every model of ``job`` in order, writing one line each; return how many failed."""
    setup_error: str | None = None
    try:
        affinity: list[int] | None = apply_core_mask(job.core_mask)
    except Exception as e:
        setup_error, affinity = _error_text(e), current_affinity()
    if job.core_mask is not None and affinity is None and setup_error is None:
        print("hwlab_runner: this OS cannot pin threads; core_mask is ignored", file=sys.stderr)
    backend = get_backend(job.runtime)
    module: str | None = None
    version: str | None = None
    try:
        module, version = backend.identify()
    except Exception as e:
        setup_error = setup_error or _error_text(e)
    if setup_error is not None:
        print(f"hwlab_runner: no model can run: {setup_error}", file=sys.stderr)
    failures = 0
    for model in job.models:
        line: dict[str, Any] = {
            "protocol": PROTOCOL_VERSION,
            "key": model.key,
            "status": "error",
            "runtime": job.runtime,
            "runtime_module": module,
            "runtime_version": version,
            "threads": job.threads,
            "core_mask": affinity,
        }
        try:
            if setup_error is not None:
                line["error"] = setup_error
            else:
                line["cooldown_s"] = round(
                    cool_down(job.cooldown.max_temp_c, job.cooldown.pause_s, job.cooldown.timeout_s),
                    TIME_DIGITS,
                )
                measure_model(job, model, backend, line)
        except Exception as e:
            line["status"], line["error"] = "error", _error_text(e)
            print(f"hwlab_runner: model {model.key} failed:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
        failures += line["status"] != "ok"
        write(line)
        gc.collect()
    return failures

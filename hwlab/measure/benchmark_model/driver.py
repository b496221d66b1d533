"""Time one ``.tflite`` model with ``benchmark_model`` and report it as a runner result line.

Why: devices without Python (most phones) cannot run ``hwlab_runner``, but TensorFlow
Lite's ``benchmark_model`` binary runs on any of them, over ADB or SSH alike. This module
builds its command line, runs it through any Transport and turns its log into the
result schema of runners/PROTOCOL.md, so tables and predictors need no special case.

Flag mapping (MeasureSettings -> benchmark_model; names and semantics from
``BenchmarkModel::GetFlags``/``Run`` in tflite/tools/benchmark/benchmark_model.cc):

- ``warmup.min_count`` -> ``--warmup_runs``, ``warmup.min_time_s`` -> ``--warmup_min_secs``:
  the warm-up runs until both are reached, like the runner's.
- ``stop.min_count`` -> ``--num_runs``, ``stop.min_time_s`` -> ``--min_secs``: regular runs
  continue until both are reached.
- ``stop.max_time_s`` -> ``--max_secs``: no new run starts past it, even before
  ``num_runs``. benchmark_model applies the same limit to the warm-up too.
- ``threads`` -> ``--num_threads``; ``op_profiling`` -> ``--enable_op_profiling=true``
  (adds a profiler event around every op, so leave it off when the whole-model
  latency must be untouched); ``use_xnnpack`` -> ``--use_xnnpack=true|false``
  (left out when None: the build's default, usually XNNPACK on; setting it
  explicitly also turns off the runtime's implicit default delegate).
- No equivalent, so ignored: ``stop.ci_rel``/``stop.confidence`` (no stop-on-precision
  rule: the run stops as soon as the minimums are met), ``stop.max_count`` (``num_runs``
  is a minimum), ``block_min_time_s`` (every run is one ``Invoke``), ``seed`` (inputs
  come from ``std::random_device``). Cooldown, governor and power are the measurer's
  business (:mod:`hwlab.measure.benchmark_model.measurer`).
- ``core_mask`` -> the command is prefixed with ``taskset <hex mask>`` (bit i = CPU i).

Summary mapping (the regular runs' ``Stat`` line -> ``summary``):
``n`` = count, ``mean_us`` = avg, ``std_us`` = std (benchmark_model's population
deviation, ddof=0, truncated to whole µs, where the runner uses ddof=1),
``min_us``/``max_us`` = min/max, ``median_us`` = median (nearest rank: the upper
middle value for an even count) when printed, else null (or the single value
when all runs took the same time); added ``p5_us``/``p95_us`` likewise.
``p10_us``, ``p90_us``, ``q1_us``, ``q3_us``, ``iqr_us``, ``ci_low_us``,
``ci_high_us``, ``ci_rel``: null (not printed). Values rounded to 3 decimals.

Other fields: ``samples_us`` is ``[]`` (benchmark_model prints no per-run times),
``block`` 1, ``stop_reason`` ``"benchmark_model"``, ``warmup_count`` = the
warm-up's count, ``warmup_time_s``/``sampling_time_s`` = count × avg of the
warm-up/regular runs (time inside ``Invoke``, sleeps excluded), ``load_time_s`` =
the ``Init`` time, ``wall_time_s`` null, ``command_time_s`` = the whole command
as the host timed it (process start, transport and model load included),
``freq_khz_*``/``temp_c_*`` ``{}`` (not read), ``runtime_version`` from the output
if printed, else the caller's. Added when known: ``first_inference_us``,
``model_size_mb``, ``memory_mb`` and, with op profiling, ``op_profile``: one entry
per node of every graph's ``Run Order`` table (``graph``, ``node_type``, ``name``,
``first_ms``, ``avg_ms``, ``pct``, ``cdf_pct``, ``mem_kb``, ``times_called``);
``pct`` is the node's share of its graph's profiled time.

The runtime's own kernels (:func:`profiled_graph`): op profiling adds a profiler event
around every op, so the timed run stays unprofiled and, when the job asks for the
runtime's graph, a second short run with ``--enable_op_profiling=true`` gives the nodes
the runtime executed: XNNPACK's own operators when it took the model (``Convolution
(NHWC, F32) IGEMM``), TFLite's builtins otherwise. This is LiteRT's counterpart of
onnxruntime's optimised graph (runners/hwlab_runner/runtime_graph.py); node times are
benchmark_model's averages over the profiled runs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, replace
from typing import Any

from hwlab_runner import PROTOCOL_VERSION

from hwlab.errors import BenchmarkParseError, CommandFailed, CommandTimeout, InvalidRequest
from hwlab.measure.benchmark_model.logtext import tail
from hwlab.measure.benchmark_model.parse import BenchmarkOutput, parse_benchmark_output
from hwlab.measure.jobs import GraphRule
from hwlab.measure.settings import MeasureSettings
from hwlab.transport.base import Transport

RUNTIME = "litert"
RUNTIME_MODULE = "benchmark_model"
GRAPH_SOURCE = "benchmark_model op profiling"  # a runtime graph's ``source`` when it came from this binary
STOP_REASON = "benchmark_model"
_US_DIGITS = 3
_S_DIGITS = 6
# Beyond the two max_secs phases: process start, model load, profile printing.
_TIMEOUT_SLACK_S = 120.0


def cpu_mask_hex(cpus: Iterable[int]) -> str:
    """The hex affinity mask ``taskset`` takes (bit i set for CPU i), without ``0x``."""
    ids = list(cpus)
    if not ids or any(not isinstance(c, int) or isinstance(c, bool) or c < 0 for c in ids):
        raise InvalidRequest(
            f"core mask must be a non-empty list of CPU ids >= 0, not {ids!r}", hint="fix --core-mask or core_mask"
        )
    return format(sum(1 << c for c in set(ids)), "x")


def _secs(value: float) -> str:
    return repr(float(value))


def benchmark_command(
    binary: str,
    graph: str,
    threads: int,
    settings: MeasureSettings,
    *,
    op_profiling: bool = False,
    use_xnnpack: bool | None = None,
) -> list[str]:
    """benchmark_model's argument list for one model (mapping in the module docstring)."""
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise InvalidRequest(f"threads must be an integer >= 1, not {threads!r}", hint="pass --threads 1 or more")
    if not graph:
        raise InvalidRequest("graph (the model path on the device) must not be empty", hint="give the model's path")
    argv = [
        binary,
        f"--graph={graph}",
        f"--num_threads={threads}",
        f"--warmup_runs={settings.warmup.min_count}",
        f"--warmup_min_secs={_secs(settings.warmup.min_time_s)}",
        f"--num_runs={settings.stop.min_count}",
        f"--min_secs={_secs(settings.stop.min_time_s)}",
        f"--max_secs={_secs(settings.stop.max_time_s)}",
    ]
    if op_profiling:
        argv.append("--enable_op_profiling=true")
    if use_xnnpack is not None:
        argv.append(f"--use_xnnpack={'true' if use_xnnpack else 'false'}")
    return argv


def pinned(argv: Sequence[str], core_mask: Sequence[int] | None) -> list[str]:
    """``argv`` behind ``taskset <mask>`` when a core mask is given."""
    return list(argv) if core_mask is None else ["taskset", cpu_mask_hex(core_mask), *argv]


def default_timeout(settings: MeasureSettings) -> float:
    """A deadline no healthy run reaches: warm-up and regular runs each stop by max_secs."""
    return 2 * settings.stop.max_time_s + _TIMEOUT_SLACK_S


def _round(value: float | None, digits: int = _US_DIGITS) -> float | None:
    return None if value is None else round(value, digits)


def _busy_s(count: int, avg_us: float | None) -> float | None:
    return None if avg_us is None else round(count * avg_us / 1e6, _S_DIGITS)


def _base(key: str, threads: int, core_mask: Sequence[int] | None, version: str | None) -> dict[str, Any]:
    return {
        "protocol": PROTOCOL_VERSION,
        "key": key,
        "status": "error",
        "runtime": RUNTIME,
        "runtime_module": RUNTIME_MODULE,
        "runtime_version": version,
        "threads": threads,
        "core_mask": list(core_mask) if core_mask is not None else None,
    }


def _op_profile(parsed: BenchmarkOutput) -> list[dict[str, Any]]:
    assert parsed.op_profile is not None
    return [
        {
            "graph": graph.label,
            "node_type": row.node_type,
            "name": row.name,
            "first_ms": row.first_ms,
            "avg_ms": row.avg_ms,
            "pct": row.pct,
            "cdf_pct": row.cdf_pct,
            "mem_kb": row.mem_kb,
            "times_called": row.times_called,
        }
        for graph in parsed.op_profile.graphs
        for row in graph.run_order
    ]


def benchmark_result(
    parsed: BenchmarkOutput,
    key: str,
    threads: int,
    *,
    core_mask: Sequence[int] | None = None,
    runtime_version: str | None = None,
    command_time_s: float | None = None,
) -> dict[str, Any]:
    """The runner-protocol result line for a parsed run (mapping in the module docstring)."""
    r, w = parsed.regular, parsed.warmup
    timings = parsed.timings
    init_us = timings.init_us if timings and timings.init_us is not None else None
    if init_us is None and parsed.init_ms is not None:
        init_us = parsed.init_ms * 1000.0
    result = _base(key, threads, core_mask, parsed.version or runtime_version)
    result.update(
        status="ok",
        samples_us=[],
        block=1,
        warmup_count=w.count if w else None,
        warmup_time_s=_busy_s(w.count, w.avg_us) if w else None,
        sampling_time_s=_busy_s(r.count, r.avg_us),
        stop_reason=STOP_REASON,
        summary={
            "n": r.count,
            "median_us": _round(r.median_us),
            "mean_us": _round(r.avg_us),
            "std_us": _round(r.std_us),
            "p10_us": None,
            "p90_us": None,
            "q1_us": None,
            "q3_us": None,
            "iqr_us": None,
            "min_us": _round(r.min_us),
            "max_us": _round(r.max_us),
            "ci_low_us": None,
            "ci_high_us": None,
            "ci_rel": None,
            "p5_us": _round(r.p5_us),
            "p95_us": _round(r.p95_us),
        },
        load_time_s=None if init_us is None else round(init_us / 1e6, _S_DIGITS),
        wall_time_s=None,
        command_time_s=None if command_time_s is None else round(command_time_s, _S_DIGITS),
        freq_khz_before={},
        freq_khz_after={},
        temp_c_before={},
        temp_c_after={},
        first_inference_us=_round(timings.first_inference_us) if timings else None,
        model_size_mb=parsed.model_size_mb,
        memory_mb=({k: v for k, v in asdict(parsed.memory).items() if v is not None} if parsed.memory else None),
    )
    if parsed.op_profile is not None:
        result["op_profile"] = _op_profile(parsed)
    return result


def error_result(
    key: str,
    threads: int,
    error: BaseException | str,
    *,
    core_mask: Sequence[int] | None = None,
    runtime_version: str | None = None,
) -> dict[str, Any]:
    """A ``status: "error"`` line; ``error`` reads ``"{ExceptionType}: {message}"`` like the runner's."""
    result = _base(key, threads, core_mask, runtime_version)
    result["error"] = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
    return result


def run_benchmark_model(
    transport: Transport,
    binary: str,
    model_path: str,
    key: str,
    threads: int,
    settings: MeasureSettings,
    core_mask: Sequence[int] | None = None,
    timeout: float | None = None,
    *,
    op_profiling: bool = False,
    use_xnnpack: bool | None = None,
    runtime_version: str | None = None,
) -> dict[str, Any]:
    """Run benchmark_model on one model and return its result line.

    A failure of this model (non-zero exit, unparseable output, past the
    deadline) is an error line quoting the output's last lines; any other
    TransportError (the device is gone) propagates.
    """
    command = benchmark_command(
        binary, model_path, threads, settings, op_profiling=op_profiling, use_xnnpack=use_xnnpack
    )
    deadline = default_timeout(settings) if timeout is None else timeout
    kw = {"core_mask": core_mask, "runtime_version": runtime_version}
    start = time.monotonic()
    parsed = _run_parsed(transport, command, core_mask, deadline)
    if isinstance(parsed, Exception):
        return error_result(key, threads, parsed, **kw)
    return benchmark_result(parsed, key, threads, command_time_s=time.monotonic() - start, **kw)


def _run_parsed(
    transport: Transport, command: list[str], core_mask: Sequence[int] | None, deadline: float
) -> BenchmarkOutput | CommandTimeout | CommandFailed | BenchmarkParseError:
    """One run of ``command`` (pinned), parsed; this model's failure (past the deadline, a non-zero exit
    quoting the output's last lines, unparseable output) is returned, a lost device raises."""
    try:
        done = transport.run(pinned(command, core_mask), timeout=deadline)
    except CommandTimeout as err:
        return err
    text = f"{done.stdout}\n{done.stderr}"
    if done.rc != 0:
        return CommandFailed(command, done.rc, done.stdout, tail(text))
    try:
        return parse_benchmark_output(text)
    except BenchmarkParseError as err:
        return err


def _profiling_settings(settings: MeasureSettings, rule: GraphRule) -> MeasureSettings:
    """``rule.warmup`` warm-up and ``rule.runs`` profiled runs, no minimum time, the job's time limit."""
    return replace(
        settings,
        warmup=replace(settings.warmup, min_count=rule.warmup, min_time_s=0.0),
        stop=replace(settings.stop, min_count=rule.runs, min_time_s=0.0),
    )


def graph_of(parsed: BenchmarkOutput) -> dict[str, Any]:
    """The runtime graph of a profiled run: every executed node of the regular runs, in run order."""
    if parsed.op_profile is None:
        return {"error": "benchmark_model printed no op profile: is this build's profiler compiled in?"}
    nodes = [
        {"graph": node["graph"], "type": node["node_type"], "name": node["name"],
         "avg_us": round(node["avg_ms"] * 1000.0, _US_DIGITS), "times_called": node["times_called"]}
        for node in _op_profile(parsed)
    ]  # fmt: skip
    return {"source": GRAPH_SOURCE, "runs": parsed.regular.count, "nodes": nodes}


def profiled_graph(
    transport: Transport,
    binary: str,
    model_path: str,
    threads: int,
    settings: MeasureSettings,
    rule: GraphRule,
    core_mask: Sequence[int] | None = None,
    *,
    use_xnnpack: bool | None = None,
) -> dict[str, Any]:
    """What the runtime executed for one model, from a separate op-profiled run (module docstring).

    A failure is reported inside the graph (``{"error": ...}``), as the runner reports a graph it could not
    capture: the model's timed result stands either way.
    """
    profiling = _profiling_settings(settings, rule)
    command = benchmark_command(binary, model_path, threads, profiling, op_profiling=True, use_xnnpack=use_xnnpack)
    parsed = _run_parsed(transport, command, core_mask, default_timeout(profiling))
    if isinstance(parsed, Exception):
        return {"error": f"{type(parsed).__name__}: {parsed}"}
    return graph_of(parsed)

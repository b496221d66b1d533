"""Parse what TensorFlow Lite's ``benchmark_model`` prints into typed records.

Why a parser: on devices without Python (most phones), hwlab times ``.tflite``
models with the stock ``benchmark_model`` binary, whose only interface is its log. Pass
stdout and stderr together (older releases log everything on stderr). Formats
(tensorflow/tensorflow ``tensorflow/lite/tools/...``, google-ai-edge/LiteRT
``tflite/tools/...``):

- Parameters: ``LOG_TOOL_PARAM`` (``tools/tool_params.h``) prints
  ``<description>: [<value>]``, booleans as 1/0, from ``BenchmarkModel::LogParams``
  (``benchmark/benchmark_model.cc``), ``BenchmarkTfLiteModel::LogParams``
  (``benchmark/benchmark_tflite_model.cc``) and the delegate providers. Older
  releases log every parameter, newer ones only those given on the command line
  (``--graph`` always). Some older providers print ``Use nnapi : [0]``.
- Runs: ``BenchmarkModel::Run`` prints ``Running benchmark for at least N
  iterations and at least S seconds but terminate if exceeding M seconds.`` and
  then a ``Stat`` line (see :mod:`hwlab.measure.benchmark_model.logtext`), once for the warm-up
  and once for the regular runs; 1.x releases said ``Running benchmark for N
  iterations``.
- ``Initialized session in X ms.``, ``The input model file size (MB): X``.
- ``BenchmarkLoggingListener::OnBenchmarkEnd``: ``Inference timings in us: Init: ..,
  First inference: .., Warmup (avg): .., Inference (avg): ..`` (1.x: ``Average
  inference timings in us: Warmup: .., Init: .., no stats: ..``), then memory:
  ``Peak memory footprint (MB): init=.. overall=..`` (older, max RSS growth) or
  ``Memory footprint delta from the start of the tool (MB): init=.. overall=..``
  (newer), and with ``--report_peak_memory_footprint`` ``Overall peak memory
  footprint (MB) via periodic monitoring: X``.
- Op profiling: :mod:`hwlab.measure.benchmark_model.profile_tables`.

No release read prints the runtime's version; a line naming TensorFlow Lite or
LiteRT and a ``version`` is taken if a build adds one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hwlab.errors import BenchmarkParseError
from hwlab.measure.benchmark_model.logtext import (
    NUMBER,
    RunStats,
    is_stat_line,
    parse_stat_line,
    strip_prefix,
    tail,
    to_float,
)
from hwlab.measure.benchmark_model.profile_tables import INIT_SECTION, RUN_SECTION, OpProfile, parse_profile_section

_PARAM = re.compile(r"^([^\[\]]+?)\s*:\s*\[(.*)\]$")
_RUNNING = re.compile(
    rf"Running benchmark for (?:at least )?(\d+) iterations"
    rf"(?: and at least ({NUMBER}) seconds but terminate if exceeding ({NUMBER}) seconds)?"
)
_SESSION = re.compile(rf"Initialized session in ({NUMBER})\s*ms")
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): ({NUMBER})")
_TIMINGS = re.compile(r"(?:Average )?[Ii]nference timings in us:\s*(.*)")
_TIMING_PAIR = re.compile(rf"([A-Za-z][A-Za-z ()]*?):\s*({NUMBER})")
_MEM_PEAK = re.compile(rf"Peak memory footprint \(MB\): init=({NUMBER}) overall=({NUMBER})")
_MEM_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=({NUMBER}) overall=({NUMBER})"
)
_MEM_MONITOR = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: ({NUMBER})")
_VERSION = re.compile(
    r"\b(?:TensorFlow Lite|TF ?Lite|LiteRT)\b[^\n]*?\bversion\b\s*[:=]?\s*\[?v?(\d+\.\d+[\w.+-]*)", re.I
)
_OTHER_STATS = ("Timings (microseconds):", "Memory (bytes):")

# Logged description -> flag name (descriptions not listed keep their text as key).
PARAM_NAMES = {
    "Log parameter values verbosely": "verbose",
    "Min num runs": "num_runs",
    "Min runs duration (seconds)": "min_secs",
    "Max runs duration (seconds)": "max_secs",
    "Inter-run delay (seconds)": "run_delay",
    "Number of prorated runs per second": "run_frequency",
    "Num threads": "num_threads",
    "#threads used for CPU inference": "num_threads",
    "Use caching": "use_caching",
    "Benchmark name": "benchmark_name",
    "Output prefix": "output_prefix",
    "Min warmup runs": "warmup_runs",
    "Min warmup runs duration (seconds)": "warmup_min_secs",
    "Graph": "graph",
    "Signature to run": "signature_to_run_for",
    "Allow fp16": "allow_fp16",
    "Require full delegation": "require_full_delegation",
    "Enable op profiling": "enable_op_profiling",
    "Max profiling buffer entries": "max_profiling_buffer_entries",
    "Use xnnpack": "use_xnnpack",
    "Use gpu": "use_gpu",
    "Use nnapi": "use_nnapi",
    "Use Hexagon": "use_hexagon",
}
_TIMING_KEYS = {
    "init": "init_us",
    "first inference": "first_inference_us",
    "warmup (avg)": "warmup_avg_us",
    "warmup": "warmup_avg_us",
    "inference (avg)": "inference_avg_us",
    "inference": "inference_avg_us",
    "no stats": "inference_avg_us",
}


@dataclass(frozen=True)
class RunPlan:
    """What ``Running benchmark for ...`` announced: the stop rule the binary applied."""

    min_runs: int
    min_secs: float | None
    max_secs: float | None


@dataclass(frozen=True)
class InferenceTimings:
    """The closing ``Inference timings in us`` line (microseconds)."""

    init_us: float | None = None
    first_inference_us: float | None = None
    warmup_avg_us: float | None = None
    inference_avg_us: float | None = None


@dataclass(frozen=True)
class MemoryFootprint:
    """Memory lines in MB: ``kind`` is ``max_rss`` (older releases) or ``delta`` (newer)."""

    kind: str | None = None
    init_mb: float | None = None
    overall_mb: float | None = None
    peak_mb: float | None = None  # periodic monitoring, only with --report_peak_memory_footprint


@dataclass(frozen=True)
class BenchmarkOutput:
    """Everything one ``benchmark_model`` run printed that hwlab uses."""

    params: Mapping[str, str]
    regular: RunStats
    warmup: RunStats | None = None
    regular_plan: RunPlan | None = None
    warmup_plan: RunPlan | None = None
    timings: InferenceTimings | None = None
    init_ms: float | None = None
    model_size_mb: float | None = None
    memory: MemoryFootprint | None = None
    op_profile: OpProfile | None = None
    init_profile: OpProfile | None = None
    version: str | None = None

    def _param(self, name: str) -> str | None:
        return self.params.get(name)

    def _number(self, name: str) -> float | None:
        text = self._param(name)
        return None if text is None else to_float(text)

    @property
    def graph(self) -> str | None:
        return self._param("graph")

    @property
    def num_threads(self) -> int | None:
        value = self._number("num_threads")
        return None if value is None else int(value)

    @property
    def num_runs(self) -> int | None:
        value = self._number("num_runs")
        return None if value is None else int(value)

    @property
    def warmup_runs(self) -> int | None:
        value = self._number("warmup_runs")
        return None if value is None else int(value)

    @property
    def min_secs(self) -> float | None:
        return self._number("min_secs")

    @property
    def max_secs(self) -> float | None:
        return self._number("max_secs")

    @property
    def warmup_min_secs(self) -> float | None:
        return self._number("warmup_min_secs")

    def flag(self, name: str) -> bool | None:
        """A boolean parameter as logged (``1``/``0``, or ``true``/``false``); None when not logged."""
        text = self._param(name)
        return None if text is None else text.strip().lower() in ("1", "true")


@dataclass
class _Scan:
    params: dict[str, str] = field(default_factory=dict)
    runs: list[tuple[RunPlan | None, RunStats | None]] = field(default_factory=list)
    timings: InferenceTimings | None = None
    init_ms: float | None = None
    model_size_mb: float | None = None
    memory: dict[str, object] = field(default_factory=dict)
    version: str | None = None


def _timings(text: str) -> InferenceTimings:
    values: dict[str, float | None] = {}
    for key, number in _TIMING_PAIR.findall(text):
        name = _TIMING_KEYS.get(key.strip().lower())
        if name and name not in values:
            values[name] = to_float(number)
    return InferenceTimings(**values)


def _scan_line(scan: _Scan, message: str) -> None:
    if found := _RUNNING.search(message):
        plan = RunPlan(
            int(found.group(1)),
            to_float(found.group(2)) if found.group(2) else None,
            to_float(found.group(3)) if found.group(3) else None,
        )
        scan.runs.append((plan, None))
    elif is_stat_line(message) and not any(s in message for s in _OTHER_STATS):
        if scan.runs and scan.runs[-1][1] is None:
            scan.runs[-1] = (scan.runs[-1][0], parse_stat_line(message))
        else:  # a build that does not announce its runs
            scan.runs.append((None, parse_stat_line(message)))
    elif found := _TIMINGS.search(message):
        scan.timings = _timings(found.group(1))
    elif found := _SESSION.search(message):
        scan.init_ms = to_float(found.group(1))
    elif found := _MODEL_SIZE.search(message):
        scan.model_size_mb = to_float(found.group(1))
    elif found := _MEM_DELTA.search(message) or _MEM_PEAK.search(message):
        kind = "delta" if "delta" in message else "max_rss"
        scan.memory.update(kind=kind, init_mb=to_float(found.group(1)), overall_mb=to_float(found.group(2)))
    elif found := _MEM_MONITOR.search(message):
        scan.memory["peak_mb"] = to_float(found.group(1))
    elif not scan.runs and (found := _PARAM.match(message)):
        desc, value = found.group(1).strip(), found.group(2)
        scan.params.setdefault(PARAM_NAMES.get(desc, desc), value)
    if scan.version is None and (found := _VERSION.search(message)):
        scan.version = found.group(1)


def _sections(lines: list[str]) -> tuple[list[str], dict[str, list[str]]]:
    """Split the log into the main part and the op-profiling sections (by phase)."""
    starts = [
        (i, "run" if RUN_SECTION in line else "init")
        for i, line in enumerate(lines)
        if RUN_SECTION in line or INIT_SECTION in line
    ]
    if not starts:
        return lines, {}
    main = lines[: starts[0][0]]
    sections: dict[str, list[str]] = {}
    for n, (i, phase) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        sections[phase] = lines[i + 1 : end]
    return main, sections


def parse_benchmark_output(text: str) -> BenchmarkOutput:
    """Parse one run's whole output (stdout and stderr together).

    Raises BenchmarkParseError, quoting the last lines, when no regular run was
    reported (the model failed to load, the binary crashed, the output was cut).
    """
    lines = text.splitlines()
    main, sections = _sections(lines)
    scan = _Scan()
    for raw in main:
        _scan_line(scan, strip_prefix(raw))
    # The closing lines come before the profiles; read them anyway should a build reorder its listeners.
    for phase_lines in sections.values():
        for raw in phase_lines:
            message = strip_prefix(raw)
            if _TIMINGS.search(message) or _MEM_DELTA.search(message) or _MEM_PEAK.search(message):
                _scan_line(scan, message)
    measured: list[tuple[RunPlan | None, RunStats]] = [(p, s) for p, s in scan.runs if s is not None]
    if len(measured) < 2 or measured[-1][1].count == 0:
        what = "only the warm-up statistics" if len(measured) == 1 else "no regular-run statistics"
        evidence = tail(text) or "(no output)"
        raise BenchmarkParseError(f"benchmark_model printed {what}; its last lines:\n{evidence}")
    (warmup_plan, warmup), (regular_plan, regular) = measured[-2], measured[-1]
    return BenchmarkOutput(
        params=dict(scan.params),
        regular=regular,
        warmup=warmup,
        regular_plan=regular_plan,
        warmup_plan=warmup_plan,
        timings=scan.timings,
        init_ms=scan.init_ms,
        model_size_mb=scan.model_size_mb,
        memory=MemoryFootprint(**scan.memory) if scan.memory else None,  # type: ignore[arg-type]
        op_profile=parse_profile_section("run", sections["run"]) if "run" in sections else None,
        init_profile=parse_profile_section("init", sections["init"]) if "init" in sections else None,
        version=scan.version,
    )

"""The host's second measurer: TensorFlow Lite's ``benchmark_model`` binary, for devices without Python.

Any device may name the binary (``benchmark_model:`` in the inventory): a phone over
ADB, a board over SSH. ``parse`` reads the binary's log, ``driver`` builds its command
line and turns a run into a runner-protocol result line (see its docstring for the
flag and summary mappings), ``shell_facts`` describes a device with its shell, and
``measurer`` runs a job's models and refuses what the binary cannot do.
"""

from __future__ import annotations

from hwlab.measure.benchmark_model.driver import (
    benchmark_command,
    benchmark_result,
    cpu_mask_hex,
    default_timeout,
    error_result,
    pinned,
    run_benchmark_model,
)
from hwlab.measure.benchmark_model.logtext import RunStats
from hwlab.measure.benchmark_model.measurer import BenchmarkModelMeasurer
from hwlab.measure.benchmark_model.parse import (
    BenchmarkOutput,
    InferenceTimings,
    MemoryFootprint,
    RunPlan,
    parse_benchmark_output,
)
from hwlab.measure.benchmark_model.profile_tables import NodeTypeRow, OpProfile, OpRow, ProfileGraph

__all__ = [
    "BenchmarkModelMeasurer",
    "BenchmarkOutput",
    "InferenceTimings",
    "MemoryFootprint",
    "NodeTypeRow",
    "OpProfile",
    "OpRow",
    "ProfileGraph",
    "RunPlan",
    "RunStats",
    "benchmark_command",
    "benchmark_result",
    "cpu_mask_hex",
    "default_timeout",
    "error_result",
    "parse_benchmark_output",
    "pinned",
    "run_benchmark_model",
]

"""Android phones without Python: models timed by TensorFlow Lite's ``benchmark_model`` over ADB.

``parse`` reads the binary's log, ``driver`` builds its command line and turns
a run into a runner-protocol result line (see the driver's docstring for the
flag and summary mappings).
"""

from __future__ import annotations

from hwlab.android.driver import (
    benchmark_command,
    benchmark_result,
    cpu_mask_hex,
    default_timeout,
    error_result,
    pinned,
    run_benchmark_model,
)
from hwlab.android.logtext import RunStats
from hwlab.android.parse import (
    BenchmarkOutput,
    BenchmarkParseError,
    InferenceTimings,
    MemoryFootprint,
    RunPlan,
    parse_benchmark_output,
)
from hwlab.android.profile_tables import NodeTypeRow, OpProfile, OpRow, ProfileGraph

__all__ = [
    "BenchmarkOutput",
    "BenchmarkParseError",
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

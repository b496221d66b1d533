"""Pieces of ``benchmark_model``'s log shared by the parsers: prefixes, numbers, stat lines.

Why separate: the run statistics and the op-profiling tables both print
``Stat::OutputToStream`` lines, and both must see through the same log prefixes.

Formats (tensorflow/tensorflow and google-ai-edge/LiteRT):

- ``Stat::OutputToStream`` and ``StatWithPercentiles::OutputToStream`` in
  ``third_party/xla/xla/tsl/util/stats_calculator.h`` (earlier
  ``tensorflow/core/util/stats_calculator.h``): ``count=0``; ``count=N curr=X``
  with ``(all same)`` appended when N > 1 and every value was equal; otherwise
  ``count= first= curr= min= max= avg= std=``. ``StatWithPercentiles`` (used by
  newer ``benchmark_model.cc``) appends `` p5= median= p95=``. Values are integer
  microseconds except ``avg`` (a double printed with 6 significant digits, so
  ``1.23457e+06`` is possible); ``std`` is the population deviation (ddof=0)
  truncated to an integer; percentiles are nearest-rank (the element at index
  ``n * p / 100`` after sorting, so the median of an even count is the upper one).
- Log prefixes: ``tensorflow/lite/tools/logging.h`` prints ``INFO: ``/``WARN: ``
  on stdout and ``ERROR: ``/``FATAL: `` on stderr; older releases
  (``tensorflow/lite/tools/benchmark/logging.h``) print no prefix, all on stderr.
  A multi-line message carries the prefix on its first line only. Logcat-style
  or timestamped copies of the log add their own prefix in front.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from hwlab.errors import BenchmarkParseError

NUMBER = r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|-?nan|-?inf"

_PREFIX = re.compile(
    r"^\s*"
    r"(?:\d{2,4}[-/]\d{2}(?:[-/]\d{2})?[ T]\d{1,2}:\d{2}:[\d.]+\s+)?"  # date and time
    r"(?:\d+\s+\d+\s+[VDIWEF]\s+[^:\s]+\s*:\s?)?"  # logcat threadtime: pid tid level tag:
    r"(?:(?:INFO|WARN|WARNING|ERROR|FATAL|VERBOSE)\s*:\s?)?"
)
_STAT_FIELD = re.compile(rf"\b([a-z][a-z0-9_]*)=({NUMBER})")
_COUNT = re.compile(r"(?:^|[\s:])count=(\d+)")


def strip_prefix(line: str) -> str:
    """The message of one log line: timestamps, logcat fields and the severity tag removed."""
    return _PREFIX.sub("", line, count=1).rstrip()


def to_float(text: str) -> float | None:
    """A printed number as a float; None for NaN/inf (JSON has neither) or garbage."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def tail(text: str, lines: int = 10) -> str:
    """The last non-blank lines of an output, the evidence an error message quotes."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip()]
    return "\n".join(kept[-lines:])


@dataclass(frozen=True)
class RunStats:
    """One ``Stat`` line: timings of a series of runs, in microseconds.

    ``all_same`` lines print only ``curr``; every other field is then that value
    (and ``std_us`` 0), since all runs took exactly as long.
    """

    count: int
    first_us: float | None = None
    curr_us: float | None = None
    min_us: float | None = None
    max_us: float | None = None
    avg_us: float | None = None
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None
    all_same: bool = False


def is_stat_line(line: str) -> bool:
    return _COUNT.search(line) is not None


def parse_stat_line(line: str) -> RunStats:
    """Parse ``count=.. first=.. ...`` wherever it sits in the line."""
    found = _COUNT.search(line)
    if found is None:
        raise BenchmarkParseError(f"benchmark_model printed a statistics line without a count: {line!r}")
    fields = {k: to_float(v) for k, v in _STAT_FIELD.findall(line[found.start() :])}
    count = int(found.group(1))
    if count == 0:
        return RunStats(count=0)
    if "first" not in fields and "curr" in fields:  # the all-same form
        v = fields["curr"]
        return RunStats(
            count=count,
            first_us=v,
            curr_us=v,
            min_us=v,
            max_us=v,
            avg_us=v,
            std_us=0.0,
            p5_us=fields.get("p5", v),
            median_us=fields.get("median", v),
            p95_us=fields.get("p95", v),
            all_same=True,
        )
    return RunStats(
        count=count,
        first_us=fields.get("first"),
        curr_us=fields.get("curr"),
        min_us=fields.get("min"),
        max_us=fields.get("max"),
        avg_us=fields.get("avg"),
        std_us=fields.get("std"),
        p5_us=fields.get("p5"),
        median_us=fields.get("median"),
        p95_us=fields.get("p95"),
    )

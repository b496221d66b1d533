"""Where results go: every result line from the device becomes one table row the moment it arrives.

Both measurers (hwlab's runner, TFLite's benchmark_model) hand their runner-protocol
result lines to one :class:`ResultSink`; the runner's stream of lines is read by
:func:`read_results`, which keeps every row that arrived when the stream breaks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwlab import jsonfile
from hwlab.errors import RunnerError
from hwlab.inventory import DeviceSpec
from hwlab.measure.anchors import is_anchor
from hwlab.measure.speed import SpeedScale
from hwlab.progress import Progress
from hwlab.tables import LookupTable
from hwlab.tables.rows import row_from_result
from hwlab.transport import LineStream


@dataclass
class ResultSink:
    """Appends one row per result line to ``table``; ``fields`` describe each key that may arrive."""

    table: LookupTable
    fields: Mapping[str, Mapping[str, Any]]
    device: DeviceSpec
    backend: str
    speed: SpeedScale | None = None  # the job's anchors: its figures on the device's reference scale
    rows: list[dict[str, Any]] = field(default_factory=list)  # the lines written, in order

    def append(self, result: dict[str, Any]) -> dict[str, Any] | None:
        """The row written for a model's line (None for an anchor's, which is kept beside the table)."""
        key = result.get("key", "")
        if result.get("anchor") and is_anchor(key):
            self.table.append_anchor(result)
            if self.speed is not None:
                self.speed.add_anchor(result)
            return None
        if key not in self.fields:
            raise RunnerError(f"the device returned a result for an unknown key {key!r}")
        # A distribution over input data is reported as timed: its inputs, not the machine, make its spread.
        scaled = result.get("status") == "ok" and not result.get("distribution")
        factor = self.speed.factor_for(result) if self.speed is not None and scaled else None
        row, samples = row_from_result(
            result, key, self.fields[key], device=self.device.name, backend=self.backend,
            emulated=self.device.emulated, speed_factor=factor,
        )  # fmt: skip
        graph = result.get("runtime_graph") if result.get("status") == "ok" else None
        line = self.table.append(row, samples, graph if isinstance(graph, dict) else None)
        self.rows.append(line)
        return line


def read_results(stream: LineStream, sink: ResultSink, keys: Sequence[str], progress: Progress) -> None:
    """Append each JSON line of ``stream`` to ``sink``; the device must answer for every key.

    A stream that ends early (a crash, a dropped link) or with a failure exit is an
    error after the rows that did arrive are safely in the table.
    """
    total = len(keys)
    start = len(sink.rows)

    def done() -> int:
        return len(sink.rows) - start

    try:
        progress("measure", 0, total, keys[0] if keys else "")
        for line in stream:
            try:
                result = jsonfile.loads(line)
            except ValueError:
                raise RunnerError(f"the runner printed a line that is not JSON: {line[:200]!r}") from None
            if sink.append(result) is not None:
                progress("measure", done(), total, keys[done()] if done() < total else "")
    finally:
        if done() < total:
            stream.kill()
    result = stream.result
    if result.rc != 0 or done() < total:
        raise RunnerError(
            f"the runner stopped after {done()} of {total} models (exit {result.rc}): {result.stderr.strip()[-800:]}",
            hint="finished rows are kept; rerun the same command to measure the rest",
        )

"""What the runtime really executes, captured on the device: its optimised graph and each node's time.

Why: a model's latency is not the sum of its ops measured alone. onnxruntime fuses
neighbours (Conv+BN+ReLU into one FusedConv, an Add into the convolution before it) and,
on x86, runs convolutions in a blocked layout (NCHWc) with ``ReorderInput``/``ReorderOutput``
nodes around them, which a model of one op pays at both ends and a chain of convolutions
does not. Only the runtime knows, and only on the device: the layout work depends on the
CPU's vector width.

For onnxruntime, after a model is measured, two more sessions are made with the job's
options: one writes the graph at the *extended* level (fusions done, layout untouched,
so its nodes keep the original tensors' names and can be mapped back), one at the
measuring level (``all``: what was timed) with the profiler on, run ``warmup`` + ``runs``
times. The line gets both node lists, and for the measured graph each node's mean time
over the quietest quarter of the ``runs`` (those of the lowest totals, at least
QUIET_RUNS_AT_LEAST; µs, from the profiler's ``<node>_kernel_time`` events of those runs): the
machine's quiet state, as a table's figure is (runners/hwlab_runner/rounds.py), so a run that a
disturbance slowed does not skew the nodes' shares. The host calibrates the profiler's own
overhead out against the unprofiled figure. This never touches the measurement itself.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass
from typing import Any, Callable

from .onnxgraph import graph_nodes


@dataclass(frozen=True)
class GraphRule:
    """How the runtime graph is captured: profiled calls after ``warmup`` untimed ones."""

    runs: int = 40
    warmup: int = 3


def _runs_of(events: list[dict[str, Any]]) -> list[tuple[float, float]]:
    """(start, end) in µs of each ``model_run`` the profiler recorded, in order."""
    spans = [(float(e["ts"]), float(e["ts"]) + float(e["dur"])) for e in events
             if e.get("cat") == "Session" and e.get("name") == "model_run"]  # fmt: skip
    return sorted(spans)


QUIET_SHARE = 0.25  # the share of the profiled runs, the fastest, whose node times are kept
QUIET_RUNS_AT_LEAST = 3


def quiet_runs(runs: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The fastest QUIET_SHARE of ``runs`` (at least QUIET_RUNS_AT_LEAST, all when fewer), in time order."""
    keep = min(len(runs), max(QUIET_RUNS_AT_LEAST, round(len(runs) * QUIET_SHARE)))
    fastest = sorted(runs, key=lambda span: span[1] - span[0])[:keep]
    return sorted(fastest)


def node_times(events: list[dict[str, Any]], skip: int) -> tuple[dict[str, float], list[float], dict[str, str]]:
    """Each node's mean kernel time (µs) over the quiet runs after the first ``skip``, each of those runs'
    total (µs), and each node's executed op name, from onnxruntime's profiler events."""
    runs = quiet_runs(_runs_of(events)[skip:])
    times: dict[str, list[float]] = {}
    ops: dict[str, str] = {}
    suffix = "_kernel_time"
    for event in events:
        name = event.get("name", "")
        if event.get("cat") != "Node" or not name.endswith(suffix):
            continue
        ts = float(event["ts"])
        if not any(start <= ts <= end for start, end in runs):
            continue  # a warm-up call
        node = name[: -len(suffix)]
        times.setdefault(node, []).append(float(event["dur"]))
        ops[node] = str(event.get("args", {}).get("op_name", ""))
    count = max(len(runs), 1)
    # Summed over runs and divided by all of them: a node the executor skipped in a run counts as 0 there.
    means = {node: sum(values) / count for node, values in times.items()}
    return means, [end - start for start, end in runs], ops


def capture_onnxruntime(
    ort: Any,
    path: str,
    make_options: Callable[[], Any],
    feeds: dict[str, Any],
    rule: GraphRule,
) -> dict[str, Any]:
    """The ``runtime_graph`` of one model (see the module doc); ``make_options`` gives the job's
    SessionOptions, ``feeds`` the model's inputs by name."""
    folder = tempfile.mkdtemp(prefix="hwlab-graph-")
    try:
        fused = make_options()
        fused.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        fused.optimized_model_filepath = os.path.join(folder, "extended.onnx")
        ort.InferenceSession(path, sess_options=fused, providers=["CPUExecutionProvider"])
        measured = make_options()  # the measuring level: the options' own (all, by default)
        measured.optimized_model_filepath = os.path.join(folder, "measured.onnx")
        measured.enable_profiling = True
        measured.profile_file_prefix = os.path.join(folder, "profile")
        session = ort.InferenceSession(path, sess_options=measured, providers=["CPUExecutionProvider"])
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, array)
        for output in session.get_outputs():
            binding.bind_output(output.name, "cpu")
        for _ in range(rule.warmup + rule.runs):
            session.run_with_iobinding(binding)
        with open(session.end_profiling(), encoding="utf-8") as fh:
            events = json.load(fh)
        means, totals, ops = node_times(events, rule.warmup)
        with open(measured.optimized_model_filepath, "rb") as fh:
            nodes = graph_nodes(fh.read())
        with open(fused.optimized_model_filepath, "rb") as fh:
            fused_nodes = graph_nodes(fh.read())
        for node in nodes:
            node["time_us"] = round(means.get(node["name"], 0.0), 3)
            if node["name"] in ops and ops[node["name"]] != node["op"]:
                node["executed_op"] = ops[node["name"]]
        return {
            "level": str(measured.graph_optimization_level).rsplit(".", 1)[-1],
            "nodes": nodes,
            "fused_nodes": fused_nodes,
            "runs": rule.runs,
            "quiet_runs": len(totals),
            "profiled_run_us": round(statistics.median(totals), 3) if totals else None,  # of the quiet runs
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)

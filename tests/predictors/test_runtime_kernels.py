"""What onnxruntime executes, captured by the runner and mapped back onto the model's nodes.

Hand-built graphs run through the real runner and a real onnxruntime session: a Conv followed by a
Relu must come back as one executed node covering both; on a CPU where onnxruntime uses its blocked
layout, the reorders it inserts are layout work given to the node they serve; a residual Add is
absorbed by the convolution the layout pass fused it into.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from hwlab_runner import PROTOCOL_VERSION
from hwlab_runner.onnxgraph import ProtobufError, graph_nodes
from hwlab_runner.runtime_graph import node_times
from onnx import helper
from onnx_graphs import make

from hwlab.predictors.graph_load import build_view, load_model
from hwlab.predictors.graph_ops import build_ops
from hwlab.predictors.runtime_kernels import LAYOUT_DOMAIN, fused_pairs, runtime_split

RUNNERS = str(Path(__file__).resolve().parents[2] / "runners")


def conv(name: str, x: str, y: str, cin: int, cout: int, weights: dict[str, np.ndarray], k: int = 3) -> onnx.NodeProto:
    rng = np.random.default_rng(len(weights))
    weights[f"{name}.w"] = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.1
    weights[f"{name}.b"] = np.zeros(cout, dtype=np.float32)
    return helper.make_node("Conv", [x, f"{name}.w", f"{name}.b"], [y], name=name, pads=[k // 2] * 4)


def residual_model() -> onnx.ModelProto:
    """conv+relu -> conv -> add (residual) -> relu -> global pool: fusions and, on x86, a blocked layout."""
    w: dict[str, np.ndarray] = {}
    nodes = [
        conv("c1", "x", "t1", 16, 32, w),
        helper.make_node("Relu", ["t1"], ["r1"], name="relu1"),
        conv("c2", "r1", "t2", 32, 32, w),
        helper.make_node("Add", ["t2", "r1"], ["s"], name="add"),
        helper.make_node("Relu", ["s"], ["r2"], name="relu2"),
        helper.make_node("GlobalAveragePool", ["r2"], ["y"], name="gap"),
    ]
    return make(nodes, {"x": [1, 16, 28, 28]}, ["y"], w)


def capture(folder: Path, model: onnx.ModelProto) -> dict[str, Any]:
    """The runner's result line for ``model`` measured with its runtime graph captured."""
    onnx.save(model, str(folder / "m.onnx"))
    job = {
        "protocol": PROTOCOL_VERSION, "runtime": "onnxruntime", "rounds": None,
        "stop": {"min_count": 5, "min_time_s": 0.01, "max_time_s": 0.2, "ci_rel": None},
        "runtime_graph": {"runs": 5, "warmup": 2},
        "models": [{"key": "m", "path": "m.onnx", "inputs": [{"shape": [1, 16, 28, 28], "dtype": "float32"}]}],
    }  # fmt: skip
    (folder / "job.json").write_text(json.dumps(job))
    env = {"PYTHONPATH": RUNNERS, "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "hwlab_runner", "run", "job.json"], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (line,) = [json.loads(text) for text in done.stdout.splitlines()]
    assert line["status"] == "ok", line
    return line


@pytest.fixture(scope="module")
def captured(tmp_path_factory: pytest.TempPathFactory) -> tuple[onnx.ModelProto, dict[str, Any]]:
    model = residual_model()
    return model, capture(tmp_path_factory.mktemp("graph"), model)["runtime_graph"]


def test_the_runner_reads_node_lists_as_onnx_does(tmp_path: Path) -> None:
    model = residual_model()
    nodes = graph_nodes(model.SerializeToString())
    assert [(n["name"], n["op"], n["inputs"], n["outputs"]) for n in nodes] == [
        (n.name, n.op_type, list(n.input), list(n.output)) for n in model.graph.node
    ]
    with pytest.raises(ProtobufError):
        graph_nodes(model.SerializeToString()[: len(model.SerializeToString()) // 2])


def test_the_runtime_graph_comes_with_the_measurement(captured) -> None:  # type: ignore[no-untyped-def]
    _, graph = captured
    assert graph["runs"] == 5 and graph["level"] == "ORT_ENABLE_ALL" and graph["profiled_run_us"] > 0
    measured = {n["name"]: n for n in graph["nodes"]}
    assert all(n["time_us"] >= 0 for n in measured.values()) and sum(n["time_us"] for n in measured.values()) > 0
    fused = graph["fused_nodes"]  # the extended level: Conv+Relu is one FusedConv, names kept
    assert any(n["op"] == "FusedConv" and n.get("activation") == "Relu" and n["outputs"] == ["r1"] for n in fused)


def test_conv_and_relu_map_to_one_executed_node_and_reorders_to_their_neighbours(captured) -> None:  # type: ignore[no-untyped-def]
    model, graph = captured
    view = build_view(load_model(model))
    split = runtime_split(view, graph)
    assert split.complete, split.unplaced
    unit = split.unit_of()
    index = {name: i for i, name in enumerate(view.names)}
    assert unit[index["c1"]] == unit[index["relu1"]]  # one kernel, as the runtime ran it
    assert unit[index["gap"]] != unit[index["c1"]]
    covered = sorted(i for u in split.units for i in u.covers)
    assert covered == sorted(index.values())  # every model node is run by exactly one executed node
    layout = [n for n in graph["nodes"] if n.get("domain") == LAYOUT_DOMAIN and n["op"].startswith("Reorder")]
    if any(n.get("domain") == LAYOUT_DOMAIN and n["op"] == "Conv" for n in graph["nodes"]):
        assert layout and split.layout_us == pytest.approx(sum(n["time_us"] for n in layout))
        assert sum(u.layout_us for u in split.units) == pytest.approx(split.layout_us)
        # The blocked-layout pass fuses the residual Add (and its Relu) into the second convolution.
        assert unit[index["c2"]] == unit[index["add"]] == unit[index["relu2"]]
    ops, _ = build_ops(view)
    pairs = fused_pairs(ops, view, split)
    assert pairs[("conv", "relu", True)] >= 1 and pairs[("conv", "relu", False)] == 0


def test_an_unknown_executed_node_is_unplaced_not_guessed(captured) -> None:  # type: ignore[no-untyped-def]
    model, graph = captured
    strange = {**graph, "nodes": [*graph["nodes"], {"name": "mystery", "op": "Foo", "domain": "", "inputs": ["y"],
                                                    "outputs": ["z"], "time_us": 5.0}]}  # fmt: skip
    split = runtime_split(build_view(load_model(model)), strange)
    assert split.unplaced == ["mystery"] and not split.complete


def test_node_times_come_from_the_quiet_runs_only() -> None:
    """Eight profiled runs after one warm-up: two fast (the machine's quiet state) and six a disturbance
    slowed. Each node's time is its mean over the quietest quarter (here the two fast ones and the
    fastest slow one: three at least), never over the runs the disturbance inflated most."""
    events: list[dict[str, Any]] = []
    start = 0.0
    node_us = {"conv": 100.0, "relu": 10.0}
    slow = [1.0, 1.0, 1.8, 1.9, 1.0, 1.7, 1.6, 1.5, 2.0]  # the first run is the warm-up
    for factor in slow:
        ts = start
        for name, base in node_us.items():
            events.append({"cat": "Node", "name": f"{name}_kernel_time", "ts": ts + 1, "dur": base * factor,
                           "args": {"op_name": name.capitalize()}})  # fmt: skip
            ts += base * factor
        events.append({"cat": "Session", "name": "model_run", "ts": start, "dur": ts - start + 2})
        start = ts + 50.0
    means, totals, ops = node_times(events, skip=1)
    assert len(totals) == 3 and ops == {"conv": "Conv", "relu": "Relu"}
    quiet = (1.0 + 1.0 + 1.5) / 3
    assert means == pytest.approx({name: base * quiet for name, base in node_us.items()})

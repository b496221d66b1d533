"""The kernels a runtime really executed for a model, mapped back onto the model's own nodes.

The runner captures onnxruntime's graphs on the device (runners/hwlab_runner/runtime_graph.py):
the *fused* graph (extended level: fusions done, every node's outputs still named as in the
model) and the *measured* graph (the level that was timed: on x86 the convolutions run in a
blocked layout, ``com.microsoft.nchwc``, between ``ReorderInput``/``ReorderOutput`` nodes, and
the layout pass fuses more, e.g. an Add into the convolution before it), with each measured
node's time inside the graph.

Mapping, in two steps:

1. Fused graph -> model nodes, by tensor names. A fused node covers the model nodes between
   its inputs and its outputs (walking back from its outputs, stopping at every tensor the
   fused graph materialises). A fused node whose outputs are all new names (an inlined
   function's inner node, e.g. HardSwish's HardSigmoid) belongs with the node reading them.
2. Measured graph -> fused graph: the same name, or the layout pass's name for a converted
   node (its first output's name + ``_nchwc``; + ``_bn_nchwc`` for a BatchNormalization it runs as
   a depthwise 1x1 convolution, as a RepVGG identity branch's); a fused node missing from the measured graph
   was absorbed into the converted node it reads from. Reorder nodes are layout work of no
   model node: their time goes to the node they feed (``ReorderInput``) or drain
   (``ReorderOutput``), the neighbour whose layout needs them.

A runtime node that cannot be placed is listed in ``unplaced``; a caller then does not use
the model's times (the split is wrong somewhere), never guesses.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hwlab.predictors.graph_load import GraphView
from hwlab.predictors.graph_ops import Op

LAYOUT_DOMAIN = "com.microsoft.nchwc"
LAYOUT_OPS = ("ReorderInput", "ReorderOutput")
CONVERTED_SUFFIXES = ("_nchwc", "_bn_nchwc")


@dataclass
class Unit:
    """One node the runtime executed: its name and op, the model nodes it runs, and its time (µs)."""

    name: str
    op: str
    covers: set[int] = field(default_factory=set)  # model node indices (GraphView order)
    time_us: float = 0.0
    layout_us: float = 0.0  # reorders done for it
    layout_nodes: int = 0  # how many
    own_events: int = 1  # profiled events of its own (LiteRT: XNNPACK may run a node as several operators)

    @property
    def events(self) -> int:
        """Profiled node events in its time: its own and its reorders'."""
        return self.own_events + self.layout_nodes


@dataclass
class RuntimeSplit:
    """A model's nodes grouped as the runtime executed them."""

    units: list[Unit]
    unplaced: list[str]  # runtime nodes that could not be mapped onto the model
    layout_us: float  # all reorder time
    total_us: float  # all node time

    @property
    def complete(self) -> bool:
        return not self.unplaced

    def unit_of(self) -> dict[int, int]:
        """Model node index -> index of the unit that ran it."""
        return {node: u for u, unit in enumerate(self.units) for node in unit.covers}


def _original_tensors(view: GraphView) -> dict[str, int]:
    """Model tensor name -> producing node index (folded nodes included: their outputs are names too)."""
    return {out: i for i, node in enumerate(view.nodes) for out in node.output if out}


def _cover(view: GraphView, producer: dict[str, int], outputs: Iterable[str], stops: set[str]) -> set[int]:
    """Model nodes reached walking back from ``outputs`` until a materialised tensor (``stops``)."""
    covered: set[int] = set()
    stack = [producer[t] for t in outputs if t in producer]
    while stack:
        i = stack.pop()
        if i in covered or i in view.folded:
            continue
        covered.add(i)
        for x in view.nodes[i].input:
            if x and x not in stops and x in producer and producer[x] not in view.folded:
                stack.append(producer[x])
    return covered


def _fused_units(view: GraphView, fused: Sequence[dict[str, Any]]) -> dict[str, Unit]:
    """Step 1: each fused node with the model nodes it covers (see the module doc)."""
    producer = _original_tensors(view)
    materialised = {t for node in fused for t in node["outputs"] if t in producer}
    materialised |= {t for t in producer if producer[t] in view.folded}
    units = {node["name"]: Unit(node["name"], node["op"]) for node in fused}
    readers: dict[str, list[str]] = {}
    for node in fused:
        for x in node["inputs"]:
            readers.setdefault(x, []).append(node["name"])
    for node in fused:
        own = [t for t in node["outputs"] if t in producer]
        units[node["name"]].covers = _cover(view, producer, own, materialised - set(own))
    # Inner nodes of an inlined function (outputs all new): with the fused node reading them.
    for node in reversed(fused):
        if not any(t in producer for t in node["outputs"]):
            for out in node["outputs"]:
                for reader in readers.get(out, []):
                    units[reader].covers |= units[node["name"]].covers
                    units[node["name"]].covers = set()
                    units[node["name"]].name = f"{node['name']}->{reader}"
                    break
    return units


def runtime_split(view: GraphView, graph: dict[str, Any]) -> RuntimeSplit:
    """Map a captured runtime graph (a ``graphs.jsonl`` entry) onto the model's nodes (steps 1 and 2)."""
    fused_nodes: list[dict[str, Any]] = graph.get("fused_nodes") or []
    measured: list[dict[str, Any]] = graph.get("nodes") or []
    fused = _fused_units(view, fused_nodes)
    converted = {node["outputs"][0] + suffix: node["name"] for node in fused_nodes if node["outputs"]
                 for suffix in CONVERTED_SUFFIXES}  # fmt: skip
    units: dict[str, Unit] = {}
    runs_fused: dict[str, str] = {}  # fused node -> the measured node that runs it
    unplaced: list[str] = []
    layout: list[dict[str, Any]] = []
    for node in measured:
        if node.get("domain") == LAYOUT_DOMAIN and node["op"] in LAYOUT_OPS:
            layout.append(node)
            continue
        source = node["name"] if node["name"] in fused else converted.get(node["name"])
        if source is None:
            unplaced.append(node["name"])
            continue
        runs_fused[source] = node["name"]
        op = node.get("executed_op") or node["op"]
        units[node["name"]] = Unit(node["name"], op, set(fused[source].covers), float(node.get("time_us") or 0.0))
    # Fused nodes the layout pass absorbed: into the measured node that runs the fused node they read
    # from (an Add and the Relu after it both go into the convolution before them).
    fused_producer = {t: node["name"] for node in fused_nodes for t in node["outputs"]}
    for node in fused_nodes:
        if node["name"] in runs_fused or not fused[node["name"]].covers:
            continue
        hosts = [runs_fused.get(fused_producer.get(x, ""), "") for x in node["inputs"]]
        host = next((h for h in hosts if h in units), None)
        if host is None:
            unplaced.append(f"{node['name']} (fused)")
        else:  # fused nodes come in topological order: a chain absorbed together finds its host
            units[host].covers |= fused[node["name"]].covers
            runs_fused[node["name"]] = host
    producer = {t: node["name"] for node in measured for t in node["outputs"]}
    readers: dict[str, list[str]] = {}
    for node in measured:
        for x in node["inputs"]:
            readers.setdefault(x, []).append(node["name"])
    layout_us = 0.0
    for node in layout:
        time_us = float(node.get("time_us") or 0.0)
        layout_us += time_us
        if node["op"] == "ReorderInput":
            target = next((r for r in readers.get(node["outputs"][0], []) if r in units), None)
        else:
            target = producer.get(node["inputs"][0])
        if target in units:
            units[target].layout_us += time_us
            units[target].layout_nodes += 1
        else:
            unplaced.append(node["name"])
    total = sum(float(n.get("time_us") or 0.0) for n in measured)
    return RuntimeSplit(list(units.values()), unplaced, layout_us, total)


def fused_pairs(ops: Sequence[Op], view: GraphView, split: RuntimeSplit) -> Counter[tuple[str, str, bool]]:
    """For each edge A -> B where B is A's only reader (the edges graph.py may fuse): (category A, category B,
    whether the runtime ran them as one node)."""
    unit = split.unit_of()
    readers: dict[str, list[int]] = {}
    for k, op in enumerate(ops):
        for x in op.inputs:
            readers.setdefault(x, []).append(k)
    seen: Counter[tuple[str, str, bool]] = Counter()
    for op in ops:
        live = [o for o in op.outputs if o in readers or o in view.graph_outputs]
        if len(live) != 1 or live[0] in view.graph_outputs or len(readers.get(live[0], [])) != 1:
            continue
        reader = ops[readers[live[0]][0]]
        first, second = unit.get(op.nodes[-1]), unit.get(reader.nodes[0])
        if first is not None and second is not None:
            seen[(op.category, reader.category, first == second)] += 1
    return seen

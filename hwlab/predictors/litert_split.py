"""LiteRT's executed kernels, from benchmark_model's op profile, placed on the model's own ONNX nodes.

The same training model is measured on LiteRT as a ``.tflite`` and predicted from its ``.onnx``; both are
written from one torch module. benchmark_model's op profile (litert_kernels.py) lists what ran: TFLite
builtins by node index, or XNNPACK's operators in the order of the nodes they run. Three steps place it,
and where any step cannot, the node is listed in ``unplaced`` and the caller leaves the model out, as
runtime_kernels.py does for onnxruntime; nothing is guessed:

1. ONNX ops -> TFLite nodes (tflite_graph.py). A node is the op's when it is a builtin that op converts
   to and writes as many elements (and, with weights, holds as many) as the op: counts that do not depend
   on the layout. Ops of equal counts are interchangeable (same shapes, same work). An activation or a
   BatchNormalization with no node of its own is the one the converter folded into the node of the op
   before it (a fused activation, BN folded into the convolution's weights) when that node can hold it;
   a reshape or flatten with none is a view and ran nothing. TFLite nodes of no ONNX op are the
   converter's layout work (the NCHW -> NHWC ``TRANSPOSE``, an explicit ``PAD`` before a strided
   convolution, a ``RESHAPE``): their time goes to the node that reads them, as onnxruntime's reorders go
   to the convolution they feed. A standalone BatchNormalization the converter wrote as a chain of
   elementwise nodes (``DECOMPOSED``) is one op over the whole chain. Any other node of no op (another op
   the converter decomposed into several: PReLU, HardSigmoid, Div) is unplaced.
2. Executed rows -> TFLite nodes. A builtin's row names its node index (and must name that node's
   builtin). XNNPACK's operators are aligned in order with the nodes the delegate took (those not run
   as builtins): each node runs one operator of its kind, a concatenation or split may run several (one
   copy per input), and a pad, a reshape or an activation may run none (XNNPACK folds a pad and a clamp
   into the convolution, and a reshape is a view). One alignment or none.
3. Units: a node's rows are one executed unit with the ONNX nodes of its ops (a decomposed op's chain:
   one unit). A node that ran nothing because XNNPACK folded it (an activation) joins the unit of the node
   it reads.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from hwlab.predictors.graph_load import GraphView
from hwlab.predictors.graph_ops import Op, build_ops
from hwlab.predictors.litert_kernels import DELEGATED_PREFIX, is_delegate_node
from hwlab.predictors.runtime_kernels import RuntimeSplit, Unit
from hwlab.predictors.tflite_graph import TfliteNode

# Builtins with a fused_activation_function.
_ACTIVATION_HOSTS = frozenset({
    "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV", "ADD", "SUB", "MUL", "DIV",
    "CONCATENATION", "MAX_POOL_2D", "AVERAGE_POOL_2D",
})  # fmt: skip

# ONNX op category -> the builtins the converter writes for it.
BUILTINS_OF: dict[str, frozenset[str]] = {
    "conv": frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"}),
    "dwconv": frozenset({"DEPTHWISE_CONV_2D", "CONV_2D"}),
    "dynconv": frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"}),  # its weight computed in the graph: counted by size
    "convtranspose": frozenset({"TRANSPOSE_CONV"}),
    "fc": frozenset({"FULLY_CONNECTED", "BATCH_MATMUL"}),
    "matmul": frozenset({"BATCH_MATMUL", "FULLY_CONNECTED"}),
    "relu": frozenset({"RELU"}),
    "relu6": frozenset({"RELU6"}),
    "clip": frozenset({"RELU_N1_TO_1", "RELU_0_TO_1", "MINIMUM", "MAXIMUM"}),
    "hswish": frozenset({"HARD_SWISH"}),
    "sigmoid": frozenset({"LOGISTIC"}),
    "tanh": frozenset({"TANH"}),
    "leakyrelu": frozenset({"LEAKY_RELU"}),
    "prelu": frozenset({"PRELU"}),
    "minmax": frozenset({"MAXIMUM", "MINIMUM"}),
    "add": frozenset({"ADD", "SUB"}),
    "mul": frozenset({"MUL"}),
    "div": frozenset({"DIV"}),
    "softmax": frozenset({"SOFTMAX"}),
    "resize": frozenset({"RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"}),
    "concat": frozenset({"CONCATENATION"}),
    "maxpool": frozenset({"MAX_POOL_2D"}),
    "avgpool": frozenset({"AVERAGE_POOL_2D"}),
    "gap": frozenset({"MEAN", "AVERAGE_POOL_2D"}),
    "reduce": frozenset({"MEAN", "SUM"}),
    "reshape": frozenset({"RESHAPE", "SQUEEZE", "EXPAND_DIMS"}),
    "flatten": frozenset({"RESHAPE"}),
    "transpose": frozenset({"TRANSPOSE"}),
    "slice": frozenset({"SLICE", "STRIDED_SLICE"}),
    "split": frozenset({"SPLIT", "SPLIT_V"}),
    "gather": frozenset({"GATHER", "SLICE", "STRIDED_SLICE"}),  # a channel pick: a slice in TFLite
    "pad": frozenset({"PAD", "PADV2", "MIRROR_PAD"}),
}

# An ONNX op with no node of its own folded into its producer's node, when that node is one of these.
FOLDED_INTO: dict[str, frozenset[str]] = {
    "bn": frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"}),
    "relu": _ACTIVATION_HOSTS,
    "relu6": _ACTIVATION_HOSTS,
    "tanh": _ACTIVATION_HOSTS,
}
# An ONNX op the converter writes as a chain of elementwise nodes of its size, each reading the one before
# (a standalone BatchNormalization: x - mean, * 1/sqrt(var + eps), * gamma, + beta).
DECOMPOSED: dict[str, frozenset[str]] = {"bn": frozenset({"SUB", "MUL", "ADD", "DIV"})}
VIEWS = frozenset({"reshape", "flatten"})  # with no node of their own: ran nothing
LAYOUT_BUILTINS = frozenset({"TRANSPOSE", "PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"})

# Builtin -> the XNNPACK operator kinds (the name before " (") that run it. Newer XNNPACK releases name
# their elementwise operators by family ("Unary Elementwise", "Binary Elementwise").
_UNARY, _BINARY = "Unary Elementwise", "Binary Elementwise"
OPERATORS_OF: dict[str, frozenset[str]] = {
    "CONV_2D": frozenset({"Convolution", "Fully Connected"}),
    "DEPTHWISE_CONV_2D": frozenset({"Convolution"}),
    "TRANSPOSE_CONV": frozenset({"Deconvolution"}),
    "FULLY_CONNECTED": frozenset({"Fully Connected", "Dynamic Fully Connected"}),
    "BATCH_MATMUL": frozenset({"Batch Matrix Multiply"}),
    "ADD": frozenset({"Add", _BINARY}),
    "SUB": frozenset({"Subtract", _BINARY}),
    "MUL": frozenset({"Multiply", _BINARY}),
    "DIV": frozenset({"Divide", _BINARY}),
    "MAXIMUM": frozenset({"Maximum", _BINARY}),
    "MINIMUM": frozenset({"Minimum", _BINARY}),
    "PRELU": frozenset({"PReLU", _BINARY}),
    "RELU": frozenset({"Clamp", _UNARY}),
    "RELU6": frozenset({"Clamp", _UNARY}),
    "RELU_N1_TO_1": frozenset({"Clamp", _UNARY}),
    "RELU_0_TO_1": frozenset({"Clamp", _UNARY}),
    "HARD_SWISH": frozenset({"HardSwish", _UNARY}),
    "LOGISTIC": frozenset({"Sigmoid", _UNARY}),
    "TANH": frozenset({"Tanh", _UNARY}),
    "LEAKY_RELU": frozenset({"Leaky ReLU", _UNARY}),
    "SOFTMAX": frozenset({"Softmax"}),
    "MEAN": frozenset({"Mean", "Global Average Pooling", "Reduce"}),
    "SUM": frozenset({"Global Sum Pooling", "Reduce"}),
    "AVERAGE_POOL_2D": frozenset({"Average Pooling", "Global Average Pooling"}),
    "MAX_POOL_2D": frozenset({"Max Pooling"}),
    "RESIZE_BILINEAR": frozenset({"Resize Bilinear"}),
    "PAD": frozenset({"Constant Pad"}),
    "PADV2": frozenset({"Constant Pad"}),
    "TRANSPOSE": frozenset({"Transpose"}),
    "RESHAPE": frozenset({"Copy"}),
    "SQUEEZE": frozenset({"Copy"}),
    "EXPAND_DIMS": frozenset({"Copy"}),
    "CONCATENATION": frozenset({"Concatenate", "Copy"}),
    "SLICE": frozenset({"Slice"}),
    "STRIDED_SLICE": frozenset({"Slice"}),
    "SPLIT": frozenset({"Split", "Slice", "Copy"}),
    "SPLIT_V": frozenset({"Split", "Slice", "Copy"}),
    "DEPTH_TO_SPACE": frozenset({"Depth To Space"}),
}
XNNPACK_FOLDS = frozenset({"RELU", "RELU6", "RELU_N1_TO_1"})  # a clamp run inside the node before it
MAY_RUN_NONE = XNNPACK_FOLDS | {"PAD", "PADV2", "RESHAPE", "SQUEEZE", "EXPAND_DIMS"}  # or a pad it folds, a view
MAY_RUN_SEVERAL = frozenset({"CONCATENATION", "SPLIT", "SPLIT_V"})
_MOST_OPERATORS = 16  # per node that may run several

_NODE_INDEX = re.compile(r":(\d+)$")


@dataclass(frozen=True)
class _Row:
    node: int  # TFLite node index
    type: str  # as executed: a builtin, or an XNNPACK operator
    us: float


def operator_kind(node_type: str) -> str:
    """``Convolution (NHWC, F32) IGEMM`` -> ``Convolution``: the operator, without its layout and microkernel."""
    return node_type.split(" (", 1)[0].strip()


def _op_elements(view: GraphView, op: Op) -> int | None:
    total = 0
    for out in op.outputs:
        shape = view.maybe_shape(out)
        if shape is None:
            return None
        total += math.prod(shape)
    return total


def _op_weights(view: GraphView, op: Op) -> int | None:
    if op.category not in ("conv", "dwconv", "convtranspose", "fc", "matmul") or not op.weights:
        return None
    shape = view.maybe_shape(op.weights[0])
    return None if shape is None else math.prod(shape)


@dataclass
class _Placement:
    """Step 1's result: the ops of each TFLite node, and what could not be placed."""

    ops_of: dict[int, list[int]]  # TFLite node index -> indices of the ONNX ops it runs
    layout: list[int]  # TFLite nodes of the converter's layout work
    unplaced: list[str]


def place_ops(view: GraphView, ops: Sequence[Op], nodes: Sequence[TfliteNode]) -> _Placement:
    """Step 1 of the module doc."""
    producer_node = {t: n.index for n in nodes for t in n.outputs}
    by_index = {n.index: n for n in nodes}
    op_producer = {out: k for k, op in enumerate(ops) for out in op.outputs}
    node_of: dict[int, int] = {}  # ONNX op -> TFLite node
    chained: dict[int, list[int]] = {}  # ONNX op -> the further nodes of its chain (DECOMPOSED)
    used: set[int] = set()
    unplaced: list[str] = []

    def reads(node: TfliteNode, source: int) -> bool:
        """Whether ``node`` reads ``source``'s output, directly or through the converter's layout nodes."""
        seen: set[int] = set()
        stack = [producer_node[t] for t in node.inputs if t in producer_node]
        while stack:
            index = stack.pop()
            if index == source:
                return True
            if index in seen or index in used or by_index[index].op not in LAYOUT_BUILTINS:
                continue
            seen.add(index)
            stack.extend(producer_node[t] for t in by_index[index].inputs if t in producer_node)
        return False

    for k, op in enumerate(ops):
        elements, weights = _op_elements(view, op), _op_weights(view, op)
        builtins = BUILTINS_OF.get(op.category, frozenset())
        candidates = [
            n for n in nodes
            if n.index not in used and n.op in builtins and n.out_elements == elements
            and (weights is None or n.weight_elements == weights)
        ]  # fmt: skip
        source = op_producer.get(op.inputs[0]) if op.inputs else None
        while source is not None and source not in node_of and ops[source].category in VIEWS:
            source = op_producer.get(ops[source].inputs[0]) if ops[source].inputs else None  # through a view
        host = node_of.get(source) if source is not None else None
        if op.category in FOLDED_INTO and host is not None:
            candidates = [n for n in candidates if reads(n, host)]
            if not candidates and by_index[host].op in FOLDED_INTO[op.category]:
                node_of[k] = host  # the converter folded it into its producer's node
                continue
        if not candidates and op.category in DECOMPOSED and host is not None:
            chain = _chain(nodes, DECOMPOSED[op.category], elements, host, used, reads, producer_node)
            if chain:
                node_of[k] = chain[0]
                chained[k] = chain[1:]
                continue
        if candidates:
            node_of[k] = candidates[0].index
            used.add(candidates[0].index)
        elif op.category not in VIEWS:
            unplaced.append(f"{view.names[op.nodes[0]]} ({op.category}): no TFLite node of its kind and size")
    ops_of: dict[int, list[int]] = {}
    for k, index in node_of.items():
        for node in (index, *chained.get(k, ())):
            ops_of.setdefault(node, []).append(k)
    layout = []
    for n in nodes:
        if n.index in ops_of:
            continue
        if n.op in LAYOUT_BUILTINS:
            layout.append(n.index)
        else:
            unplaced.append(f"TFLite node {n.index} ({n.op}): runs no op of the model")
    return _Placement(ops_of, layout, unplaced)


def _chain(
    nodes: Sequence[TfliteNode], kinds: frozenset[str], elements: int | None, host: int, used: set[int],
    reads: Callable[[TfliteNode, int], bool], producer_node: dict[int, int],
) -> list[int]:  # fmt: skip
    """The unused elementwise nodes of ``kinds`` and ``elements``, each reading the one before from ``host``
    on, with no other computed input (their second operand a constant); marked used."""
    chain: list[int] = []
    last = host
    while True:
        step = next((n for n in nodes if n.index not in used and n.op in kinds and n.out_elements == elements
                     and sum(t in producer_node for t in n.inputs) == 1 and reads(n, last)), None)  # fmt: skip
        if step is None:
            return chain
        chain.append(step.index)
        used.add(step.index)
        last = step.index


def _align(delegated: Sequence[TfliteNode], operators: Sequence[dict[str, Any]]) -> list[int] | None:
    """Step 2 for XNNPACK: the TFLite node index of each operator, or None when no alignment exists."""
    kinds = [operator_kind(str(o["type"])) for o in operators]
    n, m = len(delegated), len(kinds)

    def runs(i: int, j: int) -> bool:
        return kinds[j] in OPERATORS_OF.get(delegated[i].op, frozenset())

    # done[i][j]: nodes i.. can run operators j..; filled from the end.
    done = [[False] * (m + 1) for _ in range(n + 1)]
    done[n][m] = True
    for i in range(n - 1, -1, -1):
        most = _MOST_OPERATORS if delegated[i].op in MAY_RUN_SEVERAL else 1
        for j in range(m, -1, -1):
            ok = delegated[i].op in MAY_RUN_NONE and done[i + 1][j]
            r = 0
            while not ok and r < most and j + r < m and runs(i, j + r):
                r += 1
                ok = done[i + 1][j + r]
            done[i][j] = ok
    if not done[0][0]:
        return None
    owner: list[int] = []
    j = 0
    for i, node in enumerate(delegated):  # the same preference as above: none, then the fewest
        if node.op in MAY_RUN_NONE and done[i + 1][j]:
            continue
        r = 0
        while True:
            owner.append(node.index)
            r += 1
            if done[i + 1][j + r]:
                break
        j += r
    return owner


def executed_rows(graph: dict[str, Any], nodes: Sequence[TfliteNode]) -> tuple[list[_Row], list[str]]:
    """Step 2: each executed row of the op profile with the TFLite node it ran, and what could not be placed."""
    by_index = {n.index: n for n in nodes}
    rows: list[_Row] = []
    operators: list[dict[str, Any]] = []
    builtin_nodes: set[int] = set()
    problems: list[str] = []
    delegates = 0
    for entry in graph.get("nodes") or []:
        name, kind, us = str(entry["name"]), str(entry["type"]), float(entry.get("avg_us") or 0.0)
        if is_delegate_node(kind):
            delegates += 1
        elif name.startswith(DELEGATED_PREFIX):
            operators.append(entry)
        else:
            found = _NODE_INDEX.search(name)
            index = int(found.group(1)) if found else -1
            if index not in by_index or by_index[index].op != kind:
                problems.append(f"{name} ({kind}): no such node in the .tflite")
                continue
            builtin_nodes.add(index)
            rows.append(_Row(index, kind, us))
    delegated = [n for n in nodes if n.index not in builtin_nodes]
    if delegated and not operators:
        if delegates:
            problems.append("the delegate's operators are not shown: its time cannot be placed on nodes")
        else:
            problems.append(f"{len(delegated)} nodes of the .tflite ran no row of the op profile")
        return rows, problems
    owners = _align(delegated, operators) if operators else []
    if owners is None:
        kinds = ", ".join(sorted({operator_kind(str(o["type"])) for o in operators}))
        problems.append(f"XNNPACK's operators ({kinds}) do not align with the delegated nodes")
        return rows, problems
    rows += [_Row(owner, str(o["type"]), float(o.get("avg_us") or 0.0))
             for owner, o in zip(owners, operators, strict=True)]  # fmt: skip
    return rows, problems


def litert_split(view: GraphView, nodes: Sequence[TfliteNode], graph: dict[str, Any]) -> RuntimeSplit:
    """Map an op-profiled LiteRT graph (driver.graph_of) onto the model's nodes (the module doc's steps)."""
    ops, _ = build_ops(view)
    placement = place_ops(view, ops, nodes)
    rows, problems = executed_rows(graph, nodes)
    unplaced = placement.unplaced + problems
    by_index = {n.index: n for n in nodes}
    producer_node = {t: n.index for n in nodes for t in n.outputs}
    time_of: dict[int, float] = {}
    count_of: dict[int, int] = {}
    first_type: dict[int, str] = {}
    for row in rows:
        time_of[row.node] = time_of.get(row.node, 0.0) + row.us
        count_of[row.node] = count_of.get(row.node, 0) + 1
        first_type.setdefault(row.node, row.type)
    units: dict[int, Unit] = {}
    host_of: dict[int, int] = {}  # TFLite node -> the node whose unit holds it
    unit_of_op: dict[int, int] = {}  # ONNX op -> the node whose unit runs it
    for n in nodes:  # in execution order: a producer's unit exists before its reader's
        if n.index not in placement.ops_of:
            continue
        placed = placement.ops_of[n.index]
        if all(k in unit_of_op for k in placed) and len({unit_of_op[k] for k in placed}) == 1:
            host = unit_of_op[placed[0]]  # a further node of a decomposed op: its chain is one unit
            units[host].time_us += time_of.get(n.index, 0.0)
            units[host].own_events += count_of.get(n.index, 0)
            host_of[n.index] = host
            continue
        covers = {i for k in placed for i in ops[k].nodes}
        sources = [producer_node[t] for t in n.inputs if t in producer_node]
        folded = n.index not in count_of and n.op in XNNPACK_FOLDS
        host = next((host_of[s] for s in sources if s in host_of), None)
        if folded and host is not None:  # an activation XNNPACK ran inside the node before it
            units[host].covers |= covers
            host_of[n.index] = host
            unit_of_op.update((k, host) for k in placed)
            continue
        units[n.index] = Unit(f"{n.op}:{n.index}", first_type.get(n.index, n.op), covers, time_of.get(n.index, 0.0),
                              own_events=count_of.get(n.index, 0))  # fmt: skip
        host_of[n.index] = n.index
        unit_of_op.update((k, n.index) for k in placed)
    readers: dict[int, list[int]] = {}
    for n in nodes:
        for t in n.inputs:
            if t in producer_node:
                readers.setdefault(producer_node[t], []).append(n.index)
    layout_us = 0.0
    for index in placement.layout:
        if index not in count_of:
            continue  # folded into its reader (a pad into the convolution) or a view: ran nothing
        layout_us += time_of[index]
        target = _layout_owner(index, readers, by_index, host_of) or next(
            (host_of[producer_node[t]] for t in by_index[index].inputs if producer_node.get(t) in host_of), None
        )
        if target is None:
            unplaced.append(f"TFLite node {index} ({by_index[index].op}): layout work of no placed node")
            continue
        units[target].layout_us += time_of[index]
        units[target].layout_nodes += count_of[index]
    total = sum(row.us for row in rows)
    return RuntimeSplit(list(units.values()), unplaced, layout_us, total)


def _layout_owner(
    index: int, readers: dict[int, list[int]], by_index: dict[int, TfliteNode], host_of: dict[int, int]
) -> int | None:
    """The unit of the first placed node that reads ``index``, through further layout nodes."""
    stack = list(readers.get(index, []))
    seen: set[int] = set()
    while stack:
        reader = stack.pop(0)
        if reader in host_of:
            return host_of[reader]
        if reader not in seen and by_index[reader].op in LAYOUT_BUILTINS:
            seen.add(reader)
            stack.extend(readers.get(reader, []))
    return None

"""ONNX model -> a static view of its graph: shapes, constants, aliases and consumers.

Kernel features need a concrete shape for every tensor, so the batch is fixed to 1 and shapes are
inferred once, here. Whatever the runtime computes before the first run (initializers, Constant and
Shape nodes, nodes fed only by constants) is marked static, so it is never counted as a kernel.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from google.protobuf.message import DecodeError
from onnx import numpy_helper

from hwlab.errors import GraphError

ONNX_DOMAINS = ("", "ai.onnx")
# Ops whose output is their first input at inference time (Dropout only while its mask is unused).
ALIAS_OPS = ("Identity", "Dropout")
# Ops computed once before the run whatever their input: a constant, or a tensor's (static) shape.
ALWAYS_STATIC_OPS = ("Constant", "Shape", "Size")

Shape = tuple[int, ...]


@dataclass
class GraphView:
    """The nodes of a model in topological order, with what is known about each value before running."""

    nodes: list[onnx.NodeProto]
    names: list[str]  # display name per node ("<OpType>_<topological index>" when the node has none)
    dims: dict[str, tuple[int | str | None, ...]]  # inferred dims per value; str/None for symbolic/unknown
    static: set[str] = field(default_factory=set)  # values known before the run
    constants: dict[str, onnx.TensorProto | np.ndarray] = field(default_factory=dict)  # ... whose contents we hold
    alias: dict[str, str] = field(default_factory=dict)  # Identity/Dropout output -> its input
    folded: set[int] = field(default_factory=set)  # node indices that are not kernels (static or aliases)
    consumers: dict[str, list[int]] = field(default_factory=dict)  # dynamic value -> non-folded node indices
    graph_outputs: set[str] = field(default_factory=set)

    def resolve(self, name: str) -> str:
        """The value `name` stands for once Identity/Dropout nodes are removed."""
        while name in self.alias:
            name = self.alias[name]
        return name

    def maybe_shape(self, name: str) -> Shape | None:
        """The concrete shape of `name`, or None when shape inference left it unknown or symbolic."""
        dims = self.dims.get(self.resolve(name))
        if dims is None:
            return None
        ints = tuple(d for d in dims if isinstance(d, int))
        return ints if len(ints) == len(dims) else None

    def shape(self, name: str, node: int | None = None) -> Shape:
        """The concrete shape of `name`; GraphError when it has none (features would be guesses)."""
        found = self.maybe_shape(name)
        if found is None:
            where = f" (at node '{self.names[node]}')" if node is not None else ""
            dims = self.dims.get(self.resolve(name))
            raise GraphError(
                f"value '{name}'{where} has no static shape after shape inference (inferred: {dims})",
                hint="export the model with fixed input shapes (batch 1, fixed height and width); a custom-domain "
                "op also leaves the shapes after it unknown to ONNX shape inference",
            )
        return found

    def value(self, name: str) -> np.ndarray | None:
        """The contents of a constant value, or None when it is dynamic or computed by folding."""
        held = self.constants.get(self.resolve(name))
        if held is None:
            return None
        return numpy_helper.to_array(held) if isinstance(held, onnx.TensorProto) else held

    def is_static(self, name: str) -> bool:
        return self.resolve(name) in self.static


def elements(shape: Shape | None) -> int:
    """Element count of a shape (0 when unknown)."""
    return math.prod(shape) if shape is not None else 0


MAX_MODEL_BYTES = 4 * 1024**3  # a .onnx with its external data: far above any CNN a device runs
MAX_INPUT_ELEMENTS = 1 << 28  # per input (1 GiB of float32): far above any image a CNN takes


def read_onnx(path: Path) -> onnx.ModelProto:
    """An ONNX model file, checked before use: there, within the size bound, an ONNX model with a graph,
    its external data (if any) inside the model's folder. Every problem is a GraphError naming the file."""
    hint = "pass an .onnx model file (torch.onnx.export writes one)"
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise GraphError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from None
    if not path.is_file() or size == 0:
        raise GraphError(f"{path} is {'empty' if path.is_file() else 'not a file'}", hint=hint)
    if size > MAX_MODEL_BYTES:
        raise GraphError(f"{path} is {size:,} bytes, more than {MAX_MODEL_BYTES:,}", hint="pass a CNN's .onnx")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except (OSError, DecodeError, ValueError, RuntimeError) as exc:
        raise GraphError(f"{path} is not an ONNX model ({type(exc).__name__}: {exc})", hint=hint) from None
    if proto.ir_version <= 0 or not proto.graph.node:
        raise GraphError(f"{path} is not an ONNX model with a graph (no nodes)", hint=hint)
    folder = path.resolve().parent
    files: set[Path] = set()
    for tensor in _external_tensors(proto):
        where = next((e.value for e in tensor.external_data if e.key == "location"), "")
        target = (folder / where).resolve()
        if not where or Path(where).is_absolute() or folder not in target.parents or not target.is_file():
            raise GraphError(
                f"{path}: the external data of {tensor.name!r} is at {where!r}, not a file beside the model",
                hint="keep a model's external data files in its own folder",
            )
        files.add(target)
    total = size + sum(f.stat().st_size for f in files)
    if total > MAX_MODEL_BYTES:
        raise GraphError(f"{path} with its external data is {total:,} bytes, more than {MAX_MODEL_BYTES:,}",
                         hint="pass a CNN's .onnx")  # fmt: skip
    try:
        onnx.load_external_data_for_model(proto, str(folder))
    except Exception as exc:  # noqa: BLE001 - onnx raises several kinds for damaged external data
        raise GraphError(f"{path}: its external data cannot be read ({type(exc).__name__}: {exc})", hint=hint) from None
    return proto


def _external_tensors(proto: onnx.ModelProto) -> list[onnx.TensorProto]:
    found = [t for t in proto.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                found.append(attr.t)
    return found


def check_inputs(proto: onnx.ModelProto, what: str) -> None:
    """Refuse a model whose declared input sizes are absurd (the batch dimension, which becomes 1, aside)."""
    weights = {t.name for t in proto.graph.initializer}
    for value in proto.graph.input:
        if value.name in weights:
            continue
        dims = [d.dim_value for d in value.type.tensor_type.shape.dim][1:]
        if any(d < 0 for d in dims):
            raise GraphError(f"{what}: input {value.name!r} declares a negative dimension", hint="fix the export")
        if math.prod(d for d in dims if d > 0) > MAX_INPUT_ELEMENTS:
            shape = [d.dim_value or d.dim_param or "?" for d in value.type.tensor_type.shape.dim]
            raise GraphError(
                f"{what}: input {value.name!r} declares shape {shape}, more than {MAX_INPUT_ELEMENTS:,} elements"
                " per sample: refused as absurd for a CNN",
                hint="export the model at the input size it runs at on the device",
            )


def load_model(model: str | Path | onnx.ModelProto) -> onnx.ModelProto:
    """A private copy of the model with sorted nodes, batch 1 and every value's shape inferred."""
    if isinstance(model, onnx.ModelProto):
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    else:
        proto = read_onnx(Path(model))
    check_inputs(proto, str(model) if not isinstance(model, onnx.ModelProto) else "the model")
    graph = proto.graph
    # Shape inference walks nodes in file order, so an unsorted file would leave shapes unknown.
    ordered = [graph.node[i] for i in _topological(graph)]
    del graph.node[:]
    graph.node.extend(ordered)
    weights = {t.name for t in graph.initializer}
    for value in graph.input:
        dims = value.type.tensor_type.shape.dim
        if value.name not in weights and len(dims) > 0 and (dims[0].dim_param or dims[0].dim_value <= 0):
            dims[0].Clear()
            dims[0].dim_value = 1
    # Stale annotations (e.g. a symbolic batch) would otherwise win over what inference finds.
    del graph.value_info[:]
    for value in graph.output:
        value.type.tensor_type.ClearField("shape")
    try:
        return onnx.shape_inference.infer_shapes(proto, data_prop=True)
    except onnx.shape_inference.InferenceError as exc:
        raise GraphError(f"ONNX shape inference failed: {exc}", hint="check the model with onnx.checker") from exc


def _dims(value: onnx.ValueInfoProto) -> tuple[int | str | None, ...] | None:
    tensor = value.type.tensor_type
    if not tensor.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim)


def _topological(graph: onnx.GraphProto) -> list[int]:
    """Node indices in a topological order, keeping file order where it is already one."""
    available = {v.name for v in graph.input} | {t.name for t in graph.initializer} | {""}
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    waiting: dict[int, int] = {}
    users: dict[int, list[int]] = {}
    ready: list[int] = []
    for i, node in enumerate(graph.node):
        deps = {producer[x] for x in node.input if x not in available and x in producer}
        missing = [x for x in node.input if x not in available and x not in producer]
        if missing:
            raise GraphError(
                f"input '{missing[0]}' of node '{node.name or node.op_type}' is neither a graph input, "
                "an initializer nor a node output",
                hint="check the model with onnx.checker.check_model",
            )
        waiting[i] = len(deps)
        for d in deps:
            users.setdefault(d, []).append(i)
        if not deps:
            heapq.heappush(ready, i)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for u in users.get(i, ()):
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) != len(graph.node):
        raise GraphError("the ONNX graph has a cycle", hint="check the model with onnx.checker.check_model")
    return order


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | np.ndarray | None:
    for attr in node.attribute:
        if attr.name == "value":
            return attr.t
        if attr.name in ("value_float", "value_floats", "value_int", "value_ints"):
            return np.asarray(onnx.helper.get_attribute_value(attr))
    return None  # sparse or string constants: static, contents not needed


def _is_alias(node: onnx.NodeProto, used: set[str]) -> bool:
    if node.op_type not in ALIAS_OPS or node.domain not in ONNX_DOMAINS or not node.input:
        return False
    return all(not out or out not in used for out in node.output[1:])  # Dropout's mask must be unused


def build_view(proto: onnx.ModelProto) -> GraphView:
    """Collect shapes and constants of a `load_model` result, and mark what the runtime folds away."""
    graph = proto.graph
    nodes = list(graph.node)
    names = [node.name or f"{node.op_type}_{i}" for i, node in enumerate(nodes)]
    dims: dict[str, tuple[int | str | None, ...]] = {}
    for value in [*graph.input, *graph.value_info, *graph.output]:
        found = _dims(value)
        if found is not None:
            dims[value.name] = found
    view = GraphView(nodes, names, dims)
    for tensor in graph.initializer:
        view.dims[tensor.name] = tuple(tensor.dims)
        view.static.add(tensor.name)
        view.constants[tensor.name] = tensor
    used = {x for node in nodes for x in node.input} | {v.name for v in graph.output}
    for i, node in enumerate(nodes):
        inputs = [view.resolve(x) for x in node.input if x]
        outputs = [x for x in node.output if x]
        if _is_alias(node, used):
            view.alias[node.output[0]] = inputs[0]
            view.folded.add(i)
            continue
        default = node.domain in ONNX_DOMAINS
        if (default and node.op_type in ALWAYS_STATIC_OPS) or (inputs and all(x in view.static for x in inputs)):
            view.folded.add(i)
            view.static.update(outputs)
            if default and node.op_type == "Constant" and (held := _constant_value(node)) is not None:
                view.constants[outputs[0]] = held
                view.dims.setdefault(outputs[0], tuple(held.dims if hasattr(held, "dims") else held.shape))
            continue
        for x in dict.fromkeys(inputs):
            if x not in view.static:
                view.consumers.setdefault(x, []).append(i)
    view.graph_outputs = {view.resolve(v.name) for v in graph.output}
    return view

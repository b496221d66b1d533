"""Cut each kernel of a model out as a standalone ONNX model, so it can be measured alone.

Kernel training data then comes from the very kernels real models contain, at their
real shapes: a kernel's latency is measured on the subgraph of its own nodes, with
its weights and the constants it reads, and its features come from the same split
that prediction uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import onnx
from onnx import helper, numpy_helper

from hwlab.export import ExportedModel, models_dir
from hwlab.predictors.graph import onnx_kernels
from hwlab.predictors.graph_load import GraphView, build_view, load_model
from hwlab.predictors.kernels import FusionRules, Kernel


@dataclass(frozen=True)
class KernelModel:
    """A kernel and the standalone ONNX model that runs exactly its nodes."""

    kernel: Kernel
    model: onnx.ModelProto

    @property
    def key(self) -> str:
        """Same type and features, same key: kernels repeated across models are measured once."""
        features = "-".join(f"{name}:{self.kernel.features[name]:g}" for name in sorted(self.kernel.features))
        return f"kernel:{self.kernel.type}-{features}"


def _value_info(view: GraphView, name: str) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, list(view.shape(name)))


def _subgraph(view: GraphView, proto: onnx.ModelProto, kernel: Kernel) -> onnx.ModelProto:
    index = {name: i for i, name in enumerate(view.names)}
    members = [index[name] for name in kernel.nodes]
    weights = {t.name: t for t in proto.graph.initializer}
    producer = {out: i for i, node in enumerate(view.nodes) for out in node.output}
    nodes: list[int] = []
    inputs: dict[str, None] = {}
    initializers: dict[str, onnx.TensorProto] = {}

    def need(value: str, inside: set[str]) -> None:
        """Make ``value`` available to the subgraph: an initializer, a held constant, or an input."""
        if not value or value in inside or value in inputs or value in initializers:
            return
        if value in weights:
            initializers[value] = weights[value]
        elif view.value(value) is not None:
            initializers[value] = numpy_helper.from_array(view.value(value), value)
        elif view.is_static(value) and value in producer:  # computed from shapes: bring its producers
            node = producer[value]
            nodes.insert(0, node)
            inside.update(view.nodes[node].output)
            for x in view.nodes[node].input:
                need(x, inside)
        else:
            inputs[value] = None

    produced = {out for i in members for out in view.nodes[i].output}
    nodes.extend(members)
    for i in members:
        for x in view.nodes[i].input:
            need(x, set(produced))
    last = view.nodes[members[-1]]
    outputs = [out for out in last.output if out and out in view.dims]
    graph = helper.make_graph(
        [view.nodes[i] for i in dict.fromkeys(nodes)],
        f"kernel_{kernel.type}",
        [_value_info(view, x) for x in inputs],
        [_value_info(view, x) for x in outputs],
        list(initializers.values()),
    )
    model = helper.make_model(graph, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    onnx.checker.check_model(model)
    return model


def kernel_models(model: str | Path | onnx.ModelProto, rules: FusionRules) -> list[KernelModel]:
    """Every kernel of a model with its standalone subgraph, in execution order."""
    proto = load_model(model)
    view = build_view(proto)
    return [KernelModel(k, _subgraph(view, proto, k)) for k in onnx_kernels(proto, rules)]


def save_kernel_model(item: KernelModel, cache_dir: Path | None = None) -> ExportedModel:
    """Write the subgraph content-addressed into the model cache, as the exporters do."""
    data = item.model.SerializeToString()
    digest = hashlib.sha256(data).hexdigest()
    folder = models_dir(cache_dir) / "kernels"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{digest}.onnx"
    if not path.exists():
        tmp = path.with_name(f".tmp-{digest}.onnx")
        tmp.write_bytes(data)
        tmp.replace(path)
    shapes = tuple(tuple(d.dim_value for d in value.type.tensor_type.shape.dim) for value in item.model.graph.input)
    return ExportedModel(path, digest, "onnx", shapes, item.key)

"""The networks a bit-width search runs over, and their searchable layers as the device sees them.

Two spaces, as in SPOS's quantisation experiment: a network of the SPOS ShuffleNetV2 space (one
architecture: a search winner's, or a default) and a ResNet-like network. Their searchable layers are
every convolution and the classifier; each is described by its node in the exported ONNX graph (the
name ``nodes_to_exclude`` takes), its single-op spec (the key of its latency rows), its MACs, and the
layers that feed it and read it through ops that are not searched (ReLU, Add, Concat, shuffle, pooling):
where a precision switch costs a Quantize or a Dequantize.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx
import torch
from torch import nn

from hwlab.errors import SearchError
from hwlab.quant.onnx_qdq import without_identities
from hwlab.space.opspec import OpSpec

QSPACES = ("spos", "resnet")
GRAPH_INPUT = -1  # a producer that is the network's input / a consumer that is its output
LAYER_OPS = ("Conv", "Gemm")

# The ResNet-like network of ``--space resnet`` at the digits' scale: a 3x3 stem and three stages of two
# basic blocks (16, 32, 64 channels), as the ResNet-20-style networks of the SPOS quantisation experiment.
RESNET_STAGES = ((16, 2, 1), (32, 2, 2), (64, 2, 2))


@dataclass(frozen=True)
class Layer:
    """One searchable layer: its graph node, its op at fp32, its MACs, and its neighbours among the layers."""

    index: int
    node: str
    spec: OpSpec
    macs: int
    producers: tuple[int, ...]
    consumers: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "node": self.node, "op": self.spec.key, "macs": self.macs,
                "producers": list(self.producers), "consumers": list(self.consumers)}  # fmt: skip


def build_network(space: str, num_classes: int, input_size: int, arch: dict[str, Any] | None = None) -> nn.Module:
    """The fp32 network of ``space`` (seeded; trained later): ``arch`` gives a SPOS network's choices."""
    if space == "spos":
        from hwlab.space import SposConfig
        from hwlab.zoo import SposNet

        choices = list((arch or {}).get("choices") or [0] * 20)
        scales = (arch or {}).get("scales")
        return SposNet(SposConfig(input_size, 0.25, (1.0,), num_classes, 1), choices, scales).train()
    if space == "resnet":
        from hwlab.zoo import resnet

        stages = [{"width": w, "depth": d, "stride": s} for w, d, s in RESNET_STAGES]
        config = {"input_size": input_size, "stem_kernel": 3, "stem_width": 16, "maxpool": False, "stages": stages}
        torch.manual_seed(0)
        net = resnet.build(config)
        net[-1][-1] = nn.Linear(net[-1][-1].in_features, num_classes)
        return net.train()
    raise SearchError(f"unknown quantisation space {space!r}", hint=f"use one of: {', '.join(QSPACES)}")


def _spec(module: nn.Module, in_shape: Sequence[int], out_shape: Sequence[int]) -> tuple[OpSpec, int]:
    if isinstance(module, nn.Linear):
        return OpSpec("fc", 1, 1, module.in_features, module.out_features), module.in_features * module.out_features
    assert isinstance(module, nn.Conv2d)
    _, cin, h, w = in_shape
    _, cout, ho, wo = out_shape
    k, stride, groups = module.kernel_size[0], module.stride[0], module.groups
    macs = ho * wo * cout * (cin // groups) * k * k
    if groups > 1 and groups == cin == cout:
        return OpSpec("dwconv", h, w, cin, cout, kernel=k, stride=stride), macs
    if k == 1:
        return OpSpec("pwconv", h, w, cin, cout, stride=stride, groups=groups), macs
    return OpSpec("conv", h, w, cin, cout, kernel=k, stride=stride, groups=groups), macs


def layer_shapes(net: nn.Module, example: torch.Tensor) -> list[tuple[nn.Module, OpSpec, int]]:
    """(module, spec, MACs) of every Conv2d and Linear in the order a forward pass runs them."""
    seen: list[tuple[nn.Module, OpSpec, int]] = []

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        seen.append((module, *_spec(module, inputs[0].shape, output.shape)))

    hooks = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = net.training
    try:
        with torch.no_grad():
            net.eval()(example)
    finally:
        for h in hooks:
            h.remove()
        net.train(was_training)
    return seen


def graph_layers(onnx_path: Path, specs: Sequence[tuple[OpSpec, int]]) -> list[Layer]:
    """The searchable layers of an exported network: its Conv and Gemm nodes in graph order, matched one to
    one with ``specs`` (the torch layers in forward order), with their producers and consumers."""
    graph = without_identities(onnx.load(str(onnx_path))).graph
    nodes = list(graph.node)
    layer_nodes = [i for i, n in enumerate(nodes) if n.op_type in LAYER_OPS]
    if len(layer_nodes) != len(specs):
        raise SearchError(f"{onnx_path.name} has {len(layer_nodes)} Conv/Gemm nodes, the network {len(specs)} layers",
                          hint="search networks whose convolutions export one node each")  # fmt: skip
    index_of = {nodes[i].name: k for k, i in enumerate(layer_nodes)}
    producer_of = {out: n for n in nodes for out in n.output}
    readers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for n in nodes:
        for name in n.input:
            readers[name].append(n)
    outputs = {o.name for o in graph.output}

    def upstream(tensor: str) -> set[int]:
        node = producer_of.get(tensor)
        if node is None:
            return {GRAPH_INPUT} if tensor not in {t.name for t in graph.initializer} else set()
        if node.name in index_of:
            return {index_of[node.name]}
        found: set[int] = set()
        for name in node.input:
            found |= upstream(name)
        return found

    def downstream(tensor: str) -> set[int]:
        found = {GRAPH_INPUT} if tensor in outputs else set()
        for node in readers.get(tensor, []):
            if node.name in index_of:
                found.add(index_of[node.name])
            else:
                for name in node.output:
                    found |= downstream(name)
        return found

    layers = []
    for k, i in enumerate(layer_nodes):
        node = nodes[i]
        if not node.name:
            raise SearchError(f"{onnx_path.name}: a {node.op_type} node has no name", hint="export with node names")
        spec, macs = specs[k]
        layers.append(Layer(k, node.name, spec, macs, tuple(sorted(upstream(node.input[0]))),
                            tuple(sorted(downstream(node.output[0])))))  # fmt: skip
    return layers

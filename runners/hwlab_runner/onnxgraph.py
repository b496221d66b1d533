"""The nodes of an ONNX model file, read without the ``onnx`` package.

The runner needs only numpy and a runtime, yet it must say which nodes onnxruntime's
optimised graph holds. An ONNX file is a protobuf message; the few fields needed here
(ModelProto.graph, GraphProto.node, NodeProto input/output/name/op_type/domain/attribute,
AttributeProto name/s/i) are read from the wire format directly. Everything else, the
weights included, is skipped without being copied.
"""

from __future__ import annotations

from typing import Any, Iterator

# Field numbers from onnx.proto.
_MODEL_GRAPH = 7
_GRAPH_NODE = 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP, _NODE_ATTRIBUTE, _NODE_DOMAIN = 1, 2, 3, 4, 5, 7
_ATTR_NAME, _ATTR_I, _ATTR_S = 1, 3, 4

# The attributes worth reporting: what a fused node absorbed.
KEPT_ATTRIBUTES = ("activation", "fused_activation", "group")


class ProtobufError(ValueError):
    """The bytes are not the protobuf message they should be."""


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("a varint runs past the end of the message")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: memoryview) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field: an int for varints, a memoryview for
    length-delimited fields, raw bytes for fixed-width ones."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            if pos + size > len(data):
                raise ProtobufError(f"field {number} runs past the end of the message")
            value, pos = data[pos : pos + size], pos + size
        elif wire in (1, 5):
            width = 8 if wire == 1 else 4
            value, pos = bytes(data[pos : pos + width]), pos + width
        else:
            raise ProtobufError(f"field {number} has the unsupported wire type {wire}")
        yield number, wire, value


def _text(value: memoryview) -> str:
    return bytes(value).decode("utf-8", "replace")


def _attribute(data: memoryview) -> tuple[str, Any]:
    name, value = "", None
    for number, wire, raw in fields(data):
        if number == _ATTR_NAME and wire == 2:
            name = _text(raw)
        elif number == _ATTR_S and wire == 2:
            value = _text(raw)
        elif number == _ATTR_I and wire == 0:
            value = raw - (1 << 64) if raw >= 1 << 63 else raw
    return name, value


def _node(data: memoryview) -> dict[str, Any]:
    node: dict[str, Any] = {"name": "", "op": "", "domain": "", "inputs": [], "outputs": []}
    for number, wire, value in fields(data):
        if wire != 2:
            continue
        if number == _NODE_INPUT:
            node["inputs"].append(_text(value))
        elif number == _NODE_OUTPUT:
            node["outputs"].append(_text(value))
        elif number == _NODE_NAME:
            node["name"] = _text(value)
        elif number == _NODE_OP:
            node["op"] = _text(value)
        elif number == _NODE_DOMAIN:
            node["domain"] = _text(value)
        elif number == _NODE_ATTRIBUTE:
            name, attr = _attribute(value)
            if name in KEPT_ATTRIBUTES and attr is not None:
                node[name] = attr
    return node


def graph_nodes(data: bytes) -> list[dict[str, Any]]:
    """The top-level graph's nodes in file order (onnxruntime writes them topologically sorted)."""
    view = memoryview(data)
    for number, wire, graph in fields(view):
        if number == _MODEL_GRAPH and wire == 2:
            return [_node(value) for n, w, value in fields(graph) if n == _GRAPH_NODE and w == 2]
    raise ProtobufError("the model has no graph")

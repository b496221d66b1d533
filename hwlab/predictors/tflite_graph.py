"""The nodes of a ``.tflite`` model as the converter wrote them: what LiteRT's op profile refers to.

benchmark_model's op profile names a TFLite builtin by its node index (``[tensor]:7``) and lists
XNNPACK's operators in the order of the nodes they run; to place either on the model's own ONNX
ops (litert_split.py) the host reads the same ``.tflite`` that was measured: each node's builtin, its
tensors, how many elements it writes and, for an op with weights, how many weights it holds. Those
counts do not depend on the layout (NHWC here, NCHW in the ONNX model), so they identify a node.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwlab.tflitefile import check_tflite, interpreter_module

# Builtins whose second input is their weight tensor.
WEIGHTED_OPS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"})


@dataclass(frozen=True)
class TfliteNode:
    """One node of the model's main subgraph, in execution order."""

    index: int
    op: str  # the builtin's name, as the op profile prints it (CONV_2D, PAD, ...)
    inputs: tuple[int, ...]  # tensor indices (-1: an optional input left out)
    outputs: tuple[int, ...]
    out_elements: int  # over all its outputs
    weight_elements: int | None  # of its weight tensor (WEIGHTED_OPS), else None


def read_tflite_nodes(path: Path | str) -> list[TfliteNode]:
    """The nodes of the model's main subgraph (see the module doc)."""
    path = check_tflite(Path(path))
    module = interpreter_module(path)
    # Without delegates: the nodes as the file holds them, not as XNNPACK rewrote them.
    interpreter = module.Interpreter(
        model_path=str(path), experimental_op_resolver_type=module.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    )
    shapes = {int(t["index"]): tuple(int(d) for d in t["shape"]) for t in interpreter.get_tensor_details()}

    def elements(tensor: int) -> int:
        return int(np.prod(shapes.get(tensor, ()), dtype=np.int64)) if tensor >= 0 else 0

    nodes = []
    for op in interpreter._get_ops_details():
        inputs = tuple(int(t) for t in op["inputs"])
        outputs = tuple(int(t) for t in op["outputs"])
        name = str(op["op_name"])
        weight = elements(inputs[1]) if name in WEIGHTED_OPS and len(inputs) > 1 else None
        nodes.append(TfliteNode(int(op["index"]), name, inputs, outputs, sum(elements(t) for t in outputs), weight))
    return nodes

"""What a user's model file (``.onnx``, ``.tflite``) takes as input, read on the host before anything is sent.

Names, dimensions (None where the file leaves one symbolic) and dtypes, in the order the runtime feeds
them: what a job's model entry is built from, and what an ``--inputs`` archive is checked against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwlab.errors import GraphError


@dataclass(frozen=True)
class ModelInput:
    """One input of a model file; ``dims`` has None where the file leaves a dimension symbolic."""

    name: str
    dims: tuple[int | None, ...]
    dtype: str  # numpy's name: float32, int64, ...


def model_inputs(path: Path) -> tuple[ModelInput, ...]:
    """The inputs of an ``.onnx`` (initialisers left out) or ``.tflite`` file; GraphError for a file that
    cannot be read, ExportError when no LiteRT interpreter is here to read a ``.tflite``."""
    if path.suffix == ".onnx":
        from onnx.helper import tensor_dtype_to_np_dtype

        from hwlab.predictors.graph_load import read_onnx

        graph = read_onnx(path).graph
        initialised = {t.name for t in graph.initializer}
        inputs = []
        for value in graph.input:
            if value.name in initialised:
                continue
            tensor = value.type.tensor_type
            dims = tuple(d.dim_value if d.dim_value > 0 else None for d in tensor.shape.dim)
            try:
                dtype = np.dtype(tensor_dtype_to_np_dtype(tensor.elem_type)).name
            except (KeyError, TypeError, ValueError):  # a type numpy has no name for (undefined, bfloat16, ...)
                dtype = f"onnx type {tensor.elem_type}"
            inputs.append(ModelInput(value.name, dims, dtype))
        return tuple(inputs)
    from hwlab.tflitefile import check_tflite, interpreter_module

    check_tflite(path)
    details = interpreter_module(path).Interpreter(model_path=str(path)).get_input_details()
    return tuple(
        ModelInput(
            str(detail["name"]),
            tuple(int(d) if d > 0 else None for d in detail.get("shape_signature", detail["shape"])),
            np.dtype(detail["dtype"]).name,
        )
        for detail in details
    )


def file_shapes(path: Path) -> tuple[tuple[int, ...], ...]:
    """The input shapes a model file declares (a symbolic dimension taken as 1: batch 1); float inputs only,
    since the runner fills them with seeded random data."""
    inputs = model_inputs(path)
    for model_input in inputs:
        if path.suffix == ".onnx" and model_input.dtype != "float32":
            raise GraphError(
                f"{path}: input {model_input.name!r} is not float32", hint="give a model with float inputs"
            )
    return tuple(tuple(d or 1 for d in model_input.dims) for model_input in inputs)

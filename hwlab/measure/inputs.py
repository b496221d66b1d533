"""Input data for a model (``--inputs data.npz``), checked on the host against the model file before anything
is sent: a wrong archive is refused here, with the fix, not found on a board after a push.

The archive holds one array per model input, named after the input or ``arr_<i>`` by position (what
``numpy.savez(path, *arrays)`` writes); other members are ignored. A member's first axis is the sample
index: (N, *shape) is fed as stored, and for an input whose first dimension is 1 (or symbolic), (N, *rest)
is fed a sample at a time with that axis as the batch axis. The runner reads it by the same rule
(runners/hwlab_runner/inputdata.py), so what was checked here is what the device feeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hwlab_runner.inputdata import batch_axis
from hwlab_runner.job import DTYPES, InputSpec

from hwlab.errors import InputDataError
from hwlab.export import file_sha256
from hwlab.modelfile import ModelInput, model_inputs
from hwlab.npzfile import ArrayFileProblem, read_npz

HINT = "save one array per model input, samples along the first axis: numpy.savez('data.npz', <input name>=samples)"


@dataclass(frozen=True)
class InputArchive:
    """An archive that fits one model: which member feeds each input, and one sample's shape and dtype."""

    path: Path
    sha256: str
    members: tuple[str, ...]
    inputs: tuple[InputSpec, ...]  # one sample of each input, as the device feeds it
    samples: int


def _fits(shape: tuple[int, ...], dims: tuple[int | None, ...]) -> bool:
    return len(shape) == len(dims) and all(d is None or d == s for s, d in zip(shape, dims, strict=True))


def _sample_shape(shape: tuple[int, ...], model_input: ModelInput) -> tuple[int, ...] | None:
    """One sample's shape, fed as stored (N, *dims) or along a batch axis (N, *dims[1:]); None when neither."""
    dims = model_input.dims
    if len(shape) == len(dims) + 1 and _fits(shape[1:], dims):
        return shape[1:]
    if dims and dims[0] in (1, None) and _fits(shape[1:], dims[1:]):
        return (1, *shape[1:])
    return None


def _text(dims: Sequence[int | str | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _wanted(dims: tuple[int | None, ...]) -> list[str]:
    """The array shapes that feed an input of ``dims``: samples stored whole, or along its batch axis."""
    shapes = [_text(("N", *dims))]
    if dims and dims[0] in (1, None):
        shapes.append(_text(("N", *dims[1:])))
    return shapes


def _member(arrays: dict[str, np.ndarray], model_input: ModelInput, index: int, path: Path, model: Path) -> str:
    for name in (model_input.name, f"arr_{index}"):
        if name in arrays:
            return name
    raise InputDataError(
        f"{path} has no array for input {index} {model_input.name!r} of {model.name}"
        f" (its members: {', '.join(sorted(arrays)) or 'none'})",
        hint=f"name it after the input ({model_input.name}) or by position (arr_{index}): {HINT}",
    )


def input_archive(path: Path, model: Path) -> InputArchive:
    """``path`` checked against ``model``'s inputs: every input has an array of its dtype and a shape it takes,
    all with the same number of samples (at least one). An :class:`InputDataError` says what to change."""
    if not path.is_file():
        raise InputDataError(f"no input data at {path}", hint="check the path given with --inputs")
    try:
        arrays = read_npz(path)
    except ArrayFileProblem as problem:
        raise InputDataError(f"{path} {problem}", hint=HINT) from None
    inputs = model_inputs(model)
    if not inputs:
        raise InputDataError(f"{model.name} takes no input: there is nothing to feed it", hint="leave out --inputs")
    members, specs, counts = [], [], set()
    for i, model_input in enumerate(inputs):
        name = _member(arrays, model_input, i, path, model)
        array = arrays[name]
        if array.dtype.name != model_input.dtype or model_input.dtype not in DTYPES:
            raise InputDataError(
                f"{path}: array {name!r} is {array.dtype.name}; input {model_input.name!r} of {model.name}"
                f" takes {model_input.dtype}",
                hint=f"convert it: array.astype(numpy.{model_input.dtype})"
                if model_input.dtype in DTYPES
                else f"hwlab feeds inputs of {', '.join(DTYPES)} only",
            )
        sample = _sample_shape(array.shape, model_input)
        if sample is None or batch_axis(array.shape, sample) is None:
            raise InputDataError(
                f"{path}: array {name!r} has shape {array.shape}; input {model_input.name!r} of {model.name} is"
                f" {_text(model_input.dims)}, so the array must be {' or '.join(_wanted(model_input.dims))}"
                f" (N samples{'; ? any size' if None in model_input.dims else ''})",
                hint=HINT,
            )
        members.append(name)
        specs.append(InputSpec(sample, model_input.dtype))
        counts.add(array.shape[0])
    if len(counts) > 1:
        held = " and ".join(map(str, sorted(counts)))
        raise InputDataError(f"{path}: the arrays hold {held} samples", hint="give every input as many samples")
    if counts == {0}:
        raise InputDataError(f"{path} holds no sample for {model.name}", hint=HINT)
    return InputArchive(path, file_sha256(path), tuple(members), tuple(specs), counts.pop())

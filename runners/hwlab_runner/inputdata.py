"""Real inputs for a model whose latency depends on them: an ``.npz`` archive, one member per model input.

A member's first axis is the sample index. For an input of shape S, a member of shape (N, *S) feeds
sample i as stored (``member[i]``); when S starts with 1 (a batch of one), a member of shape
(N, *S[1:]) is read with its first axis as the batch axis (sample i is ``member[i:i+1]``), the way a
data set is usually saved. Every member holds the same N, in the input's dtype. Members the job does
not name (labels, say) are ignored. Nothing is ever unpickled.

:func:`problem` reads only the members' headers, so a job file is checked at once and cheaply;
:func:`load_samples` reads the arrays when the model is measured, and checks them again.
"""

from __future__ import annotations

import zipfile
from typing import TYPE_CHECKING, Sequence, Tuple

import numpy as np

if TYPE_CHECKING:
    from .job import InputSpec

Header = Tuple[Tuple[int, ...], np.dtype]


class InputDataError(ValueError):
    """An input-data archive cannot feed the model: unreadable, a member missing, or of the wrong shape."""


def _member_name(filename: str) -> str:
    return filename[:-4] if filename.endswith(".npy") else filename


def read_headers(path: str) -> dict[str, Header]:
    """(shape, dtype) of every member, from the headers alone."""
    try:
        archive = zipfile.ZipFile(path)
    except OSError as e:
        raise InputDataError(f"cannot read {path}: {e.strerror or e}") from None
    except (zipfile.BadZipFile, EOFError) as e:
        raise InputDataError(f"{path} is not an .npz archive ({e})") from None
    headers: dict[str, Header] = {}
    with archive:
        for info in archive.infolist():
            name = _member_name(info.filename)
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    if version == (1, 0):
                        shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                    else:
                        shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
                raise InputDataError(f"{path}: member {name!r} is not a .npy array ({e})") from None
            headers[name] = (tuple(int(d) for d in shape), np.dtype(dtype))
    return headers


def batch_axis(member_shape: Sequence[int], input_shape: Sequence[int]) -> bool | None:
    """How a member of ``member_shape`` feeds an input of ``input_shape``: False when it is stored as
    (N, *shape), True when its first axis is the batch axis of a batch-1 input, None when it fits neither."""
    member, shape = tuple(member_shape), tuple(input_shape)
    if len(member) == len(shape) + 1 and member[1:] == shape:
        return False
    if shape and shape[0] == 1 and len(member) == len(shape) and member[1:] == shape[1:]:
        return True
    return None


def problem(headers: dict[str, Header], members: Sequence[str], inputs: Sequence[InputSpec]) -> str | None:
    """Why these members cannot feed these inputs (None when they can)."""
    if len(members) != len(inputs):
        return f"names {len(members)} members for a model of {len(inputs)} inputs"
    counts = set()
    for i, (name, spec) in enumerate(zip(members, inputs)):
        if name not in headers:
            return f"has no member {name!r} for input {i} (members: {', '.join(sorted(headers)) or 'none'})"
        shape, dtype = headers[name]
        if dtype.hasobject or dtype.name != spec.dtype:
            return f"member {name!r} is {dtype}, input {i} takes {spec.dtype}: save it as {spec.dtype}"
        if batch_axis(shape, spec.shape) is None:
            wanted = f"(N, {', '.join(map(str, spec.shape))})"
            if spec.shape and spec.shape[0] == 1:
                wanted += f" or (N, {', '.join(map(str, spec.shape[1:]))})"
            return f"member {name!r} has shape {shape}, input {i} of shape {tuple(spec.shape)} needs {wanted}"
        counts.add(shape[0])
    if len(counts) > 1:
        return f"members hold {' and '.join(map(str, sorted(counts)))} samples: every input needs the same number"
    if counts == {0}:
        return "holds no sample"
    return None


def load_samples(path: str, members: Sequence[str], inputs: Sequence[InputSpec]) -> list[list[np.ndarray]]:
    """The samples in order, each a list of one array per input, ready to feed (C-contiguous)."""
    found = problem(read_headers(path), members, inputs)
    if found:
        raise InputDataError(f"{path}: {found}")
    with np.load(path, allow_pickle=False) as archive:
        arrays = [archive[name] for name in members]
    count = arrays[0].shape[0]
    views = []
    for array, spec in zip(arrays, inputs):
        batched = batch_axis(array.shape, spec.shape)
        views.append([np.ascontiguousarray(array[i : i + 1] if batched else array[i]) for i in range(count)])
    return [[view[i] for view in views] for i in range(count)]


def default_members(count: int) -> list[str]:
    """What ``numpy.savez(path, *arrays)`` names its members: arr_0, arr_1, ..."""
    return [f"arr_{i}" for i in range(count)]

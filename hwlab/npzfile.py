"""``.npz`` archives from users' files, read safely: plain arrays only, within a stated size together.

``numpy.load`` refuses pickled members with ``allow_pickle=False``, but it allocates
whatever a member's header declares (a few bytes can declare 10^10 elements) and it
raises a zoo of exception types on damage. Every ``.npz`` hwlab reads comes through
here: each member's header is read first, its size checked, then the array.
"""

from __future__ import annotations

import io
import math
import zipfile
from pathlib import Path

import numpy as np

MAX_ARRAY_BYTES = 4 * 1024**3  # far above a predictor's trees or a data set that trains here


class ArrayFileProblem(ValueError):
    """What is wrong with an ``.npz`` (the caller adds the file and the fix)."""


def read_npz(source: bytes | Path, max_bytes: int = MAX_ARRAY_BYTES) -> dict[str, np.ndarray]:
    """Every member of the archive as a plain array; :class:`ArrayFileProblem` for anything else."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else Path(source))
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ArrayFileProblem(f"is not an .npz archive ({err})") from None
    arrays: dict[str, np.ndarray] = {}
    total = 0
    with archive:
        for info in archive.infolist():
            name = info.filename.removesuffix(".npy")
            try:
                with archive.open(info) as member:
                    version = np.lib.format.read_magic(member)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)  # fmt: skip
                    shape, _, dtype = read_header(member)
                if dtype.hasobject:
                    raise ArrayFileProblem(f"member {name!r} holds Python objects (pickles are never loaded)")
                size = math.prod(shape) * dtype.itemsize
                total += size
                if size > max_bytes:
                    raise ArrayFileProblem(
                        f"member {name!r} declares {shape} {dtype} ({size:,} bytes), more than {max_bytes:,}"
                    )
                if total > max_bytes:
                    raise ArrayFileProblem(f"its members declare {total:,} bytes together, more than {max_bytes:,}")
                with archive.open(info) as member:
                    arrays[name] = np.lib.format.read_array(member, allow_pickle=False)
            except ArrayFileProblem:
                raise
            except (ValueError, EOFError, OSError, zipfile.BadZipFile, RuntimeError) as err:
                raise ArrayFileProblem(f"member {name!r} cannot be read ({err})") from None
    return arrays

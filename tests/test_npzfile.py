"""``.npz`` read safely: sizes are checked from the headers, each member and all of them together."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hwlab.npzfile import ArrayFileProblem, read_npz


def npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def test_members_within_the_bound_are_read_back_exactly() -> None:
    arrays = read_npz(npz(a=np.arange(10.0), b=np.eye(2, dtype=np.int32)), max_bytes=96)
    assert arrays["a"].tolist() == list(range(10)) and arrays["b"].dtype == np.int32


def test_a_member_or_all_together_past_the_bound_is_refused_before_reading() -> None:
    with pytest.raises(ArrayFileProblem, match="member 'a' declares"):
        read_npz(npz(a=np.zeros(20)), max_bytes=100)
    with pytest.raises(ArrayFileProblem, match="declare 160 bytes together, more than 100"):
        read_npz(npz(a=np.zeros(10), b=np.zeros(10)), max_bytes=100)


def test_objects_are_never_unpickled() -> None:
    with pytest.raises(ArrayFileProblem, match="Python objects"):
        read_npz(npz(a=np.array([{"x": 1}], dtype=object)))

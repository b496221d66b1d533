"""The early-exit test model: plain ONNX that onnxruntime runs, whose ``If`` takes both branches as meant."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from hwlab.zoo.early_exit import EarlyExit, early_exit_inputs, early_exit_model, write_early_exit, write_early_exit_data


def test_the_if_takes_the_branch_each_generated_input_is_meant_for() -> None:
    session = ort.InferenceSession(early_exit_model().SerializeToString(), providers=["CPUExecutionProvider"])
    x, early = early_exit_inputs(count=32, seed=3)
    assert x.shape == (32, 3, 32, 32) and x.dtype == np.float32 and 0 < early.sum() < 32
    for sample, meant in zip(x, early, strict=True):
        logits, took = session.run(None, {"x": sample[None]})
        assert logits.shape == (1, 10) and bool(took) == meant


def test_a_late_exit_does_far_more_work() -> None:
    first, second = EarlyExit().macs()
    assert second >= 100 * first  # the latency tests assert only 2x: far inside this gap


def test_the_files_are_the_same_for_the_same_seed(tmp_path: Path) -> None:
    a, b = write_early_exit(tmp_path / "a.onnx"), write_early_exit(tmp_path / "b.onnx")
    assert a.read_bytes() == b.read_bytes()
    assert write_early_exit(tmp_path / "c.onnx", EarlyExit(seed=1)).read_bytes() != a.read_bytes()
    early = write_early_exit_data(tmp_path / "data.npz", count=6, seed=2)
    with np.load(tmp_path / "data.npz", allow_pickle=False) as data:
        assert list(data) == ["x"] and data["x"].shape == (6, 3, 32, 32)
        assert np.array_equal(data["x"], early_exit_inputs(6, seed=2)[0])
    assert early.tolist() == early_exit_inputs(6, seed=2)[1].tolist() and early.sum() == 3

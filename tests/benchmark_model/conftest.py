"""Recorded ``benchmark_model`` logs and a stand-in binary that replays them.

The fixtures in ``fixtures/`` are output text as a phone prints it, written from
the formatting code of tensorflow/tensorflow and google-ai-edge/LiteRT (each test
module names the files); ``{graph}`` and ``{num_threads}`` stand for the values
given on the command line. The stand-in binary lives in tests/standins, shared
with the ADB tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from benchmark_model_standin import FIXTURES, write_benchmark_model


def _log_text(name: str, graph: str = "/data/local/tmp/hwlab/m.tflite", threads: int = 2) -> str:
    text = (FIXTURES / f"{name}.txt").read_text()
    return text.replace("{graph}", graph).replace("{num_threads}", str(threads))


@pytest.fixture
def log_text() -> Callable[..., str]:
    """``log_text(name, graph=..., threads=...)``: a recorded log with its placeholders filled in."""
    return _log_text


@pytest.fixture
def standin(tmp_path: Path) -> Callable[..., Path]:
    """``standin(fixture, rc=0, all_stderr=False, name=...)``: an executable stand-in ``benchmark_model``
    (tests/standins/benchmark_model_standin.py) that replays ``fixture`` and exits ``rc``."""

    def make(fixture: str, rc: int = 0, all_stderr: bool = False, name: str = "benchmark_model") -> Path:
        return write_benchmark_model(tmp_path / name, fixture, rc=rc, all_stderr=all_stderr)

    return make

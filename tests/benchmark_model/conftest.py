"""Recorded ``benchmark_model`` logs and a stand-in binary that replays them.

The fixtures in ``fixtures/`` are output text as a phone prints it, written from
the formatting code of tensorflow/tensorflow and google-ai-edge/LiteRT (each test
module names the files); ``{graph}`` and ``{num_threads}`` stand for the values
given on the command line.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# A stand-in for TensorFlow Lite's benchmark_model binary, so the driver runs a
# real process through a real transport without a phone: it records its argv and
# CPU affinity (seen.json), then prints a recorded log with its flags filled in.
STANDIN = '''#!{python}
"""Stand-in for TensorFlow Lite's benchmark_model (tests only): replays a recorded log."""
import json
import os
import sys
from pathlib import Path

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
seen = {{"argv": sys.argv[1:], "affinity": sorted(os.sched_getaffinity(0))}}
Path(__file__).with_name("seen.json").write_text(json.dumps(seen))
text = Path({fixture!r}).read_text()
text = text.replace("{{graph}}", flags.get("graph", "")).replace("{{num_threads}}", flags.get("num_threads", ""))
for line in text.splitlines():
    to_stderr = {all_stderr} or line.startswith(("ERROR:", "FATAL:"))
    print(line, file=sys.stderr if to_stderr else sys.stdout)
sys.exit({rc})
'''


def _log_text(name: str, graph: str = "/data/local/tmp/hwlab/m.tflite", threads: int = 2) -> str:
    text = (FIXTURES / f"{name}.txt").read_text()
    return text.replace("{graph}", graph).replace("{num_threads}", str(threads))


@pytest.fixture
def log_text() -> Callable[..., str]:
    """``log_text(name, graph=..., threads=...)``: a recorded log with its placeholders filled in."""
    return _log_text


@pytest.fixture
def standin(tmp_path: Path) -> Callable[..., Path]:
    """Write an executable stand-in ``benchmark_model`` that replays ``fixture`` and exits ``rc``.

    ``all_stderr`` mimics older releases, which log everything on stderr; newer
    ones send only ERROR/FATAL lines there.
    """

    def make(fixture: str, rc: int = 0, all_stderr: bool = False, name: str = "benchmark_model") -> Path:
        path = tmp_path / name
        path.write_text(
            STANDIN.format(
                python=sys.executable, fixture=str(FIXTURES / f"{fixture}.txt"), all_stderr=all_stderr, rc=rc
            )
        )
        path.chmod(0o755)
        return path

    return make

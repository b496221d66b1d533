"""A stand-in for TensorFlow Lite's ``benchmark_model`` binary, for tests only: it replays a recorded log.

No phone or TFLite build runs here, so the driver runs a real process through a
real transport (local, or adb to the stand-in adbd, whose "device" is this host)
against this script instead. It records its argv and CPU affinity next to itself
(``seen.json``, the last call; ``calls.jsonl``, one line per call), then prints a
recorded log from ``tests/benchmark_model/fixtures`` with its flags filled in
(``{graph}``, ``{num_threads}``), split over stdout and stderr as the real binary
splits it, and exits with the given code.
"""

from __future__ import annotations

import sys
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "benchmark_model" / "fixtures"

SCRIPT = '''#!{python}
"""Stand-in for TensorFlow Lite's benchmark_model (tests only): replays a recorded log."""
import json
import os
import sys
from pathlib import Path

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
seen = {{"argv": sys.argv[1:], "affinity": sorted(os.sched_getaffinity(0))}}
Path(__file__).with_name("seen.json").write_text(json.dumps(seen))
with Path(__file__).with_name("calls.jsonl").open("a") as calls:
    calls.write(json.dumps(seen) + "\\n")
text = Path({fixture!r}).read_text()
text = text.replace("{{graph}}", flags.get("graph", "")).replace("{{num_threads}}", flags.get("num_threads", ""))
for line in text.splitlines():
    to_stderr = {all_stderr} or line.startswith(("ERROR:", "FATAL:"))
    print(line, file=sys.stderr if to_stderr else sys.stdout)
sys.exit({rc})
'''


def write_benchmark_model(path: Path, fixture: str, rc: int = 0, all_stderr: bool = False) -> Path:
    """An executable stand-in at ``path`` that replays ``fixture`` and exits ``rc``.

    ``all_stderr`` mimics older releases, which log everything on stderr; newer
    ones send only ERROR/FATAL lines there.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    source = FIXTURES / f"{fixture}.txt"
    path.write_text(SCRIPT.format(python=sys.executable, fixture=str(source), all_stderr=all_stderr, rc=rc))
    path.chmod(0o755)
    return path

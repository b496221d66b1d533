"""Stand-ins for TensorFlow Lite's ``benchmark_model`` binary, for tests only: one replays a recorded log, one
times the model it is given with LiteRT's Python interpreter (``write_measuring_benchmark_model``).

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


MEASURING_SCRIPT = '''#!{python}
"""Stand-in for TensorFlow Lite's benchmark_model (tests only): times the model with LiteRT's Python interpreter.

The whole-model timings are measured here, with the interpreter and XNNPACK, as benchmark_model would. With
--enable_op_profiling=true it prints an op profile of the .tflite's real nodes as builtin rows, but the split
of the measured time over the nodes is NOT measured (the Python interpreter has no profiler): each node's
share is its elements written, so the host's placing of rows on the model can be exercised end to end.
"""
import sys
import time

import numpy as np
from ai_edge_litert.interpreter import Interpreter

from hwlab.predictors.tflite_graph import read_tflite_nodes

flags = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
path, threads = flags["graph"], int(flags.get("num_threads", "1"))
warmups, runs = max(int(flags.get("warmup_runs", "1")), 1), max(int(flags.get("num_runs", "1")), 1)
print("INFO: STARTING!")
print(f"INFO: Num threads: [{{threads}}]")
print(f"INFO: Graph: [{{path}}]")
print(f"INFO: Loaded model {{path}}")
start = time.perf_counter()
interpreter = Interpreter(model_path=path, num_threads=threads)
interpreter.allocate_tensors()
print(f"INFO: Initialized session in {{(time.perf_counter() - start) * 1000:.3f}}ms.")
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], dtype=detail["dtype"]))


def timed(count):
    times = []
    for _ in range(count):
        t = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - t) * 1e6)
    return np.array(times)


def stat(times):
    p5, median, p95 = np.percentile(times, [5, 50, 95])
    return (f"count={{len(times)}} first={{times[0]:.0f}} curr={{times[-1]:.0f}} min={{times.min():.0f}} "
            f"max={{times.max():.0f}} avg={{times.mean():.3f}} std={{times.std():.0f}} p5={{p5:.0f}} "
            f"median={{median:.0f}} p95={{p95:.0f}}")


warm = timed(warmups)
print(f"INFO: Running benchmark for at least {{warmups}} iterations and at least 0 seconds but terminate if "
      "exceeding 150 seconds.")
print("INFO: " + stat(warm))
regular = timed(runs)
print(f"INFO: Running benchmark for at least {{runs}} iterations and at least 0 seconds but terminate if "
      "exceeding 150 seconds.")
print("INFO: " + stat(regular))
print(f"INFO: Inference timings in us: Init: 1000, First inference: {{warm[0]:.0f}}, "
      f"Warmup (avg): {{warm.mean():.3f}}, Inference (avg): {{regular.mean():.3f}}")
if flags.get("enable_op_profiling") == "true":
    nodes = read_tflite_nodes(path)
    weights = np.array([n.out_elements + 1.0 for n in nodes])
    avg_ms = regular.mean() / 1000.0 * weights / weights.sum()
    print("INFO: Operator-wise Profiling Info for Regular Benchmark Runs:")
    print("============================== Run Order ==============================")
    print("\\t[node type]\\t[first]\\t[avg ms]\\t[%]\\t[cdf%]\\t[mem KB]\\t[times called]\\t[Name]")
    cdf = 0.0
    for node, ms in zip(nodes, avg_ms):
        pct = 100.0 * ms / avg_ms.sum()
        cdf += pct
        print(f"\\t{{node.op}}\\t{{ms:.3f}}\\t{{ms:.6f}}\\t{{pct:.3f}}%\\t{{cdf:.3f}}%\\t0.000\\t1\\t[t{{node.index}}]:{{node.index}}")
    print("")
    print(f"Timings (microseconds): {{stat(regular)}}")
    print(f"{{len(nodes)}} nodes observed")
'''


def write_measuring_benchmark_model(path: Path) -> Path:
    """An executable stand-in at ``path`` that times the model it is given (see MEASURING_SCRIPT's doc)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MEASURING_SCRIPT.format(python=sys.executable))
    path.chmod(0o755)
    return path

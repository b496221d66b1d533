"""Device "pythons" for tests that break a run at a deterministic point.

Tests that kill a host, a link or a phone in the middle of a profile need the kill to
fall at a known point, however fast or slow the machine is. :func:`gated_python` runs
the real interpreter and, for the runner's ``run`` command, lets the first N result
lines through, then holds the rest until the ``gate`` file exists; :func:`recording_python`
records the runner's pid as it starts. Every other command (``facts``, probes) runs unchanged.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from hwlab.measure.anchors import ANCHORS


def gated_python(script: Path, gate: Path, lines: int) -> str:
    """Write the wrapper at ``script`` and return its path, for an inventory's ``python:``. ``lines`` counts
    the models' lines: the job's anchor lines, which come first, pass as well."""
    real, gate_q = shlex.quote(sys.executable), shlex.quote(str(gate))
    reads = "; ".join(['IFS= read -r line && printf "%s\\n" "$line"'] * (lines + len(ANCHORS)))
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$3" = run ] || exec {real} "$@"\n'
        f'{real} "$@" | {{ {reads}; while [ ! -e {gate_q} ]; do sleep 0.05; done; cat; }}\n'
    )
    script.chmod(0o755)
    return str(script)


def recording_python(script: Path, pid_file: Path) -> str:
    """A device "python" that writes the runner's pid to ``pid_file`` when a job starts, then becomes the
    runner (``exec``: same pid, same parent), so a test can tell whether that very process still runs."""
    real, pid_q = shlex.quote(sys.executable), shlex.quote(str(pid_file))
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f'#!/bin/sh\n[ "$3" = run ] && echo $$ > {pid_q}\nexec {real} "$@"\n')
    script.chmod(0o755)
    return str(script)


def running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# A job that runs for minutes, so a test can signal hwlab while its runner measures.
FOREVER = ("--schedule", "single", "--min-time", "120", "--max-time", "120", "--ci", "0")


def default_signals() -> None:
    """In the child: SIGINT and SIGHUP at their defaults, as from a terminal. A suite started under nohup or
    in the background inherits them ignored, and hwlab rightly leaves an ignored signal ignored; the tests
    that send them are about hwlab's handling, not about how the suite was started."""
    for number in (signal.SIGINT, signal.SIGHUP):
        signal.signal(number, signal.SIG_DFL)


def start_long_profile(device: str, inventory: Path, tables: Path, pid_file: Path) -> tuple[subprocess.Popen[str], int]:
    """``hwlab profile`` of a job of minutes on ``device`` (whose python is :func:`recording_python`), started
    and waited for until its runner is up: (the hwlab process, the runner's pid)."""
    argv = [sys.executable, "-m", "hwlab.cli", "profile", "--device", device, "--inventory", str(inventory),
            "--backend", "onnxruntime", "--space", "generic", "--count", "3", "--seed", "4", *FOREVER,
            "--tables-dir", str(tables)]  # fmt: skip
    env = {**os.environ, "HWLAB_CACHE": str(tables.parent / "cache"), "COLUMNS": "200"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=default_signals)  # fmt: skip
    deadline = time.monotonic() + 300  # a bound for a broken run only: export and start take seconds
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc, int(pid_file.read_text())

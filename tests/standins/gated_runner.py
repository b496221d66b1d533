"""A device "python" that holds the runner's results back after N lines: a deterministic point to break a run.

Tests that kill a host, a link or a phone in the middle of a profile need the kill to
fall after exactly N finished rows, however fast or slow the machine is. This wrapper
runs the real interpreter; for the runner's ``run`` command it lets the first N
result lines through, then holds the rest until the ``gate`` file exists. Every
other command (``facts``, probes) runs unchanged.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def gated_python(script: Path, gate: Path, lines: int) -> str:
    """Write the wrapper at ``script`` and return its path, for an inventory's ``python:``."""
    real, gate_q = shlex.quote(sys.executable), shlex.quote(str(gate))
    reads = "; ".join(['IFS= read -r line && printf "%s\\n" "$line"'] * lines)
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        "#!/bin/sh\n"
        f'[ "$3" = run ] || exec {real} "$@"\n'
        f'{real} "$@" | {{ {reads}; while [ ! -e {gate_q} ]; do sleep 0.05; done; cat; }}\n'
    )
    script.chmod(0o755)
    return str(script)

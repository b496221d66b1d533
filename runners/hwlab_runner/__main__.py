"""Command line: ``python3 -m hwlab_runner {run JOB.json | facts}``.

Results go to stdout and nothing else does: the real stdout is kept for the
JSON lines, and both ``print`` and native libraries writing to file
descriptor 1 are redirected to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TextIO

from . import PROTOCOL_VERSION, __version__

EXIT_OK = 0
EXIT_BAD_JOB = 2
EXIT_INTERRUPTED = 130  # as a shell reports SIGINT; SIGTERM and SIGHUP exit 143 and 129


def claim_stdout() -> TextIO:
    """Keep stdout for results only; return the stream results must be written to."""
    sys.stdout.flush()
    try:
        results_fd = os.dup(1)
        os.dup2(2, 1)
    except OSError:
        return sys.stdout
    results = os.fdopen(results_fd, "w", encoding="utf-8")
    sys.stdout = sys.stderr
    return results


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m hwlab_runner",
        description=(
            "Measure model latency on this device. Needs Python >= 3.8, numpy and the runtime the job "
            "names (onnxruntime, ai-edge-litert or tflite-runtime, torch). Results are JSON on stdout; "
            "diagnostics go to stderr."
        ),
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"hwlab_runner {__version__} protocol {PROTOCOL_VERSION}",
        help="print the runner version and the protocol version (last word) and exit",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = commands.add_parser(
        "run",
        help="measure every model of a job file, one JSON line per model",
        description="Measure every model of JOB in order; one JSON result line per model, flushed at once. "
        "Exit 0 when the job ran (failed models are error lines), 2 when the job file is invalid.",
    )
    run.add_argument("job", metavar="JOB", help="job file (JSON); model paths are relative to its folder")
    commands.add_parser("facts", help="print one JSON object describing this device")
    return parser


def _fileno(stream: TextIO) -> int | None:
    try:
        return stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (an embedding caller's buffer)
        return None


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command is None:
        _parser().print_help(sys.stderr)
        return EXIT_BAD_JOB
    out = claim_stdout()
    if args.command == "facts":
        from .facts import gather_facts

        out.write(json.dumps(gather_facts(), sort_keys=False) + "\n")
        out.flush()
        return EXIT_OK
    from .job import JobError, load_job
    from .run import line_writer, run_job

    try:
        job = load_job(args.job)
    except JobError as e:
        print(f"hwlab_runner: {e}", file=sys.stderr)
        return EXIT_BAD_JOB
    try:
        run_job(job, line_writer(out), results_fd=_fileno(out))
    except KeyboardInterrupt:
        print("hwlab_runner: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

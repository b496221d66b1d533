"""`hwlab …`: thin commands over the library; each one is a function in a notebook too."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
import warnings
from collections.abc import Iterator

from rich.markup import escape

import hwlab
from hwlab.cli import devices, farm, predict, profile, qsearch, reparam, search, tables
from hwlab.cli.console import stderr_console
from hwlab.errors import HwlabError

DESCRIPTION = """\
hwlab measures what a CNN costs on a specific device.

  hwlab devices                      list the device inventory (devices/*.yaml)
  hwlab doctor --device local        what the device is: CPU, clusters, governor, thermal, runtimes
  hwlab spaces                       the operator spaces that can be profiled
  hwlab profile --device local       measure a space's operators into a lookup table (resumable)
  hwlab tables list | show ID        read the lookup tables (import/export OFA and ProxylessNAS YAML)
  hwlab predictors rules | fit       measure fusion rules; fit a fusion-aware latency predictor
  hwlab predict MODEL.onnx           predicted latency on a device, kernel by kernel
  hwlab predictors eval              held-out accuracy: FLOPs-linear vs lookup-table sum vs hwlab
  hwlab search --latency-ms X        SPOS supernet + evolution under a device latency budget
  hwlab train ARCH.json              retrain a found architecture from scratch, export ONNX/TFLite
  hwlab validate ARCH.json           measure it on the device: predicted vs measured latency
  hwlab qsearch --latency-ms X       mixed-precision search: per-layer fp32/int8 under a device budget
  hwlab quantize ARCH.json           the deployable int8/fp32 QDQ model of a qsearch result
  hwlab reparam --net repvgg-a0      re-parameterised blocks to deploy form: checked, exported
  hwlab farm run | report | health   nightly runs over the inventory: health, history, regressions, reports
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hwlab", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"hwlab {hwlab.__version__}")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (for a bug report)")
    sub = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, help="what to do (COMMAND --help: details and examples)"
    )
    devices.register(sub)
    profile.register(sub)
    tables.register(sub)
    predict.register(sub)
    search.register(sub)
    qsearch.register(sub)
    reparam.register(sub)
    farm.register(sub)
    return parser


class Terminated(BaseException):
    """SIGTERM or SIGHUP reached the CLI: raised like KeyboardInterrupt, so every ``finally`` runs and a
    command running on the device is stopped, not left measuring for nobody."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


@contextlib.contextmanager
def _terminations_raised() -> Iterator[None]:
    """While a command runs, SIGTERM and SIGHUP raise Terminated (handlers the caller set are left alone)."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            number = getattr(signal, name, None)
            if number is not None and signal.getsignal(number) == signal.SIG_DFL:
                previous[number] = signal.signal(number, _raise_terminated)
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    """Run one command; warnings are printed as one line each while it runs (the hook is put back after)."""
    args = build_parser().parse_args(argv)
    err = stderr_console()
    previous = warnings.showwarning
    warnings.showwarning = lambda msg, cat, *_a, **_k: err.print(f"[yellow]warning:[/] {escape(str(msg))}")
    try:
        with _terminations_raised():
            return int(args.handler(args) or 0)
    except HwlabError as exc:
        if args.debug:
            raise
        err.print(f"[bold red]error:[/] {escape(exc.message)}")
        if exc.hint:
            err.print(f"  [bold]fix:[/] {escape(exc.hint)}")
        return 1
    except Exception as exc:  # noqa: BLE001 - a bug: one line and how to report it, the traceback on --debug
        if args.debug:
            raise
        err.print(f"[bold red]internal error:[/] {escape(f'{type(exc).__name__}: {exc}')}")
        err.print("  [bold]fix:[/] this is a bug in hwlab: rerun with `hwlab --debug ...` and report the traceback")
        return 70
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/]: every finished row is kept; run the same command again to resume")
        return 130
    except Terminated as stop:
        err.print(f"[yellow]{stop}[/]: every finished row is kept; run the same command again to resume")
        return 128 + stop.signum
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":
    sys.exit(main())

"""The flags every command shares, defined once so they mean the same everywhere.

* ``--device NAME`` and ``--inventory DIR``: which device, from which inventory;
* ``--backend``: one runtime or a comma list (``all``: every one the device and this
  host can use); the same choices and the same default on every command;
* ``--tables-dir``, ``--predictors-dir``, ``--runs-dir``: folders; ``--table NAME``: a table's name;
* the measuring flags (``--threads --core-mask --governor --power --lock-wait``) on every
  command that measures, and the stop rules where one set of models is measured;
* ``--json`` wherever a script may read the output.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

from hwlab.errors import InvalidRequest
from hwlab.inventory import CORE_MASK_RULES, RUNTIMES
from hwlab.measure.settings import Cooldown, MeasureSettings, RoundRule, StopRule
from hwlab.names import name_problem
from hwlab.profile import Measuring

ALL = "all"
DEFAULT_BACKEND = "onnxruntime"
BACKEND_CHOICES = (*RUNTIMES, ALL)


class Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written; a flag's default shown after its help when it has one."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if "default" in text or default is None or default is False or not action.option_strings:
            return text
        if default == argparse.SUPPRESS:
            return text
        shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
        return f"{text} (default: {str(shown).replace('%', '%%')})"


def command(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    name: str,
    *,
    help: str,
    description: str,
    examples: list[str],
) -> argparse.ArgumentParser:
    """A subcommand whose --help shows its description and examples."""
    epilog = "examples:\n" + "\n".join(f"  {line}" for line in examples)
    return sub.add_parser(name, help=help, description=description, epilog=epilog, formatter_class=Formatter)


def backend_list(text: str) -> tuple[str, ...]:
    """``onnxruntime``, ``onnxruntime,torch`` or ``all`` (resolved on the device)."""
    names = tuple(dict.fromkeys(b.strip() for b in text.split(",") if b.strip()))
    bad = [b for b in names if b not in BACKEND_CHOICES]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"unknown backend {', '.join(bad) or repr(text)}: choose from {', '.join(BACKEND_CHOICES)}"
            " (a comma list for several)"
        )
    if ALL in names and len(names) > 1:
        raise argparse.ArgumentTypeError("'all' already means every backend: give it alone")
    return names


def add_device_args(p: argparse.ArgumentParser, *, device: bool = True) -> None:
    if device:
        p.add_argument("--device", default="local", metavar="NAME", help="device name from the inventory")
    add_inventory_arg(p)


def add_inventory_arg(p: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """``--inventory DIR``; ``suppress`` on a sub-parser keeps a value given to its parent."""
    p.add_argument(
        "--inventory",
        metavar="DIR",
        default=argparse.SUPPRESS if suppress else None,
        help="device inventory folder (default: $HWLAB_DEVICES, else ./devices)",
    )


def add_backend_arg(p: argparse.ArgumentParser, *, several: bool = True) -> None:
    what = "runtime(s), a comma list; all = every one the device and this host can use" if several else "runtime"
    p.add_argument(
        "--backend",
        type=backend_list,
        default=(DEFAULT_BACKEND,),
        metavar="|".join(BACKEND_CHOICES) if several else "|".join(RUNTIMES),
        help=what,
    )


def single_backend(args: argparse.Namespace) -> str:
    """The one backend of a command that works under one (``add_backend_arg(several=False)``)."""
    if len(args.backend) != 1 or args.backend[0] == "all":
        raise InvalidRequest(
            f"{args.handler.__name__.removeprefix('cmd_')} works under one backend, not {','.join(args.backend)}",
            hint="give one: --backend onnxruntime (or litert, torch)",
        )
    return args.backend[0]


def add_folder_args(p: argparse.ArgumentParser, *folders: str) -> None:
    """``--tables-dir``, ``--predictors-dir`` and/or ``--runs-dir``."""
    helps = {
        "tables": ("tables", "lookup tables folder"),
        "predictors": ("predictors", "fitted predictors folder"),
        "runs": ("runs", "supernets and searches folder"),
    }
    for name in folders:
        default, what = helps[name]
        p.add_argument(f"--{name}-dir", type=Path, default=Path(default), metavar="DIR", help=what)


def add_force_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--force",
        action="store_true",
        help="use a predictor or table whose own metadata names another device or backend (a copied folder)",
    )


def print_json(data: object) -> None:
    """``--json`` output: strict JSON (a non-finite number is null, never NaN or Infinity, which are not JSON)."""
    print(json.dumps(_finite(data), indent=2, allow_nan=False, default=str))


def _finite(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def add_json_arg(
    p: argparse.ArgumentParser, what: str = "print JSON on stdout for scripts", *, suppress: bool = False
) -> None:
    """``--json``; ``suppress`` on a sub-parser keeps a value given to its parent."""
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS if suppress else False, help=what)


def _ints(text: str) -> tuple[int, ...]:
    try:
        ids = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated CPU ids, e.g. 4,5, not {text!r}") from None
    if not ids or min(ids) < 0:
        raise argparse.ArgumentTypeError(f"expected CPU ids >= 0, e.g. 4,5, not {text!r}")
    return ids


def safe_name(text: str) -> str:
    """An argparse type: a name that becomes one path segment (a table's name)."""
    problem = name_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def core_mask(text: str) -> tuple[int, ...] | str:
    return text if text in CORE_MASK_RULES else _ints(text)


def whole(minimum: int = 0, maximum: int = 2**32 - 1) -> Callable[[str], int]:
    """An argparse type: a whole number in [``minimum``, ``maximum``] (the default maximum is a seed's)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
        if not minimum <= value <= maximum:
            raise argparse.ArgumentTypeError(f"expected a whole number from {minimum} to {maximum}, not {value}")
        return value

    return parse


positive_int = whole(1)
# Counts of things hwlab builds, trains or measures one by one: a typo of a few zeros is refused at once.
count_arg = whole(1, 100_000)
MAX_INPUT_SIZE = 4096  # pixels a side


def number(low: float = 0.0, high: float = math.inf, *, low_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high] (``low_open``: above ``low``). nan and inf never pass."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, not {text!r}") from None
        if not math.isfinite(value) or value < low or value > high or (low_open and value == low):
            bounds = f"{'>' if low_open else '>='} {low:g}" + (f" and <= {high:g}" if math.isfinite(high) else "")
            raise argparse.ArgumentTypeError(f"expected a finite number {bounds}, not {text}")
        return value

    return parse


non_negative = number(0.0)
positive = number(0.0, low_open=True)


def add_measuring_args(p: argparse.ArgumentParser, *, stop_rules: bool = False) -> None:
    """Where and how the device measures; with ``stop_rules``, also how long per model."""
    m = p.add_argument_group("measuring")
    m.add_argument("--threads", type=whole(1, 1024), help="intra-op threads (default: the inventory's)")
    m.add_argument(
        "--core-mask",
        type=core_mask,
        metavar="IDS|big|little|all",
        help="CPU ids to pin to (e.g. 4,5), or big / little (from the device's clusters) / all"
        " (default: the inventory's)",
    )
    m.add_argument(
        "--governor", help="cpufreq governor while measuring, e.g. performance (restored afterwards; needs root)"
    )
    m.add_argument(
        "--power",
        metavar="auto|none|SENSOR",
        help="power sensor to sample (default: the inventory's, else auto)",
    )
    m.add_argument(
        "--lock-wait",
        type=non_negative,
        default=0.0,
        metavar="SECONDS",
        help="wait this long for a device another hwlab process holds, then give up",
    )
    if not stop_rules:
        return
    d = MeasureSettings()
    r = d.rounds or RoundRule()
    m.add_argument(
        "--schedule",
        choices=("rounds", "single"),
        default="rounds",
        help="rounds: every model visited once per round in a seeded order, the rounds' common speed divided out"
        " (drift-corrected); single: each model in one block of its own (the stop rules below)",
    )
    m.add_argument("--min-rounds", type=count_arg, default=r.min_rounds, help="rounds at least (rounds)")
    m.add_argument("--max-rounds", type=count_arg, default=r.max_rounds, help="rounds at most (rounds)")
    m.add_argument(
        "--min-time", type=non_negative, default=d.stop.min_time_s, help="seconds of samples at least (single)"
    )
    m.add_argument(
        "--max-time", type=positive, default=d.stop.max_time_s, help="seconds of measuring per model at most"
    )
    m.add_argument("--min-count", type=positive_int, default=d.stop.min_count, help="samples at least (single)")
    m.add_argument(
        "--ci",
        type=non_negative,
        default=d.stop.ci_rel,
        help="stop once the 95%% CI of the median is within ±this (between rounds, or within the block)",
    )
    m.add_argument(
        "--max-temp", type=number(-273.15, 200.0), metavar="C", help="cool down below this °C before each model"
    )
    m.add_argument("--pause", type=non_negative, default=0.0, metavar="SECONDS", help="pause before each model")


def measuring(args: argparse.Namespace) -> Measuring:
    """The measuring flags of ``add_measuring_args``."""
    return Measuring(args.threads, args.core_mask, args.governor, args.power, args.lock_wait)


def measure_settings(args: argparse.Namespace) -> MeasureSettings:
    """The stop rules and cooldown of ``add_measuring_args(stop_rules=True)``."""
    d = MeasureSettings()
    if args.max_rounds < args.min_rounds:
        raise InvalidRequest(
            f"--max-rounds {args.max_rounds} is below --min-rounds {args.min_rounds}", hint="raise --max-rounds"
        )
    rounds = RoundRule(min_rounds=args.min_rounds, max_rounds=args.max_rounds, max_time_s=args.max_time, ci_rel=args.ci)
    return MeasureSettings(
        warmup=d.warmup,
        stop=StopRule(min_count=args.min_count, min_time_s=args.min_time, max_time_s=args.max_time, ci_rel=args.ci),
        cooldown=Cooldown(max_temp_c=args.max_temp, pause_s=args.pause, timeout_s=d.cooldown.timeout_s),
        block_min_time_s=d.block_min_time_s,
        rounds=rounds if args.schedule == "rounds" else None,
    )

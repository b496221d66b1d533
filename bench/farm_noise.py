"""How often does the farm raise a false alarm on this machine, and how soon does it catch a real slowdown?

    .venv/bin/python bench/farm_noise.py [--series 12] [--stepped 6] [--quiet 15] [--after 3] [--max-time 0.3]
        [--out DIR]

1. ``--series`` reference models (a stem and eight 3x3 convolutions, of varied widths and input sizes),
   each one series of a plan on the local device, measured by ``hwlab farm run`` as a nightly run does.
2. ``--quiet`` nights with nothing changed, one farm run each. A night with enough baseline nights is
   judged; an alert there (or on an unstepped series after the step) is a false alarm.
3. Then ``--stepped`` of the series switch, under the same names, half to a variant with one more of their
   eight convolution blocks (about 12% more work) and half to one with two more (about 25%); the others
   stay. ``--after`` more nights run. The true change of every variant is measured first, in one
   interleaved job beside its base model.
4. Printed: false alarms per series per night; the share of injected steps of >= 10% (true change) caught,
   and on which night after the step; each series' night-to-night noise and the threshold it set. The farm
   divides each night's samples by the night's common factor (hwlab/farm/baseline.py); the same nights are
   judged again (before confirmation) with the other corrections and other k, to compare.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from hwlab.export import export_module
from hwlab.farm.baseline import NIGHT_SPEED, earlier_nights, night_factors, night_of, night_speed_key
from hwlab.farm.db import History, SeriesKey, database_url
from hwlab.farm.regress import Thresholds, judge_night
from hwlab.farm.run import farm_run
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.profile import ModelItem, ProfileRequest, profile

SIZES = (16, 24, 32)
WIDTHS = (16, 32)
BLOCKS = 8  # a variant adds blocks: 9 is about +12% work, 10 about +25%


def network(width: int, blocks: int, size: int) -> tuple[nn.Module, torch.Tensor]:
    """A stem and ``blocks`` equal 3x3 convolutions: work grows with the blocks, channel counts stay the
    multiples of 16 that the runtime's blocked kernels take without padding."""
    torch.manual_seed(width * 1000 + size)
    layers: list[nn.Module] = [nn.Conv2d(8, width, 3, padding=1), nn.ReLU()]
    for _ in range(blocks):
        layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*layers).eval(), torch.randn(1, 8, size, size)


def write_model(folder: Path, name: str, width: int, blocks: int, size: int) -> Path:
    net, example = network(width, blocks, size)
    path = folder / f"{name}.onnx"
    path.write_bytes(export_module(net, example, "onnx", name=f"farm-noise-{width}-{blocks}-{size}").path.read_bytes())
    return path


def true_changes(
    folder: Path, specs: dict[str, tuple[int, int, int]], variants: dict[str, int], seconds: float
) -> dict[str, float]:
    """Variant over base, each pair measured side by side in one interleaved, drift-corrected job."""
    items = []
    for name, (width, _, size) in specs.items():
        for tag, blocks in (("base", BLOCKS), ("variant", variants[name])):
            net, example = network(width, blocks, size)
            items.append(ModelItem.of_module(f"{name}-{tag}", net, example, {"op": "model"}))
    request = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=items, space="truth",
                             table_name="truth", tables_root=folder / "truth-tables",
                             settings=stopping(max_time_s=seconds))  # fmt: skip
    rows = profile(request).table.rows()
    return {n: rows[f"{n}-variant"]["median_ms"] / rows[f"{n}-base"]["median_ms"] - 1 for n in specs}


def verdicts(history: History, key: SeriesKey, runs: list[str], thresholds: Thresholds) -> dict[str, str]:
    """Each night's verdict (confirmation aside) as the thresholds' correction and k say."""
    out = {}
    correction = "none" if key.model == NIGHT_SPEED else thresholds.correction
    factors = night_factors(history, key.device, key.backend)
    rows = {r["run_id"]: r for r in history.results(key) if r["status"] == "ok"}
    for run in runs:
        if run in rows:
            before = [n for _, n in earlier_nights(history, key, run, correction=correction, factors=factors)]
            out[run] = judge_night(before, night_of(rows[run], correction, factors), thresholds).kind
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=12)
    parser.add_argument("--stepped", type=int, default=6, help="how many of the series get a step")
    parser.add_argument("--quiet", type=int, default=15)
    parser.add_argument("--after", type=int, default=3)
    parser.add_argument("--max-time", type=float, default=0.3, help="seconds of measuring per model per night")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="farm-noise-"))
    folder.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HWLAB_CACHE", str(folder / "cache"))

    specs = {f"ref{i:02d}": (WIDTHS[i % len(WIDTHS)], 0, SIZES[i % len(SIZES)]) for i in range(args.series)}
    stepped = list(specs)[: args.stepped]
    variants = {name: BLOCKS + 1 + i % 2 for i, name in enumerate(stepped)}
    for name, (width, _, size) in specs.items():
        write_model(folder, name, width, BLOCKS, size)
    plan = folder / "farm.yaml"
    plan.write_text("devices: [local]\nmodels: [" + ", ".join(f"{n}.onnx" for n in specs) + "]\n"
                    f"measuring: {{max_time_s: {args.max_time}}}\nhealth: {{max_slowdown: 1.0}}\n")  # fmt: skip
    print(f"plan {plan}: {len(specs)} series, {len(stepped)} to be stepped; {args.quiet} quiet nights, then"
          f" {args.after} after the step")  # fmt: skip

    quiet_runs, after_runs = [], []
    for night in range(args.quiet):
        summary = farm_run(plan)
        quiet_runs.append(summary.run_id)
        print(f"quiet night {night + 1}: {len(summary.alerts)} alert(s)", flush=True)
    truth = true_changes(folder, {n: specs[n] for n in stepped}, variants, seconds=2.0)
    for name in stepped:
        width, _, size = specs[name]
        write_model(folder, name, width, variants[name], size)
    for night in range(args.after):
        summary = farm_run(plan)
        after_runs.append(summary.run_id)
        print(f"night {night + 1} after the step: {len(summary.alerts)} alert(s)", flush=True)

    history = History.open(database_url(None, plan))
    thresholds = Thresholds()
    alerts = history.alerts()
    judged_quiet = quiet_runs[thresholds.min_baseline_nights :]
    steady = [name for name in specs if name not in stepped] + [NIGHT_SPEED]
    # Series-nights where nothing changed: every series in the quiet nights, the unstepped ones after too.
    quiet_cases = [(name, run) for name in [*specs, NIGHT_SPEED] for run in judged_quiet]
    quiet_cases += [(name, run) for name in steady for run in after_runs]
    false_alarms = [a for a in alerts if (a["model"], a["run_id"]) in set(quiet_cases)]
    print(f"\nfalse alarms (alerts where nothing changed): {len(false_alarms)} of {len(quiet_cases)} series-nights"
          f" = {len(false_alarms) / max(1, len(quiet_cases)):.2%} per series per night")  # fmt: skip
    print("\nseries  step(work)  true change  noise  threshold  alert on night")
    big = [name for name in stepped if truth[name] >= 0.10]
    for name in specs:
        key = SeriesKey("local", "onnxruntime", name)
        first = next((i + 1 for i, run in enumerate(after_runs)
                      if any(a["run_id"] == run and a["model"] == name for a in alerts)), None)  # fmt: skip
        factors = night_factors(history, key.device, key.backend)
        before = [n for _, n in earlier_nights(history, key, after_runs[0], correction="common", factors=factors)]
        [night] = history.results(key, run_id=after_runs[0])
        verdict = judge_night(before, night_of(night, "common", factors), thresholds)  # as the farm judged it
        work = f"+{(variants[name] - BLOCKS) / BLOCKS:.1%}" if name in stepped else "none"
        change = f"{truth[name]:+6.1%}" if name in stepped else "     -"
        print(f"{name}    {work:>6}      {change}    {verdict.noise:5.1%}   {verdict.threshold:6.1%}"
              f"     {first or 'no':>6}")  # fmt: skip
    caught = {n: sum(1 for name in big if any(a["model"] == name and a["run_id"] in after_runs[:n] for a in alerts))
              for n in (1, 2)}  # fmt: skip
    print(f"\ninjected steps of >= 10% (true change): {len(big)}; alerted by night 1: {caught[1]}/{len(big)},"
          f" by night 2: {caught[2]}/{len(big)}")  # fmt: skip
    print("\nthe same nights judged again (verdicts before confirmation) with other corrections and k:")
    print("correction  k    flagged where nothing changed   steps >= 10% flagged by night 1 / by night 2")
    for correction in ("common", "anchors", "none"):
        for k in (3.0, 3.5, 4.0):
            judged = Thresholds(k=k, correction=correction)
            keys = {name: SeriesKey("local", "onnxruntime", name) for name in specs}
            keys[NIGHT_SPEED] = night_speed_key("local", "onnxruntime")
            seen = {name: verdicts(history, key, quiet_runs + after_runs, judged) for name, key in keys.items()}
            flags = sum(1 for name, run in quiet_cases if seen[name].get(run) in ("regression", "improvement"))
            by = {n: sum(1 for name in big if any(seen[name].get(r) == "regression" for r in after_runs[:n]))
                  for n in (1, 2)}  # fmt: skip
            rate = flags / max(1, len(quiet_cases))
            print(f"{correction:9}  {k:3.1f}   {flags:3d} of {len(quiet_cases)} = {rate:5.2%}"
                  f"               {by[1]}/{len(big)} / {by[2]}/{len(big)}")  # fmt: skip
    print(f"data: {folder}")


if __name__ == "__main__":
    main()

"""How well can any predictor do on this device? Two ceilings, measured on the held-out models.

1. Repeatability: the held-out models are measured again (table ``models-repeat``) and compared with their
   first measurement (table ``models``). A prediction cannot be expected to agree with a measurement better
   than two measurements of the same model agree with each other.
2. Additivity: each held-out model's kernels are cut out and measured alone (table ``kernels-heldout``),
   exactly as training data is, and their *measured* latencies go through the predictor's model-level term
   (minus the runtime's fixed cost per kernel, plus a per-model term fitted on the calibration models). No
   kernel regressor, however accurate, does better than the kernels' own measurements.

    .venv/bin/python bench/prediction_ceiling.py [--spos 100] [--per-family 25]
        [--tables-dir DIR] [--predictors-dir DIR]

Run bench/predictor_accuracy.py first, with the same folders: it fits the predictor (whose fusion rules split
the models) and measures the whole models once; this bench measures them again, and measures the kernels.
"""

from __future__ import annotations

import argparse
import datetime as dt
from dataclasses import replace
from pathlib import Path

import numpy as np

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.predictors.dataset import distinct_kernels, onnx_path
from hwlab.predictors.evaluate import Scores, held_out_models
from hwlab.predictors.extract import kernel_models
from hwlab.predictors.predictor import Predictor
from hwlab.predictors.shapes import DEFAULT_SPOS_SHAPES
from hwlab.predictors.train import FitPlan, calibration_models, fit_overhead, model_item
from hwlab.profile import ProfileRequest, profile
from hwlab.tables import LookupTable
from hwlab.zoo import ZooModel


def rows_of(folder: Path) -> dict[str, dict]:  # type: ignore[type-arg]
    return {r["key"]: r for r in LookupTable(folder) if r.get("status") == "ok"}


def line(name: str, group: str, predicted: np.ndarray, truth: np.ndarray) -> str:
    s = Scores.of(predicted, truth)
    return f"{name:<28} {group:<9} {len(truth):>6} {s.rmspe:>8.1%} {s.within_5:>6.0%} {s.within_10:>6.0%}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spos", type=int, default=100, help="held-out SPOS architectures")
    parser.add_argument("--per-family", type=int, default=25, help="held-out models per zoo family (4 families)")
    parser.add_argument("--tables-dir", type=Path, default=Path("bench-out/tables"))
    parser.add_argument("--predictors-dir", type=Path, default=Path("bench-out/predictors"))
    args = parser.parse_args()

    predictor = Predictor.load("local", "onnxruntime", args.predictors_dir)
    plan = FitPlan()
    base = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="models",
                          tables_root=args.tables_dir, settings=plan.model_settings)  # fmt: skip
    calibration = calibration_models(plan, plan.seed + 1)
    held = held_out_models(plan, args.spos, args.per_family, seed=1000, spos_shapes=DEFAULT_SPOS_SHAPES[:2])
    first = rows_of(profile(replace(base, specs=[model_item(m) for m in [*calibration, *held]],
                                    table_name="models")).table.folder)  # fmt: skip
    second = rows_of(profile(replace(base, specs=[model_item(m) for m in held],
                                     table_name="models-repeat")).table.folder)  # fmt: skip
    kernel_ms = {
        k: r["median_ms"]
        for k, r in rows_of(profile(replace(base, specs=distinct_kernels([*calibration, *held], predictor.rules),
                                            space="kernels", table_name="kernels-heldout",
                                            settings=plan.kernel_settings)).table.folder).items()
    }  # fmt: skip

    def sums(model: ZooModel) -> tuple[float, float] | None:
        """(sum of measured kernels, kernel count), None when a kernel failed to measure."""
        parts = kernel_models(onnx_path(model), predictor.rules)
        if any(p.key not in kernel_ms for p in parts):
            return None
        return sum(kernel_ms[p.key] for p in parts), float(len(parts))

    cal = [(m, s) for m in calibration if m.name in first and (s := sums(m))]
    overhead = fit_overhead(np.array([s[0] for _, s in cal]), np.array([s[1] for _, s in cal]),
                            np.array([first[m.name]["median_ms"] for m, _ in cal]),
                            predictor.rules.fixed_cost_ms)  # fmt: skip
    kept = [(m, s) for m in held if m.name in first and m.name in second and (s := sums(m))]
    groups = np.array(["spos" if m.family == "spos" else "families" for m, _ in kept])
    truth = np.array([first[m.name]["median_ms"] for m, _ in kept])
    again = np.array([second[m.name]["median_ms"] for m, _ in kept])
    additive = np.array([s[0] + overhead.per_kernel_ms * s[1] + overhead.fixed_ms for _, s in kept])
    ours = np.array([predictor.predict_onnx(onnx_path(m), allow_unknown=True).total_ms for m, _ in kept])

    gaps = [_at(second[m.name]) - _at(first[m.name]) for m, _ in kept]
    print(f"second measurement taken {np.median(gaps) / 60:.0f} min after the first (median over models)")
    print(f"overhead with measured kernels: {overhead.per_kernel_ms * 1000:+.2f} µs per kernel,"
          f" {overhead.fixed_ms * 1000:+.1f} µs per model")  # fmt: skip
    print()
    print(f"{'against the first measurement':<28} {'set':<9} {'models':>6} {'RMSPE':>8} {'±5%':>6} {'±10%':>6}")
    for name, values in (("second measurement", again), ("measured kernels + overhead", additive),
                         ("hwlab predictor", ours)):  # fmt: skip
        for group in ("spos", "families"):
            mask = groups == group
            print(line(name, group, values[mask], truth[mask]))
    if len(kept) < len(held):
        print(f"({len(held) - len(kept)} held-out models left out: a kernel or the model failed to measure)")


def _at(row: dict) -> float:  # type: ignore[type-arg]
    return dt.datetime.fromisoformat(row["measured_at"].replace("Z", "+00:00")).timestamp()


if __name__ == "__main__":
    main()

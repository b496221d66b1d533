"""Accuracy of latency predictors on held-out models, measured end to end on this machine.

Fits (or reuses) the hwlab predictor for the local device, measures held-out SPOS
architectures and zoo models end to end, and prints RMSE, RMSPE and the share
within ±5% / ±10% for FLOPs-linear, lookup-table sum and hwlab side by side, then
the fast path's predictions per second on SPOS architectures.

    .venv/bin/python bench/predictor_accuracy.py [--spos 100] [--per-family 25]
        [--held-out-spaces 32,0.25,1,10 64,1.0] [--tables-dir DIR] [--predictors-dir DIR]
        [--reuse] [--remeasure-unsettled PASSES]

Held-out rows whose floor never settled (the machine was never quiet for long while they were measured: their
floor's CI ended above the stop rule's) are measured again, up to ``--remeasure-unsettled`` passes, and how many
are left is printed: the accuracy is over every held-out model, settled or not.

The ceiling printed last is the device's stored noise floor (``hwlab doctor --noise``): two measurements of
the same models agree no better, so no prediction can.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
from scipy.stats import spearmanr

from hwlab.inventory import LOCAL_DEFAULT
from hwlab.noise import noise_ceiling
from hwlab.predictors.dataset import onnx_path
from hwlab.predictors.evaluate import Evaluation, evaluate, held_out_models
from hwlab.predictors.fastpath import SposLatencyTable
from hwlab.predictors.graph_ops import CATEGORY_OF_ONNX
from hwlab.predictors.predictor import Predictor
from hwlab.predictors.shapes import DEFAULT_SPOS_SHAPES, SposShape
from hwlab.predictors.train import FitPlan, fit_predictor
from hwlab.profile import ProfileRequest, unsettled_keys
from hwlab.tables import LookupTable

# The figures' held-out SPOS spaces: the search's default (32x32, width 0.25) and 64x64 at width 1.
HELD_OUT_SHAPES = DEFAULT_SPOS_SHAPES[:2]
HELD_OUT_SEED = 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spos", type=int, default=100, help="held-out SPOS architectures")
    parser.add_argument("--per-family", type=int, default=25, help="held-out models per zoo family (5 families)")
    parser.add_argument("--spos-models", type=int, default=6, help="SPOS training architectures per fitted space")
    parser.add_argument("--family-models", type=int, default=10, help="training models per family")
    parser.add_argument("--rounds", type=int, default=1, help="adaptive sampling rounds")
    parser.add_argument(
        "--held-out-spaces",
        type=SposShape.parse,
        nargs="+",
        default=list(HELD_OUT_SHAPES),
        metavar="SIZE,WIDTH[,STRIDE[,CLASSES]]",
        help="SPOS spaces of the held-out architectures",
    )
    parser.add_argument(
        "--no-lut-sum",
        action="store_true",
        help="skip the lookup-table-sum baseline (it measures"
        " every op of every held-out model alone: the longest part)",
    )
    parser.add_argument(
        "--remeasure-unsettled",
        type=int,
        nargs="?",
        const=1,
        default=3,
        metavar="PASSES",
        help="after the evaluation, up to PASSES times (default 3; 0: never): measure again the held-out models"
        " whose floor's CI ended above the stop rule's (the machine never stayed quiet while they were measured),"
        " until none is left; the rows replaced are kept in the table's superseded.jsonl",
    )
    parser.add_argument("--reuse", action="store_true", help="evaluate the predictor saved before, without refitting")
    parser.add_argument("--tables-dir", type=Path, default=Path("bench-out/tables"))
    parser.add_argument("--predictors-dir", type=Path, default=Path("bench-out/predictors"))
    args = parser.parse_args()

    base = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="", tables_root=args.tables_dir)
    plan = FitPlan(spos_models=args.spos_models, family_models=args.family_models, adaptive_rounds=args.rounds)
    start = time.perf_counter()
    if args.reuse:
        predictor = Predictor.load("local", "onnxruntime", args.predictors_dir)
    else:
        predictor = fit_predictor(base, plan, root=args.predictors_dir)
        print(f"fit: {time.perf_counter() - start:.0f} s (measurements resume from {args.tables_dir})")

    start = time.perf_counter()
    held_out_set = held_out_models(plan, args.spos, args.per_family, HELD_OUT_SEED, args.held_out_spaces)
    names = {m.name for m in held_out_set}
    models_folder = args.tables_dir / "local" / "onnxruntime" / "models"

    def evaluated(remeasure: bool) -> tuple[Evaluation, set[str]]:
        """The evaluation (measuring what is missing, and the unsettled rows again with ``remeasure``), and the
        held-out rows still unsettled."""
        result = evaluate(
            replace(base, remeasure_unsettled=remeasure), predictor, plan, spos_count=args.spos,
            family_count=args.per_family, seed=HELD_OUT_SEED, spos_shapes=args.held_out_spaces,
            lut_sum=not args.no_lut_sum,
        )  # fmt: skip
        unsettled = unsettled_keys(LookupTable(models_folder), plan.model_settings) & names
        print(f"evaluation: {time.perf_counter() - start:.0f} s; held-out rows unsettled: {len(unsettled)}")
        return result, unsettled

    result, unsettled = evaluated(remeasure=False)
    for _ in range(args.remeasure_unsettled):
        if not unsettled:
            break
        result, unsettled = evaluated(remeasure=True)
    folder = args.predictors_dir / "local" / "onnxruntime"
    plot = result.plot(folder / "eval.png")
    (folder / "eval.json").write_text(json.dumps({**result.to_json(), "plot": str(plot)}, indent=2))
    print()
    print(f"{'predictor':<13} {'set':<11} {'models':>6} {'RMSE ms':>9} {'RMSPE':>8} {'±5%':>6} {'±10%':>6}")
    families = result.family_scores()
    for name, by_set in result.scores().items():
        for group, s in {**by_set, **{f: v for f, v in families[name].items() if f != "spos"}}.items():
            n = result.count(group)
            figures = f"{s.rmse_ms:>9.3f} {s.rmspe:>8.1%} {s.within_5:>6.0%} {s.within_10:>6.0%}"
            print(f"{name:<13} {group:<11} {n:>6} {figures}")
    print(f"scatter plot: {plot}")
    ranked = spearmanr(result.measured, result.predicted["hwlab"]).statistic
    print(f"hwlab Spearman rank correlation, all held-out models: {ranked:.3f}")
    print(f"ceiling: {noise_ceiling(args.tables_dir, 'local', 'onnxruntime')}")
    seen = {node.op_type for m in held_out_set for node in onnx.load(onnx_path(m)).graph.node}
    absent = sorted(set(CATEGORY_OF_ONNX) - seen)
    first = next(iter(result.missing.items()), None)
    print(f"held-out graphs hold {len(seen & set(CATEGORY_OF_ONNX))} of the {len(CATEGORY_OF_ONNX)} ONNX op types hwlab"
          f" predicts (absent: {', '.join(absent) or 'none'}); models not predicted for an unknown op or kernel:"
          f" {len(result.missing)}{f' ({first[0]}: {first[1]})' if first else ''}")  # fmt: skip

    table = SposLatencyTable(predictor, plan.spos_configs[0])
    rng = np.random.default_rng(0)
    n = 200_000
    choices = rng.integers(0, 4, (n, 20))
    scales = rng.integers(0, len(plan.spos_configs[0].channel_scales), (n, 20))
    start = time.perf_counter()
    table.batch_ms(choices, scales)
    batch = n / (time.perf_counter() - start)
    start = time.perf_counter()
    for i in range(20_000):
        table.latency_ms(choices[i])
    single = 20_000 / (time.perf_counter() - start)
    print(f"fast path: {batch:,.0f} SPOS predictions/s batched, {single:,.0f}/s one at a time")


if __name__ == "__main__":
    main()

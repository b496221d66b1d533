"""How well predictors do on models they never saw, measured end to end on the device.

Three predictors side by side on held-out SPOS architectures and zoo families:

* ``flops-linear``: latency = a * MACs + b, fitted on the calibration models;
* ``lut-sum``: the sum of every ONNX op's latency measured alone (a lookup table
  of ops, no fusion, no overhead: what FLOPs-free LUT tools do);
* ``hwlab``: fused kernels, per-kernel regressors and the overhead term.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hwlab.errors import TableError
from hwlab.noise import noise_ceiling
from hwlab.predictors.dataset import distinct_kernels, onnx_path
from hwlab.predictors.predictor import Predictor, predictor_dir
from hwlab.predictors.regress import rmspe, within
from hwlab.predictors.shapes import SposShape
from hwlab.predictors.train import NO_FUSION, FitPlan, calibration_models, model_item
from hwlab.profile import ProfileRequest, profile
from hwlab.progress import Progress
from hwlab.tables import LookupTable
from hwlab.tables.store import write_json_atomic
from hwlab.zoo import FAMILIES, ZooModel, random_spos_arch, sample_family, spos_model


@dataclass(frozen=True)
class Scores:
    rmse_ms: float
    rmspe: float
    within_5: float
    within_10: float

    @classmethod
    def of(cls, predicted: np.ndarray, measured: np.ndarray) -> Scores:
        return cls(
            float(np.sqrt(np.mean((predicted - measured) ** 2))),
            rmspe(predicted, measured),
            within(predicted, measured, 0.05),
            within(predicted, measured, 0.10),
        )


@dataclass
class Evaluation:
    """Measured and predicted latency per held-out model, by predictor."""

    names: list[str]
    sets: list[str]  # "spos" or "families"
    measured: np.ndarray
    predicted: dict[str, np.ndarray]
    families: list[str] = field(default_factory=list)  # per model: "spos" or its zoo family (empty: unknown)
    # per model whose hwlab prediction lacks kernel types (an op or kernel with no regressor, predicted as 0)
    missing: dict[str, list[str]] = field(default_factory=dict)

    def scores(self) -> dict[str, dict[str, Scores]]:
        out: dict[str, dict[str, Scores]] = {}
        mask = {s: np.array([x == s for x in self.sets]) for s in ("spos", "families")}
        for name, values in self.predicted.items():
            out[name] = {s: Scores.of(values[m], self.measured[m]) for s, m in mask.items() if m.any()}
        return out

    def family_scores(self) -> dict[str, dict[str, Scores]]:
        """Scores per model family (SPOS and each zoo family): a family the set's average hides, such as one
        whose kernels the others lack, shows here."""
        names = list(dict.fromkeys(self.families))
        mask = {f: np.array([x == f for x in self.families]) for f in names}
        return {p: {f: Scores.of(v[m], self.measured[m]) for f, m in mask.items()} for p, v in self.predicted.items()}

    def count(self, group: str) -> int:
        """Models in a set ("spos", "families") or a family."""
        return self.sets.count(group) if group in ("spos", "families") else self.families.count(group)

    def to_json(self) -> dict[str, object]:
        """Scores and every model's numbers, for the predictor's folder (eval.json)."""
        return {
            "scores": {p: {s: v.__dict__ for s, v in by.items()} for p, by in self.scores().items()},
            "family_scores": {p: {f: v.__dict__ for f, v in by.items()} for p, by in self.family_scores().items()},
            "models": [
                {
                    "name": n,
                    "set": s,
                    **({"family": self.families[i]} if self.families else {}),
                    "measured_ms": float(m),
                    **{p: float(v[i]) for p, v in self.predicted.items()},
                    **({"missing": self.missing[n]} if n in self.missing else {}),
                }
                for i, (n, s, m) in enumerate(zip(self.names, self.sets, self.measured, strict=True))
            ],
        }

    def plot(self, path: Path) -> Path:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.predicted), figsize=(5 * len(self.predicted), 4.6), squeeze=False)
        top = max(float(self.measured.max()), *(float(v.max()) for v in self.predicted.values())) * 1.1
        for ax, (name, values) in zip(axes[0], self.predicted.items(), strict=True):
            for group, marker in (("spos", "o"), ("families", "^")):
                m = np.array([x == group for x in self.sets])
                ax.scatter(self.measured[m], values[m], s=12, marker=marker, label=group, alpha=0.7)
            ax.plot([0, top], [0, top], "k-", lw=0.8)
            ax.fill_between([0, top], [0, top * 0.9], [0, top * 1.1], color="grey", alpha=0.15, label="±10%")
            ax.set(xscale="log", yscale="log", xlabel="measured (ms)", ylabel="predicted (ms)", title=name)
            ax.legend(loc="upper left", fontsize=8)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def held_out_models(
    plan: FitPlan, spos_count: int, family_count: int, seed: int, spos_shapes: Sequence[SposShape] | None = None
) -> list[ZooModel]:
    """Models no fit has seen: a seed of their own; the SPOS architectures spread over ``spos_shapes`` (default:
    the plan's spaces) in turn."""
    rng = random.Random(seed)
    configs = [s.config() for s in spos_shapes] if spos_shapes else plan.spos_configs
    spos = [spos_model(c, *random_spos_arch(rng, c)) for i in range(spos_count) for c in [configs[i % len(configs)]]]
    return spos + [m for f in FAMILIES for m in sample_family(f, family_count, seed)]


def _fit_flops_linear(models: list[ZooModel], measured: dict[str, float]) -> tuple[float, float]:
    macs = np.array([m.macs for m in models if m.name in measured], dtype=float)
    times = np.array([measured[m.name] for m in models if m.name in measured])
    w = 1.0 / times
    (a, b), *_ = np.linalg.lstsq(np.stack([macs * w, w], axis=1), times * w, rcond=None)
    return float(a), float(b)


def evaluate(
    base: ProfileRequest,
    predictor: Predictor,
    plan: FitPlan,
    *,
    spos_count: int,
    family_count: int,
    seed: int = 1000,
    progress: Progress | None = None,
    spos_shapes: Sequence[SposShape] | None = None,
    lut_sum: bool = True,
) -> Evaluation:
    """Measure held-out models (table ``models``) and their ops alone (table ``ops``, for ``lut-sum``; skipped
    without ``lut_sum``), then predict."""
    models = held_out_models(plan, spos_count, family_count, seed, spos_shapes)
    calibration = calibration_models(plan, plan.seed + 1)
    whole = replace(base, specs=[model_item(m) for m in [*calibration, *models]], space="models",
                    table_name="models", settings=plan.model_settings)  # fmt: skip
    table = profile(whole, progress).table
    measured = {r["key"]: r["median_ms"] for r in LookupTable(table.folder) if r.get("status") == "ok"}
    op_ms: dict[str, float] = {}
    if lut_sum:
        ops = distinct_kernels(models, NO_FUSION)
        op_request = replace(base, specs=ops, space="ops", table_name="ops", settings=plan.kernel_settings)
        op_table = profile(op_request, progress).table
        op_ms = {r["key"]: r["median_ms"] for r in LookupTable(op_table.folder) if r.get("status") == "ok"}
    a, b = _fit_flops_linear(calibration, measured)

    from hwlab.predictors.extract import kernel_models

    kept = [m for m in models if m.name in measured]
    flops, lut, ours = [], [], []
    missing: dict[str, list[str]] = {}
    for model in kept:
        path = onnx_path(model)
        flops.append(a * model.macs + b)
        if lut_sum:
            keys = [km.key for km in kernel_models(path, NO_FUSION)]
            missing = [k for k in keys if k not in op_ms]
            if missing:  # never a silent 0: the lookup table must hold every op
                raise TableError(
                    f"{len(missing)} ops of {model.name} failed to measure, e.g. {missing[0]!r}",
                    hint="see `hwlab tables show DEVICE/BACKEND/ops`; rerun with --retry-errors",
                )
            lut.append(sum(op_ms[k] for k in keys))
        prediction = predictor.predict_onnx(path, allow_unknown=True)
        ours.append(prediction.total_ms)
        if prediction.missing:
            missing[model.name] = sorted(set(prediction.missing))
    return Evaluation(
        [m.name for m in kept],
        ["spos" if m.family == "spos" else "families" for m in kept],
        np.array([measured[m.name] for m in kept]),
        {"flops-linear": np.array(flops), **({"lut-sum": np.array(lut)} if lut_sum else {}), "hwlab": np.array(ours)},
        [m.family for m in kept],
        missing,
    )


def evaluate_and_report(
    base: ProfileRequest,
    root: Path = Path("predictors"),
    *,
    spos_count: int = 20,
    family_count: int = 7,
    seed: int = 1000,
    plot: Path | None = None,
    progress: Progress | None = None,
    force: bool = False,
) -> tuple[Evaluation, dict[str, object]]:
    """Evaluate the fitted predictor of ``base``'s device and backend with the plan it was fitted with, and
    write the report beside it: ``eval.json`` and a scatter plot (default ``eval.png``)."""
    predictor = Predictor.load(base.device.name, base.backend, root, force=force)
    plan_fields = predictor.loaded.meta.get("plan", {})
    plan = FitPlan(**{k: v for k, v in plan_fields.items() if k in FitPlan.__dataclass_fields__})
    result = evaluate(base, predictor, plan, spos_count=spos_count, family_count=family_count, seed=seed,
                      progress=progress)  # fmt: skip
    folder = predictor_dir(root, base.device.name, base.backend)
    ceiling = noise_ceiling(base.tables_root, base.device.name, base.backend)
    report: dict[str, object] = {**result.to_json(), "plot": str(result.plot(plot or folder / "eval.png")),
                                 "held_out_seed": seed, "noise_floor": ceiling}  # fmt: skip
    write_json_atomic(folder / "eval.json", report)
    return result, report

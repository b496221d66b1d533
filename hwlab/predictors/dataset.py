"""Kernel training data: the kernels of real models, cut out and measured alone on the device.

Models (SPOS architectures and the zoo's families) are exported and split under
the device's fusion rules; every distinct kernel is measured as a standalone
model into the ``kernels`` table, whose rows carry the kernel type and features.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwlab.errors import SpaceError
from hwlab.export import export_module
from hwlab.predictors.extract import KernelModel, kernel_models, save_kernel_model
from hwlab.predictors.kernels import FEATURES, FusionRules
from hwlab.predictors.shapes import TRAINING_CHANNEL_SCALES
from hwlab.profile import ModelItem
from hwlab.space import SposConfig
from hwlab.space.build import random_input
from hwlab.space.registry import SpaceContext
from hwlab.zoo import FAMILIES, ZooModel, random_spos_arch, sample_family, spos_model

AT_LEAST_TWO = ("coverage", "reparamnet")  # families whose kernel types may occur once a model


def training_models(
    seed: int, spos_count: int, family_count: int, spos_configs: Sequence[SposConfig]
) -> list[ZooModel]:
    """Seeded SPOS architectures (``spos_count`` in each space) and models of each zoo family; at least two of
    the op-coverage and reparamnet families, since a kernel type needs two measured kernels for a regressor and
    some of their ops occur once a model (reparamnet's dynamic convs: only they hold a dynconv)."""
    rng = random.Random(seed)
    spos = [spos_model(c, *random_spos_arch(rng, c)) for c in spos_configs for _ in range(spos_count)]
    counts = {family: max(family_count, 2) if family in AT_LEAST_TWO else family_count for family in FAMILIES}
    families = [m for family in FAMILIES for m in sample_family(family, counts[family], seed)]
    return spos + families


def onnx_path(model: ZooModel) -> str:
    return model_file(model, "onnx")


def model_file(model: ZooModel, fmt: str) -> str:
    """The model exported to ``fmt`` (from the export cache once measured): the file a device ran."""
    return str(export_module(model.build(), random_input(model.input_shape), fmt, name=model.name).path)


def kernel_item(item: KernelModel) -> ModelItem:
    """A kernel as something to profile: its rows carry the type and every feature."""
    fields: dict[str, Any] = {"op": item.kernel.type, **item.kernel.features}
    return ModelItem(item.key, fields, lambda fmt: save_kernel_model(item))


def distinct_kernels(models: Iterable[ZooModel], rules: FusionRules) -> list[ModelItem]:
    """The distinct kernels of the models, as profile items (the first model to show one wins)."""
    items: dict[str, ModelItem] = {}
    for model in models:
        for km in kernel_models(onnx_path(model), rules):
            items.setdefault(km.key, kernel_item(km))
    return list(items.values())


@dataclass(frozen=True)
class KernelRows:
    """Measured kernels of one type: features and latencies."""

    X: np.ndarray
    y_ms: np.ndarray
    keys: list[str]


def rows_by_type(rows: Sequence[dict[str, Any]]) -> dict[str, KernelRows]:
    """Group measured kernel rows by type for fitting (failed rows are left out)."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.get("status") == "ok" and row.get("median_ms"):
            grouped.setdefault(row["op"], []).append(row)
    return {
        kernel_type: KernelRows(
            np.array([[float(r.get(f) or 0.0) for f in FEATURES] for r in found]),
            np.array([r["median_ms"] for r in found]),
            [r["key"] for r in found],
        )
        for kernel_type, found in grouped.items()
    }


def kernel_space(context: SpaceContext, count: int = 8, seed: int = 0) -> list[ModelItem]:
    """``hwlab profile --space kernels``: the distinct kernels of seeded training models, split under the
    fusion rules measured for the context's device and backend (table ``fusion``)."""
    from hwlab.predictors.fusion import rules_from_table
    from hwlab.tables import LookupTable, TableId

    device, backend = context.device, context.backend
    if backend != "onnxruntime":
        raise SpaceError(
            f"the kernels space is cut from ONNX graphs and runs on onnxruntime, not {backend}",
            hint="use --backend onnxruntime",
        )
    fusion = LookupTable.at(context.tables_root, TableId(device, backend, "fusion"))
    if not fusion.exists:
        raise SpaceError(
            f"no fusion rules measured for {device}/{backend} in {context.tables_root}",
            hint=f"measure them first: hwlab predictors rules --device {device} --backend {backend}",
        )
    fusion.check_measured_on(device, backend)
    rules = rules_from_table(fusion.rows(), graphs=fusion.runtime_graphs())
    return distinct_kernels(
        training_models(seed, count, count, SposConfig(input_size=64, channel_scales=TRAINING_CHANNEL_SCALES)), rules
    )

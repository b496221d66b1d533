"""The plan's reference set as measurable items, per backend, and the golden model of the health check.

Each item exports lazily (the export cache makes a second night free). A file entry is measured on the
backend that loads its format (``.onnx`` on onnxruntime, ``.tflite`` on litert) and left out of the
others; a file that cannot be read is a model error of that series, found before anything is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hwlab.errors import HwlabError
from hwlab.export import FORMAT_FOR_RUNTIME, ExportedModel
from hwlab.farm.plan import FarmPlan, ModelEntry
from hwlab.modelfile import file_shapes
from hwlab.profile import ModelItem

__all__ = ["GOLDEN_KEY", "Reference", "file_shapes", "golden_item", "reference"]

GOLDEN_KEY = "golden:conv3x3-16c-16px"


@dataclass(frozen=True)
class Reference:
    """What a backend measures of the plan: the items, and the entries it cannot measure (key -> why)."""

    items: list[ModelItem]
    errors: dict[str, str]  # a model error: never retried, recorded as the series' result
    elsewhere: list[str]  # files of another backend's format


def golden_item() -> ModelItem:
    """A small seeded convolution, identical on every device: its history says whether the device still
    runs as it did (the anchors' first model, under its own key)."""
    from hwlab.measure.anchors import ANCHORS, anchor_module

    module, example = anchor_module(ANCHORS[0])
    return ModelItem.of_module(GOLDEN_KEY, module, example, {"op": "model", "family": "golden"})


def _zoo_items(entry: ModelEntry) -> list[ModelItem]:
    from hwlab.space.build import random_input
    from hwlab.zoo import sample_family

    items = []
    for model in sample_family(entry.zoo, entry.count, entry.seed):  # type: ignore[arg-type]
        fields = {"op": "model", "family": model.family, "macs": model.macs}

        def export(fmt: str, model=model) -> ExportedModel:  # type: ignore[no-untyped-def]
            from hwlab.export import export_module

            return export_module(model.module, random_input(model.input_shape), fmt, name=model.name)

        items.append(ModelItem(model.name, fields, export))
    return items


def _arch_item(entry: ModelEntry) -> ModelItem:
    from hwlab.search.record import ArchRecord
    from hwlab.space.build import random_input
    from hwlab.validate import standalone_network

    assert entry.arch is not None
    record = ArchRecord.load(entry.arch)
    key = entry.name or record.name
    fields = {"op": "model", "family": "spos", "macs": record.space.cost(record.arch)[0]}

    def export(fmt: str) -> ExportedModel:
        from hwlab.export import export_module

        net = standalone_network(record)
        return export_module(net, random_input(net.input_shape), fmt, name=key)

    return ModelItem(key, fields, export)


def _file_item(entry: ModelEntry) -> ModelItem:
    assert entry.file is not None
    return ModelItem.of_file(entry.file, entry.name or entry.file.stem)


def reference(plan: FarmPlan, backend: str) -> Reference:
    """The plan's models for ``backend``, each exported (or checked) once now, so that a model that cannot
    be measured is a result of its own and the others are measured all the same."""
    fmt = FORMAT_FOR_RUNTIME[backend]
    items: list[ModelItem] = []
    errors: dict[str, str] = {}
    elsewhere: list[str] = []
    for entry in plan.models:
        if entry.file is not None and entry.file.suffix.lstrip(".") != fmt:
            elsewhere.append(entry.name or entry.file.stem)
            continue
        try:
            built = _zoo_items(entry) if entry.zoo else [_arch_item(entry) if entry.arch else _file_item(entry)]
        except HwlabError as err:
            key = entry.name or (entry.arch or entry.file or Path(str(entry.zoo))).stem
            errors[key] = f"{type(err).__name__}: {err.message}"
            continue
        for item in built:
            try:
                item.export(fmt)
            except HwlabError as err:
                errors[item.key] = f"{type(err).__name__}: {err.message}"
                continue
            items.append(item)
    return Reference(items, errors, elsewhere)

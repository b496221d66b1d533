"""Retrain a found architecture from scratch (no supernet), record it, export it: what ``hwlab train`` does.

The standalone network of an ``arch.json`` is trained on the data, its validation
accuracy and weights recorded in the file, and ``model.onnx`` (and ``model.tflite``
with the converter) written beside it, ready to ship or to ``hwlab validate``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hwlab.errors import DataError
from hwlab.export import export_model_files
from hwlab.progress import Progress
from hwlab.search.data import load_data
from hwlab.search.record import ArchRecord
from hwlab.search.train import TrainSettings, accuracy, train_network
from hwlab.space.build import random_input


@dataclass(frozen=True)
class Retrained:
    arch: Path
    val_accuracy: float
    epochs: int
    weights: Path
    exports: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "arch": str(self.arch), "weights": str(self.weights)}


def retrain(
    arch_file: Path,
    data: str = "digits",
    settings: TrainSettings = TrainSettings(),
    *,
    export: bool = True,
    progress: Progress | None = None,
) -> Retrained:
    """Train ``arch_file``'s network from scratch; weights go to ``weights.pt`` beside it."""
    from hwlab.zoo import SposNet

    record = ArchRecord.load(arch_file)
    config = record.space.config
    images = load_data(data, config.input_size, seed=settings.seed)
    if images.num_classes != config.num_classes:
        raise DataError(f"{data} has {images.num_classes} classes, the architecture's classifier"
                        f" {config.num_classes}", hint="train on the data the search used")  # fmt: skip
    net = SposNet(config, record.arch.choices, record.arch.scales)
    weights = Path(arch_file).with_name("weights.pt")
    trained = train_network(net, images, settings, weights, progress)
    acc = accuracy(net, images.x_val, images.y_val)
    record.extra["weights"] = str(weights)
    record.extra["trained"] = {"data": str(data), "epochs": trained.epochs, "val_accuracy": acc,
                               "settings": asdict(settings)}  # fmt: skip
    files: dict[str, str] = {}
    if export:
        made = export_model_files(net.cpu().eval(), random_input(net.input_shape), Path(arch_file).parent, record.name)
        files = {fmt: str(path) for fmt, path in made.items()}
        record.extra["exports"] = files
    record.save(arch_file)
    return Retrained(Path(arch_file), acc, trained.epochs, weights, files)

"""Image data for supernet training and search: the bundled digits by default, or the user's own.

* ``digits``: scikit-learn's handwritten digits (1,797 8x8 images, 10 classes, shipped with the package, so
  the main job needs no download), upscaled to the space's input size and repeated to 3 channels.
* ``.npz``: arrays ``x`` (N,H,W / N,H,W,C / N,C,H,W; uint8 0..255 or floats) and ``y`` (N integer labels).
* an image folder: one sub-folder per class (``root/cat/1.png``), read with Pillow.

Every source is resized to the input size, standardised per channel with training-split statistics and
split into train and validation parts by a seeded, stratified draw: the search scores candidates on the
validation part, never on what the supernet was trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwlab.errors import DataError
from hwlab.npzfile import ArrayFileProblem, read_npz

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class ImageData:
    """Train and validation tensors (N, 3, S, S) with integer labels."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int
    source: str

    def describe(self) -> str:
        size = self.x_train.shape[-1]
        return (f"{self.source}: {len(self.y_train)} training and {len(self.y_val)} validation images,"
                f" {self.num_classes} classes, {size}x{size}")  # fmt: skip


def load_data(source: str | Path = "digits", size: int = 32, val_fraction: float = 0.2, seed: int = 0) -> ImageData:
    """``"digits"``, a ``.npz`` file or an image folder, resized to ``size`` and split."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction={val_fraction} must be between 0 and 1", hint="e.g. 0.2")
    if str(source) == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images, labels, name = digits.images.astype(np.float32) / 16.0, digits.target, "digits"
    else:
        path = Path(source)
        if not path.exists():
            raise DataError(f"no data at {path}", hint="give 'digits', a .npz file with x and y, or an image folder")
        images, labels = _read_npz(path) if path.is_file() else _read_folder(path, size)
        name = path.name
    labels = np.asarray(labels)
    _check_labels(name, labels)
    x = _to_nchw(images, size)
    y = torch.as_tensor(labels, dtype=torch.long)
    classes = int(y.max()) + 1
    train, val = _stratified_split(y.numpy(), val_fraction, seed)
    mean = x[train].mean(dim=(0, 2, 3), keepdim=True)
    std = x[train].std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    x = (x - mean) / std
    return ImageData(x[train], y[train], x[val], y[val], classes, name)


def _check_labels(name: str, labels: np.ndarray) -> None:
    """Labels are the classes 0..C-1, each with an image: a stray label of 10**9 would otherwise become a
    classifier of a billion outputs, and an empty file a crash deep in training."""
    if len(labels) < 2:
        raise DataError(f"{name} holds {len(labels)} labelled images", hint="give at least two classes of images")
    if labels.min() < 0:
        raise DataError(f"{name}: label {int(labels.min())} is negative", hint="labels are the classes 0..C-1")
    present = np.unique(labels)
    classes = int(labels.max()) + 1
    if len(present) < 2 or len(present) != classes:
        seen = set(present.tolist())
        missing = [c for c in range(min(classes, 10**4)) if c not in seen][:5]
        raise DataError(
            f"{name}: labels must be the classes 0..C-1 with an image each and at least two classes; the largest"
            f" is {classes - 1} but {len(present)} classes have images"
            + (f" (none for {', '.join(map(str, missing))}...)" if missing else ""),
            hint="renumber the labels 0..C-1",
        )


def _read_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        archive = read_npz(path)
    except ArrayFileProblem as exc:
        raise DataError(f"{path} {exc}", hint="give a .npz written by numpy.savez(path, x=images, y=labels)") from None
    if "x" not in archive or "y" not in archive:
        raise DataError(f"{path} holds {sorted(archive)}, not arrays x and y",
                        hint="save with np.savez(path, x=images, y=labels)")  # fmt: skip
    x, y = archive["x"], archive["y"]
    if x.ndim not in (3, 4) or y.ndim != 1 or len(x) != len(y):
        raise DataError(f"{path}: x has shape {x.shape} and y {y.shape}; they must hold the same number of"
                        " samples (x: N,H,W / N,H,W,C / N,C,H,W; y: N labels)", hint="fix the arrays")  # fmt: skip
    if not np.issubdtype(y.dtype, np.integer) or not (np.issubdtype(x.dtype, np.number) and np.isfinite(x).all()):
        raise DataError(f"{path}: x must hold finite numbers and y integer labels (got {x.dtype}, {y.dtype})",
                        hint="save images as uint8 or floats and labels as integers")  # fmt: skip
    return x, y


def _read_folder(root: Path, size: int) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folders", hint="one sub-folder per class: root/NAME/*.png")
    images, labels = [], []
    for label, name in enumerate(classes):
        for file in sorted((root / name).iterdir()):
            if file.suffix.lower() in IMAGE_SUFFIXES:
                try:
                    with Image.open(file) as image:
                        pixels = image.convert("RGB").resize((size, size))
                except (OSError, ValueError, Image.DecompressionBombError) as err:  # not an image, cut short, huge
                    raise DataError(f"{file} cannot be read as an image ({err})",
                                    hint="remove or replace the file") from None  # fmt: skip
                images.append(np.asarray(pixels, dtype=np.float32) / 255.0)
                labels.append(label)
    if not images:
        raise DataError(f"no images in the class folders of {root}", hint=f"files ending in {IMAGE_SUFFIXES}")
    return np.stack(images), np.array(labels)


def _to_nchw(images: np.ndarray, size: int) -> torch.Tensor:
    x = np.asarray(images)
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"images of shape {images.shape} are not N,H,W / N,H,W,C / N,C,H,W with 1 or 3 channels",
                        hint="save grey or RGB images")  # fmt: skip
    t = torch.from_numpy(np.ascontiguousarray(x))
    if t.shape[1] == 1:
        t = t.repeat(1, 3, 1, 1)
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)


def _stratified_split(y: np.ndarray, val_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        cut = max(1, int(round(len(idx) * val_fraction))) if len(idx) > 1 else 0
        val += idx[:cut].tolist()
        train += idx[cut:].tolist()
    return torch.tensor(sorted(train)), torch.tensor(sorted(val))


def batches(
    x: torch.Tensor, y: torch.Tensor, batch_size: int, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches in a random order (``generator``) or in order (None); the last one may be short."""
    order = torch.randperm(len(y), generator=generator) if generator is not None else torch.arange(len(y))
    for start in range(0, len(y), batch_size):
        idx = order[start : start + batch_size]
        yield x[idx], y[idx]

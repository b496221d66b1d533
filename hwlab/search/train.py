"""Training loops: the supernet (one sampled path per step) and a standalone network, with checkpoints.

Both use SPOS's recipe: SGD with momentum and weight decay, a learning rate decaying linearly to zero over
all steps, label smoothing. A checkpoint is written atomically after every epoch (weights, optimiser,
schedule, RNG states), so an interrupted run resumes where its last epoch ended and a finished one is reused.
Checkpoints load with ``weights_only=True``: tensors and plain containers, no code.

On CUDA when present. Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains on its shard of each
epoch with DistributedDataParallel, each drawing its own path per step; rank 0 writes the checkpoint.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hwlab.errors import SearchError
from hwlab.progress import Progress
from hwlab.search.data import ImageData, batches
from hwlab.search.sampling import PathSampler
from hwlab.search.space import Arch


@dataclass(frozen=True)
class TrainSettings:
    """Small defaults that train the digits supernet on two CPU cores in minutes."""

    epochs: int = 30
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    seed: int = 0


@dataclass
class TrainResult:
    epochs: int
    resumed_from: int  # epochs already done when this run started
    last_loss: float
    last_accuracy: float  # training accuracy of the last epoch (of the sampled paths, for a supernet)
    checkpoint: Path | None


def _device() -> torch.device:
    if _distributed():
        return torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _distributed() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    """False in the helper processes of a ``torchrun`` launch, which only train."""
    return _rank() == 0


def train_supernet(
    supernet: nn.Module,
    data: ImageData,
    settings: TrainSettings,
    sampler: PathSampler | Callable[[random.Random], Any],
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train with one path per step drawn by ``sampler`` (seeded per rank): ``supernet(x, path)`` runs a
    path, whether an architecture of the SPOS supernet or a precision per layer (hwlab.quant.qsearch)."""
    rng = random.Random(settings.seed * 1000 + _rank())
    return _train(supernet, lambda model, x: model(x, sampler(rng)), data, settings, checkpoint, progress,
                  extra_state=lambda: {"path_rng": rng.getstate()},
                  load_extra=lambda state: rng.setstate(state["path_rng"]))  # fmt: skip


def train_network(
    net: nn.Module,
    data: ImageData,
    settings: TrainSettings,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train a standalone network (``hwlab train``: an architecture retrained from scratch)."""
    return _train(net, lambda model, x: model(x), data, settings, checkpoint, progress)


def _train(
    model: nn.Module,
    forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
    data: ImageData,
    settings: TrainSettings,
    checkpoint: Path | None,
    progress: Progress | None,
    extra_state: Callable[[], dict[str, Any]] = dict,
    load_extra: Callable[[dict[str, Any]], None] = lambda state: None,
) -> TrainResult:
    device = _device()
    model.to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=settings.lr, momentum=settings.momentum,
                                weight_decay=settings.weight_decay)  # fmt: skip
    world, rank = int(os.environ.get("WORLD_SIZE", "1")), _rank()
    steps_per_epoch = -(-len(data.y_train) // (settings.batch_size * world))
    total = max(1, settings.epochs * steps_per_epoch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / total))
    generator = torch.Generator().manual_seed(settings.seed)
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        if state["settings"] != asdict(settings):
            raise SearchError(f"{checkpoint} was trained with other settings: {state['settings']}",
                             hint=f"pass the same settings, or delete {checkpoint} to train afresh")  # fmt: skip
        _load_model(model, state, checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        generator.set_state(state["data_rng"])
        load_extra(state)
        start = int(state["epoch"])
    wrapped, own_group = model, False
    if _distributed():
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
            own_group = True
        wrapped = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True
        )
    loss_value, accuracy = float("nan"), float("nan")
    if start:  # resumed: the last finished epoch's figures stand until an epoch runs here
        loss_value, accuracy = float(state.get("loss", loss_value)), float(state.get("accuracy", accuracy))
    for epoch in range(start, settings.epochs):
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        for step, (x, y) in enumerate(batches(data.x_train, data.y_train, settings.batch_size * world, generator)):
            x, y = x[rank::world].to(device), y[rank::world].to(device)
            if len(y) == 0:
                continue
            logits = forward(wrapped, x)
            loss = F.cross_entropy(logits, y, label_smoothing=settings.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            seen += len(y)
            correct += int((logits.argmax(1) == y).sum())
            loss_sum += loss.item() * len(y)
            if progress and rank == 0:
                label = f"epoch {epoch + 1}/{settings.epochs} loss {loss_sum / seen:.3f} acc {correct / seen:.1%}"
                progress("train", epoch * steps_per_epoch + step + 1, total, label)
        loss_value, accuracy = loss_sum / max(seen, 1), correct / max(seen, 1)
        if checkpoint is not None and rank == 0:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "data_rng": generator.get_state(), "epoch": epoch + 1,
                "settings": asdict(settings), "loss": loss_value, "accuracy": accuracy, **extra_state(),
            })  # fmt: skip
    if own_group:
        torch.distributed.barrier()  # every rank leaves after the last checkpoint is written
        torch.distributed.destroy_process_group()
    model.eval()
    return TrainResult(settings.epochs, start, loss_value, accuracy, checkpoint)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write to a temporary file, then rename: a crash leaves the previous checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
        raise SearchError(f"cannot load checkpoint {path}: {exc}",
                         hint="delete it to train afresh, or give another --checkpoint") from None  # fmt: skip


def load_weights(model: nn.Module, path: Path) -> nn.Module:
    """A trained model's weights from its checkpoint, in eval mode."""
    _load_model(model, load_checkpoint(path), path)
    return model.eval()


def _load_model(model: nn.Module, state: dict[str, Any], path: Path) -> None:
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise SearchError(
            f"{path} does not hold this network's weights: {str(exc).splitlines()[0]}",
            hint=f"it was written by another version or network; delete {path} to train afresh",
        ) from None


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, arch: Arch | None = None, batch: int = 512) -> float:
    """Top-1 accuracy on (x, y); a supernet runs ``arch``'s path."""
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for xb, yb in batches(x, y, batch):
        logits = model(xb.to(device), arch) if arch is not None else model(xb.to(device))
        correct += int((logits.argmax(1) == yb.to(device)).sum())
    return correct / max(len(y), 1)

"""``hwlab reparam``: a model's deploy form, proven equivalent, exported, with what conversion saved.

A model comes from a built-in network (:data:`NETWORKS`, random weights with randomised BN statistics unless
``weights`` are given) or from the ``arch.json`` of ``hwlab search --space repvgg`` (its trained train-form
weights). Weights load with ``weights_only=True``: tensors and plain containers, never code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hwlab import jsonfile
from hwlab.errors import ReparamError
from hwlab.reparam.convert import DEFAULT_TOLERANCE, check_equivalence, reparam_with_report
from hwlab.reparam.nets import acnet_resnet18, randomise_bn, repvgg_a0

NETWORKS: dict[str, Callable[[int, int], nn.Module]] = {
    "repvgg-a0": lambda classes, size: repvgg_a0("repvgg", "relu", classes, size),
    "repvgg-a0-frelu": lambda classes, size: repvgg_a0("repvgg", "frelu", classes, size),
    "acnet-resnet18": lambda classes, size: acnet_resnet18(classes, size),
}


@dataclass
class DeployReport:
    """What ``hwlab reparam`` did: blocks converted, the equivalence check, sizes of both forms, files."""

    source: str
    blocks: list[str]
    equivalence: dict[str, Any]
    params_train: int
    params_deploy: int
    modules_train: int
    modules_deploy: int
    files: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _load_state(net: nn.Module, path: Path) -> None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one clear message
        raise ReparamError(
            f"cannot read weights {path}: {exc}", hint="give a state_dict saved with torch.save"
        ) from None
    state = state.get("model", state) if isinstance(state, dict) else state
    try:
        net.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise ReparamError(
            f"{path} does not hold this network's weights: {str(exc).splitlines()[0]}",
            hint="give the weights of the same network (and --input-size/--num-classes)",
        ) from None


def network_from_arch(path: Path) -> nn.Module:
    """The train-form network of a ``--space repvgg`` arch.json, with its trained weights when recorded."""
    from hwlab.reparam.space import RepSpace

    try:
        data = jsonfile.loads(Path(path).read_text(encoding="utf-8"))
        space = RepSpace.from_json(data["space"])
    except FileNotFoundError:
        raise ReparamError(f"no architecture file {path}", hint="give the arch.json hwlab search wrote") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ReparamError(
            f"{path} is not an arch.json of --space repvgg ({exc})",
            hint="hwlab reparam converts RepVGG-space architectures; use --net for built-ins",
        ) from None
    net = space.network(space.arch_from_json(data))
    recorded = ((data.get("deployed") or {}).get("files") or {}).get("train_weights")
    if recorded:
        weights = Path(recorded)
        _load_state(net, weights if weights.exists() else Path(path).parent / weights.name)  # a moved run folder
    return net


def built_in(name: str, num_classes: int, input_size: int, weights: Path | None, seed: int = 0) -> nn.Module:
    if name not in NETWORKS:
        raise ReparamError(f"unknown network {name!r}", hint=f"use one of: {', '.join(NETWORKS)}")
    torch.manual_seed(seed)
    net = NETWORKS[name](num_classes, input_size)
    if weights is not None:
        _load_state(net, weights)
    else:
        randomise_bn(net, seed)
    return net.eval()


def deploy(
    net: nn.Module,
    source: str,
    out: Path | None,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    formats: Sequence[str] = ("onnx",),
) -> DeployReport:
    """Convert ``net``, check it on random inputs (ReparamError above ``tolerance``), export the deploy form."""
    from hwlab.export import export_module
    from hwlab.space.build import random_input

    net.eval()
    deployed, conversion = reparam_with_report(net)
    if not conversion.blocks:
        raise ReparamError(
            f"{source} has no re-parameterisable block",
            hint="build it from hwlab.reparam's blocks (RepVGGBlock, ACBlock, ConvBNBlock, FReLU)",
        )
    shape = getattr(net, "input_shape", None)
    if shape is None:
        raise ReparamError(f"{source} does not say its input shape", hint="set net.input_shape = (1, C, H, W)")
    equivalence = check_equivalence(net, deployed, shape, tolerance=tolerance)
    report = DeployReport(
        source, list(conversion.blocks), equivalence.to_json(), _params(net), _params(deployed),
        len(list(net.modules())), len(list(deployed.modules())),
    )  # fmt: skip
    if out is not None:
        import shutil

        out.mkdir(parents=True, exist_ok=True)
        inputs = random_input(shape)
        for fmt in formats:
            exported = export_module(deployed, inputs, fmt, name=f"{Path(source).stem}-deploy").path
            target = out / f"deploy{exported.suffix}"
            shutil.copyfile(exported, target)
            report.files[fmt] = str(target)
        torch.save(deployed.state_dict(), out / "deploy.pt")
        report.files["weights"] = str(out / "deploy.pt")
    return report


def _params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())

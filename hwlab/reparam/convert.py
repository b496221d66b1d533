"""Convert a model's re-parameterisable blocks to their deploy forms, and prove the result computes the same.

``reparam(model)`` returns a converted copy (the trained model is left as it was): every
:class:`~hwlab.reparam.blocks.RepBlock`, wherever it sits, is replaced by its deploy form. A block that
cannot be converted raises :class:`ReparamError` naming its path in the model, so nothing is passed over
silently. ``check_equivalence`` runs both on seeded random inputs and fails above a stated tolerance.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from hwlab.errors import ReparamError
from hwlab.reparam.blocks import RepBlock

# fp32 conversions differ from the train form by rounding only: the largest output difference over the
# largest output magnitude measured 1.5e-7 ... 2.3e-6 per block and 5e-7 for a 22-block RepVGG-A0 at
# 224x224 (bench/reparam_speed.py); 1e-4 leaves room and still catches a wrong kernel, which is off by O(1).
DEFAULT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Conversion:
    """What ``reparam`` replaced: one path per converted block."""

    blocks: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.blocks)


def reparam(model: nn.Module) -> nn.Module:
    """A deploy-form copy of ``model`` in eval mode (every re-parameterisable block converted)."""
    return reparam_with_report(model)[0]


def reparam_with_report(model: nn.Module) -> tuple[nn.Module, Conversion]:
    """The deploy-form copy and the paths of the blocks converted."""
    deployed = copy.deepcopy(model).eval()
    converted: list[str] = []
    if isinstance(deployed, RepBlock):
        with torch.no_grad():
            return deployed.deploy_form("model").eval(), Conversion(("model",))
    _convert_children(deployed, "", converted)
    return deployed.eval(), Conversion(tuple(converted))


def _convert_children(module: nn.Module, prefix: str, converted: list[str]) -> None:
    for name, child in list(module.named_children()):
        path = f"{prefix}{name}"
        if isinstance(child, RepBlock):
            try:
                with torch.no_grad():
                    replacement = child.deploy_form(f"{path} ({type(child).__name__})")
            except ReparamError:
                raise
            except Exception as exc:  # a block whose layout was changed after it was built
                raise ReparamError(f"{path} ({type(child).__name__}) cannot be converted: {exc}",
                                   hint="build the block with hwlab.reparam's classes and leave its branches"
                                   " as they are") from exc  # fmt: skip
            setattr(module, name, replacement)
            converted.append(path)
        else:
            _convert_children(child, f"{path}.", converted)


@dataclass(frozen=True)
class Equivalence:
    """How far the deploy form's outputs are from the train form's (eval mode, the same inputs)."""

    max_abs: float
    max_rel: float  # max |difference| over max |train-form output|
    tolerance: float
    inputs: int

    @property
    def ok(self) -> bool:
        return self.max_rel <= self.tolerance

    def to_json(self) -> dict[str, float | int | bool]:
        return {"max_abs": self.max_abs, "max_rel": self.max_rel, "tolerance": self.tolerance,
                "inputs": self.inputs, "ok": self.ok}  # fmt: skip


def check_equivalence(
    train: nn.Module,
    deploy: nn.Module,
    input_shape: Sequence[int],
    *,
    tolerance: float = DEFAULT_TOLERANCE,
    trials: int = 3,
    seed: int = 0,
    strict: bool = True,
) -> Equivalence:
    """Both forms on ``trials`` seeded random inputs; with ``strict``, ReparamError above ``tolerance``."""
    generator = torch.Generator().manual_seed(seed)
    max_abs = peak = 0.0
    train.eval()
    deploy.eval()
    with torch.no_grad():
        for _ in range(trials):
            x = torch.randn(tuple(input_shape), generator=generator)
            expected, got = train(x), deploy(x)
            max_abs = max(max_abs, float((expected - got).abs().max()))
            peak = max(peak, float(expected.abs().max()))
    result = Equivalence(max_abs, max_abs / peak if peak > 0 else max_abs, tolerance, trials)
    if strict and not result.ok:
        raise ReparamError(
            f"the deploy form differs from the train form by {result.max_rel:.2e} of the output's largest"
            f" magnitude (max abs {result.max_abs:.2e}), above the tolerance {tolerance:g}",
            hint="a block's conversion is wrong for this layout: convert its blocks one by one to find it",
        )
    return result

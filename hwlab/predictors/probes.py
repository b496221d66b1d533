"""Small torch modules for one op category, or two in a chain, at a given activation shape.

Fusion is decided by measuring each op alone and the two together; these are the
modules measured. Two-input ops (add, concat) take their second operand as an
extra model input, so nothing but the op itself is timed; so does a dynconv its
weight (a conv whose weight is computed in the graph: here, given at run time).
"""

from __future__ import annotations

import torch
from torch import nn


class _Shuffle(nn.Module):
    """ShuffleNet's channel shuffle (reshape, transpose, reshape), groups of 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.reshape(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w)


def category_module(category: str, channels: int) -> nn.Module:
    """The op of one category on NCHW (or NC for fc) input with ``channels`` channels."""
    c = channels
    table: dict[str, nn.Module] = {
        "conv": nn.Conv2d(c, c, 3, padding=1, bias=False),
        "dwconv": nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False),
        "fc": nn.Linear(c, c),
        "bn": nn.BatchNorm2d(c),
        "relu": nn.ReLU(),
        "relu6": nn.ReLU6(),
        "hswish": nn.Hardswish(),
        "sigmoid": nn.Sigmoid(),
        "maxpool": nn.MaxPool2d(3, 1, 1),
        "avgpool": nn.AvgPool2d(3, 1, 1),
        "reshape": _Shuffle(),
    }
    if category not in table:
        raise KeyError(category)
    return table[category]


TWO_INPUT = ("add", "concat", "dynconv")


class Probe(nn.Module):
    """``first`` alone, ``second`` alone, or ``first`` then ``second``; add/concat take an extra input."""

    def __init__(self, first: str | None, second: str | None, channels: int) -> None:
        super().__init__()
        self.first_name, self.second_name = first, second
        self.first = category_module(first, channels) if first and first not in TWO_INPUT else None
        self.second = category_module(second, channels) if second and second not in TWO_INPUT else None

    def _apply(self, name: str | None, module: nn.Module | None, x: torch.Tensor, extra: list[torch.Tensor]):  # type: ignore[no-untyped-def]
        if name == "add":
            return x + extra.pop(0)
        if name == "concat":
            return torch.cat((x, extra.pop(0)), dim=1)
        if name == "dynconv":
            return nn.functional.conv2d(x, extra.pop(0), padding=1)
        return module(x) if module is not None else x

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        rest = list(extra)
        x = self._apply(self.first_name, self.first, x, rest)
        return self._apply(self.second_name, self.second, x, rest)


def probe_inputs(
    first: str | None, second: str | None, size: int, channels: int, flat: bool = False
) -> tuple[torch.Tensor, ...]:
    """Example inputs: the activation (NC when ``flat``, as around fc), plus one operand per two-input op (the
    activation's shape; a dynconv's 3x3 weight)."""
    shape = (1, channels) if flat else (1, channels, size, size)
    shapes = [shape] + [(channels, channels, 3, 3) if name == "dynconv" else shape
                        for name in (first, second) if name in TWO_INPUT]  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    return tuple(torch.randn(s, generator=generator) for s in shapes)

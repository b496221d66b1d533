"""Model graph -> the kernels a runtime executes: categorise ONNX nodes, then fuse them as measured.

A model's latency is predicted as the sum of its kernels' latencies, so the split must follow what
the runtime really runs: ops the measured `FusionRules` say fuse are grouped into one kernel.

Fusion is greedy in topological order. A kernel starts at an op and absorbs the next op while the
kernel's last op has exactly one live output, that output is not a graph output, its only consumer is
that next op, and the pair fuses. The pair check ("chain rule") accepts the next op when either

- (previous, next) fuses: the runtime fuses these two neighbours (conv+add then add+relu), or
- (primary, next) fuses: the kernel's first op (its primary, e.g. the conv of conv+bn) takes `next`
  as an epilogue (conv+bn then conv+relu).

Unknown ops never fuse. Kernels are listed in execution order (by their last op).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import onnx

from hwlab.errors import GraphError, UnknownOpError
from hwlab.predictors.graph_features import kernel_features
from hwlab.predictors.graph_load import GraphView, build_view, load_model
from hwlab.predictors.graph_ops import CATEGORY_OF_ONNX, PATTERNS, UNKNOWN_PREFIX, Op, build_ops
from hwlab.predictors.kernels import FusionRules, Kernel

if TYPE_CHECKING:  # torch loads only when a module is split
    import torch
    from torch import nn

__all__ = [
    "CATEGORY_OF_ONNX",
    "PATTERNS",
    "UNKNOWN_PREFIX",
    "GraphError",
    "UnknownOpError",
    "chain_fuses",
    "kernel_summary",
    "module_kernels",
    "onnx_kernels",
    "view_kernels",
]


def chain_fuses(rules: FusionRules, categories: Sequence[str], following: str) -> bool:
    """Whether a kernel made of `categories` absorbs an op of category `following` (see module doc)."""
    if following.startswith(UNKNOWN_PREFIX) or any(c.startswith(UNKNOWN_PREFIX) for c in categories):
        return False
    return rules.fuses(categories[-1], following) or rules.fuses(categories[0], following)


def _live_outputs(view: GraphView, op: Op, readers: dict[str, list[int]]) -> list[str]:
    """Outputs something reads or the graph returns; unused optional outputs do not count."""
    return [out for out in op.outputs if out in readers or out in view.graph_outputs]


def _readers(ops: list[Op]) -> dict[str, list[int]]:
    """Dynamic value -> the ops reading it."""
    readers: dict[str, list[int]] = {}
    for k, op in enumerate(ops):
        for x in op.inputs:
            readers.setdefault(x, []).append(k)
    return readers


def _fuse(view: GraphView, ops: list[Op], readers: dict[str, list[int]], rules: FusionRules) -> list[list[int]]:
    """Op indices grouped into kernels, greedily, in execution order."""
    taken: set[int] = set()
    groups: list[list[int]] = []
    for k in range(len(ops)):
        if k in taken:
            continue
        chain = [k]
        taken.add(k)
        while True:
            live = _live_outputs(view, ops[chain[-1]], readers)
            if len(live) != 1 or live[0] in view.graph_outputs or len(readers.get(live[0], [])) != 1:
                break
            following = readers[live[0]][0]
            if following in taken or not chain_fuses(rules, [ops[c].category for c in chain], ops[following].category):
                break
            chain.append(following)
            taken.add(following)
        groups.append(chain)
    groups.sort(key=lambda chain: chain[-1])
    return groups


def _kernel(view: GraphView, ops: list[Op], members: list[int], readers: dict[str, list[int]]) -> Kernel:
    chain = [ops[k] for k in members]
    live = _live_outputs(view, chain[-1], readers) or list(chain[-1].outputs[:1])
    names = tuple(view.names[i] for op in chain for i in op.nodes)
    return Kernel("+".join(op.category for op in chain), names, kernel_features(view, chain, live))


def onnx_kernels(
    model: str | Path | onnx.ModelProto, rules: FusionRules, *, allow_unknown: bool = False
) -> list[Kernel]:
    """The kernels of an ONNX model (batch 1) under `rules`, in execution order.

    Raises UnknownOpError when some node has no category, unless `allow_unknown`: those nodes then
    become 'unknown:<OpType>' kernels, which the caller must report (the prediction is a lower bound).
    """
    view = build_view(load_model(model))
    return [kernel for kernel, _ in view_kernels(view, rules, allow_unknown=allow_unknown)]


def view_kernels(
    view: GraphView, rules: FusionRules, *, allow_unknown: bool = False
) -> list[tuple[Kernel, frozenset[int]]]:
    """``onnx_kernels`` of a loaded view, each kernel with the indices of its nodes in the view."""
    ops, unknown = build_ops(view)
    if unknown and not allow_unknown:
        raise UnknownOpError(unknown)
    readers = _readers(ops)
    return [
        (_kernel(view, ops, members, readers), frozenset(i for k in members for i in ops[k].nodes))
        for members in _fuse(view, ops, readers, rules)
    ]


def module_kernels(
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    rules: FusionRules,
    *,
    allow_unknown: bool = False,
    cache_dir: Path | None = None,
) -> list[Kernel]:
    """The kernels of a torch module, split from its ONNX export (so BN is already folded into convs)."""
    from hwlab.export import export_module

    exported = export_module(module, example_inputs, "onnx", cache_dir=cache_dir)
    return onnx_kernels(exported.path, rules, allow_unknown=allow_unknown)


def kernel_summary(kernels: Sequence[Kernel]) -> dict[str, int]:
    """How many kernels of each type, in order of first appearance."""
    return dict(Counter(k.type for k in kernels))

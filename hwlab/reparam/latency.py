"""A ``--space repvgg`` candidate's deployed latency: the sum of its deploy ops, measured or predicted.

The budget is checked against what the device runs, the deploy form: one 3x3 conv + activation per block,
the pooling and the classifier (:meth:`RepSpace.deploy_ops`). Both sources cost every distinct op once:

* ``RepTableLatency``: the rows of a ``hwlab profile --space repvgg`` table (measured on the device); each
  row is a whole one-op model, so each carries the runtime's fixed cost of one inference, which the space's
  probe op measures: a candidate's sum counts it once;
* ``RepPredictorLatency``: the device's fitted predictor, each op's kernels predicted once, plus the
  whole-network remainder (the per-model overhead, fusion across ops) from one deployed network.
"""

from __future__ import annotations

import random
import shlex
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hwlab.errors import PredictorError
from hwlab.reparam.space import FIXED_COST_OP, RepArch, RepSpace
from hwlab.search.latency import MAX_OUTSIDE_SHARE, measured_ms
from hwlab.tables import LookupTable


def profile_command(space: RepSpace, table: LookupTable) -> str:
    """The ``hwlab profile`` command that fills ``table`` with every deploy op of ``space``."""
    folder = table.folder
    return (
        f"hwlab profile --device {shlex.quote(folder.parent.parent.name)} --backend {folder.parent.name}"
        f" --space repvgg --input-size {space.input_size} --num-classes {space.num_classes}"
        f" --table {shlex.quote(folder.name)} --tables-dir {shlex.quote(str(folder.parent.parent.parent))}"
    )


class _OpSum:
    """Latency as a base plus the sum of per-op figures looked up by key."""

    name: str
    note: str | None = None
    space: RepSpace
    base_ms: float = 0.0
    fixed_ms: float = 0.0  # counted once per op by the sum, but once per inference by the device
    ms: dict[str, float]

    def one(self, arch: RepArch) -> float:
        ops = self.space.deploy_ops(arch)
        return self.base_ms + sum(self.ms[op.key] for op in ops) - self.fixed_ms * (len(ops) - 1)

    def __call__(self, archs: Sequence[RepArch]) -> np.ndarray:
        return np.array([self.one(a) for a in archs])


class RepTableLatency(_OpSum):
    """Measured: the sum of the table's medians for the candidate's deploy ops."""

    def __init__(self, space: RepSpace, table: LookupTable, *, force: bool = False) -> None:
        self.space, self.name = space, f"table {table.folder}"
        wanted = [op.key for op in space.all_deploy_ops()]
        self.ms = measured_ms(table, wanted, profile_command(space, table), force=force)
        self.fixed_ms = self.ms[FIXED_COST_OP.key]


class RepPredictorLatency(_OpSum):
    """Predicted: each deploy op once through the device's predictor, plus one whole network's remainder."""

    def __init__(
        self, space: RepSpace, device: str, backend: str, root: Path = Path("predictors"), *, force: bool = False
    ) -> None:
        from hwlab.export import export_module, export_spec
        from hwlab.predictors.graph import onnx_kernels
        from hwlab.predictors.predictor import Predictor
        from hwlab.reparam.convert import reparam
        from hwlab.space.build import random_input

        self.space, self.name = space, f"predictor {device}/{backend}"
        predictor = Predictor.load(device, backend, root, force=force)
        self.ms, total, outside = {}, 0.0, 0.0
        recorded = True  # a predictor fitted before hwlab kept its domain cannot say what it covers
        for op in space.all_deploy_ops():
            kernels = onnx_kernels(export_spec(op, "onnx").path, predictor.rules)
            times, _ = predictor.kernel_ms(kernels)
            self.ms[op.key] = sum(times) + predictor.overhead.per_kernel_ms * len(kernels)
            flags = predictor.outside_domain(kernels)
            recorded = recorded and flags is not None
            total += sum(times)
            outside += sum(t for t, out in zip(times, flags or [False] * len(times), strict=True) if out)
        reference = space.sample(random.Random(0))
        net = reparam(space.network(reference))
        path = export_module(net, random_input(net.input_shape), "onnx", name="repvgg-reference").path
        self.base_ms = predictor.predict_onnx(path).total_ms - self.one(reference)
        share = outside / total if total > 0 else 0.0
        if not recorded or share > MAX_OUTSIDE_SHARE:
            what = (
                f"was fitted on kernels that do not cover {share:.0%} of"
                if recorded
                else "records no domain (it was fitted before hwlab kept one), so whether it covers"
            )
            problem = f"the predictor {device}/{backend} {what} this space"
            if not force:
                raise PredictorError(problem, hint="profile the space and search with --latency-source table, "
                                     "or pass --force")  # fmt: skip
            self.note = f"{problem}: its error there is unchecked; the winner's measurement tells"

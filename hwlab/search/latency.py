"""A candidate's latency on the target device, fast enough for a search: predictor or lookup table.

* ``PredictorLatency``: the device's fitted predictor through its SPOS fast path (block latencies predicted
  once, then one array lookup per layer); what ``hwlab search --device D --backend B`` uses.
* ``TableLatency``: the sum of a ``hwlab profile --space spos`` table's rows for the candidate's ops (stem,
  20 blocks, head); exact for what was measured, blind to fusion across blocks.

Both take a batch of architectures and return milliseconds, one per architecture.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from hwlab.errors import PredictorError, TableError
from hwlab.search.space import Arch, SearchSpace, encode
from hwlab.space import SPOS_CHOICES, spos_block_op, spos_config_ops
from hwlab.space.spos import spos_head_ops
from hwlab.tables import LookupTable

# A predictor covers a space when at most this share of the space's predicted time is extrapolated.
MAX_OUTSIDE_SHARE = 0.05


class LatencySource(Protocol):
    name: str

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray: ...


class PredictorLatency:
    """Predicted latency from the fitted predictor of (device, backend)."""

    def __init__(
        self, space: SearchSpace, device: str, backend: str, root: Path = Path("predictors"), *, force: bool = False
    ) -> None:
        from hwlab.predictors.fastpath import SposLatencyTable
        from hwlab.predictors.predictor import Predictor

        self.space = space
        self.name = f"predictor {device}/{backend}"
        predictor = Predictor.load(device, backend, root, force=force)
        self.table = SposLatencyTable(predictor, space.config)
        self.note: str | None = None  # set when --force searches a space the predictor does not cover
        share = self.table.outside_share
        if share is not None and share <= MAX_OUTSIDE_SHARE:
            return
        c = space.config
        what = (
            "records no domain (it was fitted before hwlab kept one), so whether it covers"
            if share is None
            else f"was fitted on kernels that do not cover {share:.0%} of the predicted time of"
        )
        size = f"{c.input_size}x{c.input_size}, width {c.width:g}"
        problem = f"the predictor {device}/{backend} {what} this space ({size})"
        if force:
            self.note = f"{problem}: its error there is unchecked; the winner's measurement tells"
            return
        raise PredictorError(problem, hint=f"fit one that does: {fit_command(space, device, backend, root)};"
                             " or search with --latency-source table, or pass --force")  # fmt: skip

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        coded = [encode(a, self.space.scales) for a in archs]
        return self.table.batch_ms(np.array([c for c, _ in coded]), np.array([s for _, s in coded]))


def fit_command(space: SearchSpace, device: str, backend: str, root: Path) -> str:
    """The ``hwlab predictors fit`` command whose predictor covers ``space`` (and the default spaces)."""
    from hwlab.predictors.shapes import DEFAULT_SPOS_SHAPES, SposShape

    c = space.config
    wanted = SposShape(c.input_size, c.width, c.stem_stride, c.num_classes)
    shapes = [wanted, *(s for s in DEFAULT_SPOS_SHAPES if s != wanted)]
    return (
        f"hwlab predictors fit --device {shlex.quote(device)} --backend {backend}"
        f" --predictors-dir {shlex.quote(str(root))} --spos-space {' '.join(str(s) for s in shapes)}"
    )


def profile_command(space: SearchSpace, table: LookupTable) -> str:
    """The exact ``hwlab profile`` command that fills ``table`` with every op of ``space``."""
    c, folder = space.config, table.folder
    return (
        f"hwlab profile --device {shlex.quote(folder.parent.parent.name)} --backend {folder.parent.name}"
        f" --space spos --input-size {c.input_size} --width {c.width:g} --num-classes {c.num_classes}"
        f" --stem-stride {c.stem_stride} --channel-scales {','.join(f'{s:g}' for s in c.channel_scales)}"
        f" --table {shlex.quote(folder.name)} --tables-dir {shlex.quote(str(folder.parent.parent.parent))}"
    )


def measured_ms(
    table: LookupTable, wanted: Sequence[str], command: str, stat: str = "median_ms", *, force: bool = False
) -> dict[str, float]:
    """``stat`` of every measured row of a space's table, checked before any training: measured on the device
    and backend its folder names (unless ``force``), and holding every key in ``wanted``; else a TableError
    whose fix is ``command``, the profile command that fills it."""
    if table.exists and not force:
        table.check_measured_on(table.folder.parent.parent.name, table.folder.parent.name)
    ms = {r["key"]: float(r[stat]) for r in table if r.get("status") == "ok" and r.get(stat) is not None}
    missing = [k for k in wanted if k not in ms]
    if missing:
        held = "holds no measured rows" if not ms else f"lacks {len(missing)} of the space's {len(wanted)} ops"
        raise TableError(f"{table.folder} {held} (e.g. {missing[0]})", hint=f"profile this space first: {command}")
    return ms


class TableLatency:
    """Sum of measured op latencies from a lookup table of the space's ops.

    The table must hold every op of the space (checked at once, before a supernet is
    trained): the error names the exact profile command that fills it. Like the
    predictor's fast path, every block's latency is looked up once, so an architecture
    costs 20 array lookups and a batch is one vectorised sum.
    """

    def __init__(self, space: SearchSpace, table: LookupTable, stat: str = "median_ms", *, force: bool = False) -> None:
        self.space, self.stat = space, stat
        self.name = f"table {table.folder}"
        wanted = [op.key for op in spos_config_ops(space.config)]
        self.ms = measured_ms(table, wanted, profile_command(space, table), stat, force=force)
        config = space.config
        stem, tail = spos_head_ops(config)
        self.base_ms = self.ms[stem.key] + sum(self.ms[op.key] for op in tail)
        self.blocks = np.array(  # (layer, choice, scale) -> ms
            [[[self.ms[spos_block_op(layer, c, s).key] for s in space.scales] for c in range(len(SPOS_CHOICES))]
             for layer in config.layers()]
        )  # fmt: skip

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        coded = [encode(a, self.space.scales) for a in archs]
        choices, scales = np.array([c for c, _ in coded]), np.array([s for _, s in coded])
        return self.base_ms + self.blocks[np.arange(self.blocks.shape[0])[None, :], choices, scales].sum(axis=1)

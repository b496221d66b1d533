"""A candidate's latency on the target device, fast enough for a search: predictor or lookup table.

* ``PredictorLatency``: the device's fitted predictor through its SPOS fast path (block latencies predicted
  once, then one array lookup per layer); what ``hwlab search --device D --backend B`` uses.
* ``TableLatency``: the sum of a ``hwlab profile --space spos`` table's rows for the candidate's ops (stem,
  20 blocks, head); exact for what was measured, blind to fusion across blocks.

Both take a batch of architectures and return milliseconds, one per architecture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from hwlab.errors import TableError
from hwlab.search.space import Arch, SearchSpace, encode
from hwlab.space import spos_arch_ops
from hwlab.tables import LookupTable


class LatencySource(Protocol):
    name: str

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray: ...


class PredictorLatency:
    """Predicted latency from the fitted predictor of (device, backend)."""

    def __init__(self, space: SearchSpace, device: str, backend: str, root: Path = Path("predictors")) -> None:
        from hwlab.predictors.fastpath import SposLatencyTable
        from hwlab.predictors.predictor import Predictor

        self.space = space
        self.name = f"predictor {device}/{backend}"
        predictor = Predictor.load(device, backend, root)
        self.table = SposLatencyTable(predictor, space.config)
        fitted = predictor.loaded.meta.get("plan", {}).get("spos_input")
        config = space.config
        self.note: str | None = None  # set when the space lies outside what the predictor was fitted on
        if fitted is not None and (config.input_size != fitted or config.width != 1.0):
            self.note = (
                f"the predictor was fitted on SPOS at {fitted}x{fitted}, width 1; this space is"
                f" {config.input_size}x{config.input_size}, width {config.width:g}, where its error is unchecked:"
                " the winner's measurement tells, or search with --latency-source table"
            )

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        if not archs:
            return np.zeros(0)
        coded = [encode(a, self.space.scales) for a in archs]
        return self.table.batch_ms(np.array([c for c, _ in coded]), np.array([s for _, s in coded]))


class TableLatency:
    """Sum of measured op latencies from a lookup table of the space's ops."""

    def __init__(self, space: SearchSpace, table: LookupTable, stat: str = "median_ms") -> None:
        self.space, self.stat = space, stat
        self.name = f"table {table.folder}"
        self.ms = {r["key"]: float(r[stat]) for r in table if r.get("status") == "ok" and r.get(stat) is not None}
        if not self.ms:
            raise TableError(f"{table.folder} holds no measured rows", hint="profile the space first: hwlab profile")

    def __call__(self, archs: Sequence[Arch]) -> np.ndarray:
        out = np.empty(len(archs))
        config = self.space.config
        for i, arch in enumerate(archs):
            keys = [op.key for op in spos_arch_ops(config, arch.choices, arch.scales)]
            missing = [k for k in keys if k not in self.ms]
            if missing:
                raise TableError(
                    f"the table lacks {len(missing)} op(s) of architecture {arch}, e.g. {missing[0]}",
                    hint=f"profile this space: hwlab profile --space spos --input-size {config.input_size}"
                    f" --width {config.width:g} --num-classes {config.num_classes}"
                    f" --stem-stride {config.stem_stride}"
                    f" --channel-scales {','.join(f'{s:g}' for s in config.channel_scales)}",
                )
            out[i] = sum(self.ms[k] for k in keys)
        return out

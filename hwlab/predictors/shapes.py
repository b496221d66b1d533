"""The SPOS spaces a predictor is fitted on: light to import (a CLI flag parses them before any work)."""

from __future__ import annotations

from dataclasses import dataclass

from hwlab.errors import InvalidRequest, SpaceError
from hwlab.space.spos import SposConfig

# Channel scales of the SPOS training (and held-out) architectures: narrow and full middle channels.
TRAINING_CHANNEL_SCALES = (0.6, 1.0)


@dataclass(frozen=True)
class SposShape:
    """One SPOS space a fit measures: input size, width, stem stride, classes (as ``hwlab search`` takes them)."""

    input_size: int
    width: float
    stem_stride: int = 2
    num_classes: int = 1000

    def config(self) -> SposConfig:
        return SposConfig(self.input_size, self.width, TRAINING_CHANNEL_SCALES, self.num_classes, self.stem_stride)

    @classmethod
    def parse(cls, text: str) -> SposShape:
        """``SIZE,WIDTH[,STRIDE[,CLASSES]]``, e.g. ``32,0.25,1,10`` (the search's default space)."""
        parts = text.split(",")
        try:
            if not 2 <= len(parts) <= 4:
                raise ValueError
            shape = cls(int(parts[0]), float(parts[1]), *(int(p) for p in parts[2:]))
            shape.config()  # SposConfig checks the values
        except (ValueError, SpaceError):
            raise InvalidRequest(
                f"SPOS space {text!r} is not SIZE,WIDTH[,STRIDE[,CLASSES]] of valid values",
                hint="e.g. 32,0.25,1,10 (the search's default space) or 224,1.0",
            ) from None
        return shape

    def __str__(self) -> str:
        return f"{self.input_size},{self.width:g},{self.stem_stride},{self.num_classes}"


# The search's default space (32x32, width 0.25, stem stride 1, 10 classes), then 64 to 224 inputs at
# widths 0.5 to 2: a predictor that covers what `hwlab search` asks by default and what users deploy.
DEFAULT_SPOS_SHAPES: tuple[SposShape, ...] = (
    SposShape(32, 0.25, 1, 10), SposShape(64, 1.0), SposShape(128, 2.0), SposShape(224, 0.5),
)  # fmt: skip

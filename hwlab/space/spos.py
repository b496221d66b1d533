"""The Single Path One-Shot ShuffleNetV2 space (Guo et al., ECCV 2020) as op specs.

An architecture is 20 choices (one per choice layer) in 0..3 -- ShuffleNetV2 unit
with kernel 3, 5, 7, or Shuffle-Xception -- plus, for channel search, one scale
per layer. `spos_arch_ops` turns it into the ordered op list whose latencies sum
to the candidate's latency; `spos_space` lists every unique op any candidate
can use, which is what a lookup table must hold.

Layout at width 1.0: stem 3x3 conv to 16 channels (stride `stem_stride`), four
stages of [4, 4, 8, 4] choice layers with 64/160/320/640 output channels whose
first layer has stride 2, a 1x1 conv to 1024, global pool and a classifier.
A block's middle channels are int(cout / 2 * scale).

Small inputs: every stride-2 layer maps a side of s to ceil(s / 2), so sides
shrink to 1 and then stay 1 (input 32 gives 16, 8, 4, 2, 1); nothing is refused
for being small, and ops at 1x1 are keyed like any other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral

from hwlab.errors import SpaceError
from hwlab.space.opspec import OpSpec

SPOS_STAGE_REPEATS: tuple[int, ...] = (4, 4, 8, 4)
SPOS_NUM_LAYERS = sum(SPOS_STAGE_REPEATS)
# Stem, the four stages, last conv: stage_out_channels[1:] of the supernet at width 1.0.
SPOS_CHANNELS: tuple[int, ...] = (16, 64, 160, 320, 640, 1024)
# Choice index -> block, in the supernet's order.
SPOS_CHOICES: tuple[str, ...] = ("shufflenet_3x3", "shufflenet_5x5", "shufflenet_7x7", "xception_3x3")
# Channel-search scales of the paper: 0.2 .. 1.6 in steps of 0.2.
SPOS_CHANNEL_SCALES: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)


def _round8(channels: float) -> int:
    return max(8, int(channels / 8 + 0.5) * 8)


@dataclass(frozen=True)
class SposLayer:
    """One choice layer's fixed shape: where it sits and what it maps."""

    index: int
    stage: int
    input_size: int
    cin: int
    cout: int
    stride: int


@dataclass(frozen=True)
class SposConfig:
    """The shape of a SPOS space; shared by table building and search.

    width scales the stem and stage channels (rounded to multiples of 8); the last
    conv keeps 1024 channels at width <= 1 and scales with width above.
    """

    input_size: int = 224
    width: float = 1.0
    channel_scales: tuple[float, ...] = (1.0,)
    num_classes: int = 1000
    stem_stride: int = 2

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_scales", tuple(float(s) for s in self.channel_scales))
        problems = []
        if not isinstance(self.input_size, int) or self.input_size < 1:
            problems.append(f"input_size={self.input_size!r} must be an int >= 1")
        if not self.width > 0:
            problems.append(f"width={self.width!r} must be > 0")
        if not self.channel_scales or any(not s > 0 for s in self.channel_scales):
            problems.append(f"channel_scales={self.channel_scales!r} must be a non-empty list of numbers > 0")
        if len(set(self.channel_scales)) != len(self.channel_scales):
            problems.append(f"channel_scales={self.channel_scales!r} has duplicates")
        if not isinstance(self.num_classes, int) or self.num_classes < 1:
            problems.append(f"num_classes={self.num_classes!r} must be an int >= 1")
        if self.stem_stride not in (1, 2):
            problems.append(f"stem_stride={self.stem_stride!r} must be 1 or 2")
        if problems:
            raise SpaceError("bad SPOS config: " + "; ".join(problems), hint="fix the listed parameters")

    @property
    def channels(self) -> tuple[int, ...]:
        """Stem, four stage and last-conv channel counts at this width."""
        if self.width == 1.0:
            return SPOS_CHANNELS
        *body, last = SPOS_CHANNELS
        return (
            *(_round8(c * self.width) for c in body),
            last if self.width <= 1 else _round8(last * self.width),
        )

    @property
    def stem_output_size(self) -> int:
        """Spatial side after the stem."""
        return math.ceil(self.input_size / self.stem_stride)

    def layers(self) -> list[SposLayer]:
        """The 20 choice layers in order."""
        stem, *stages, _ = self.channels
        layers: list[SposLayer] = []
        size, cin = self.stem_output_size, stem
        for stage, (repeats, cout) in enumerate(zip(SPOS_STAGE_REPEATS, stages, strict=True)):
            for i in range(repeats):
                stride = 2 if i == 0 else 1
                layers.append(SposLayer(len(layers), stage, size, cin, cout, stride))
                size, cin = math.ceil(size / stride), cout
        return layers

    def final_size(self) -> int:
        """Spatial side after the last stage."""
        last = self.layers()[-1]
        return math.ceil(last.input_size / last.stride)


def spos_mid_channels(cout: int, scale: float) -> int:
    """Middle channels of a block: int(cout / 2 * scale).

    Rounded to 6 decimals first, so a scale built by adding 0.2 eight times
    (1.5999999999999999) gives the same count as 1.6.
    """
    return int(round(cout / 2 * scale, 6))


def spos_block_op(layer: SposLayer, choice: int, scale: float = 1.0) -> OpSpec:
    """The op of `layer` for block `choice` (index into SPOS_CHOICES) at channel `scale`."""
    if not isinstance(choice, Integral) or isinstance(choice, bool) or choice not in range(len(SPOS_CHOICES)):
        raise SpaceError(
            f"layer {layer.index}: choice {choice!r} is not in 0..{len(SPOS_CHOICES) - 1}",
            hint=f"choices are {', '.join(f'{i}={n}' for i, n in enumerate(SPOS_CHOICES))}",
        )
    mid = spos_mid_channels(layer.cout, scale)
    if mid < 1:
        raise SpaceError(
            f"layer {layer.index}: scale {scale} leaves {mid} middle channels",
            hint="use a larger channel scale or width",
        )
    size = layer.input_size
    block = SPOS_CHOICES[int(choice)]
    if block.startswith("xception"):
        return OpSpec("spos_xception", size, size, layer.cin, layer.cout, mid=mid, stride=layer.stride)
    kernel = int(block[-1])
    return OpSpec("spos_shufflenet", size, size, layer.cin, layer.cout, kernel, layer.stride, mid=mid)


def spos_head_ops(config: SposConfig) -> tuple[OpSpec, list[OpSpec]]:
    """The ops every architecture of ``config`` has: the stem, and the last conv, pool and classifier."""
    stem, *_, stage_out, last = config.channels
    size = config.input_size
    stem_op = OpSpec("spos_stem", size, size, 3, stem, stride=config.stem_stride)
    final = config.final_size()
    tail = [
        OpSpec("spos_last", final, final, stage_out, last),
        OpSpec("gap", final, final, last, last),
        OpSpec("fc", 1, 1, last, config.num_classes),
    ]
    return stem_op, tail


def spos_arch_ops(config: SposConfig, choices: Sequence[int], scales: Sequence[float] | None = None) -> list[OpSpec]:
    """Ordered ops of one architecture: stem, 20 blocks, last conv, global pool, classifier.

    scales default to 1.0 for every layer; each scale must be one of
    config.channel_scales so that every op is in the space's table.
    """
    if len(choices) != SPOS_NUM_LAYERS:
        raise SpaceError(
            f"got {len(choices)} choices, a SPOS architecture has {SPOS_NUM_LAYERS}",
            hint="give one choice in 0..3 per layer",
        )
    scales = [1.0] * SPOS_NUM_LAYERS if scales is None else list(scales)
    if len(scales) != SPOS_NUM_LAYERS:
        raise SpaceError(f"got {len(scales)} scales for {SPOS_NUM_LAYERS} layers", hint="give one scale per layer")
    for i, scale in enumerate(scales):
        if scale not in config.channel_scales:
            raise SpaceError(
                f"layer {i}: scale {scale} is not in channel_scales {config.channel_scales}",
                hint="use the config's channel scales, or build the config with this one",
            )
    stem, tail = spos_head_ops(config)
    blocks = [spos_block_op(layer, c, s) for layer, c, s in zip(config.layers(), choices, scales, strict=True)]
    return [stem, *blocks, *tail]


def spos_config_ops(config: SposConfig) -> list[OpSpec]:
    """Every unique op of the space of `config`, in a stable order (stem, layers, head)."""
    stem, tail = spos_head_ops(config)
    ops = [stem]
    for layer in config.layers():
        ops += [spos_block_op(layer, c, s) for c in range(len(SPOS_CHOICES)) for s in config.channel_scales]
    ops += tail
    return list({op.key: op for op in ops}.values())


def spos_space(
    input_size: int = 224,
    channel_scales: Sequence[float] = (1.0,),
    width: float = 1.0,
    num_classes: int = 1000,
    stem_stride: int = 2,
) -> list[OpSpec]:
    """Unique ops of the SPOS ShuffleNetV2 space; layers 2..4 of a stage share shapes, so they dedupe."""
    config = SposConfig(input_size, width, tuple(channel_scales), num_classes, stem_stride)
    return spos_config_ops(config)

"""``--space blocks``: the seed's design ideas at realistic sizes, each beside what it is compared with.

Sites follow RepVGG-A0 at ``input_size`` (224 by default): stride-1 blocks at 1/4, 1/8 and 1/16 of the
input with 48, 96 and 192 channels (times ``width``), and the stride-2 blocks that open its stages. At
every stride-1 site the space holds, on the same input:

* each re-parameterised block in train form (``repvgg_block``, ``acnet_block``) and the deploy form both
  convert to (``conv_act``: one 3x3 conv with a bias and the activation), with ReLU and with FReLU;
* FReLU in train form and deploy form beside ReLU, ReLU6 and h-swish (``act``);
* WeightNet (M = 2, G = 2) beside a plain 3x3 conv, SE and CondConv (4 experts): the same conv, its weights
  computed per sample.

Interleaved in one job, these rows compare on the same drift-corrected scale.
"""

from __future__ import annotations

from hwlab.errors import SpaceError
from hwlab.space.opspec import OpSpec

WIDTHS = (48, 96, 192)  # RepVGG-A0's stage widths at 1/4, 1/8, 1/16 of the input
LAST_WIDTH = 1280  # its last stage (one stride-2 block to 1/32)
WEIGHTNET_M, WEIGHTNET_G, CONDCONV_EXPERTS = 2, 2, 4


def _scaled(channels: int, width: float) -> int:
    return max(8, int(round(channels * width / 8)) * 8)


def _site_ops(size: int, c: int) -> list[OpSpec]:
    ops = [
        OpSpec("repvgg_block", size, size, c, c, stride=1, act="relu"),
        OpSpec("acnet_block", size, size, c, c, kernel=3, stride=1, act="relu"),
        OpSpec("conv_act", size, size, c, c, kernel=3, stride=1, act="relu"),
        OpSpec("repvgg_block", size, size, c, c, stride=1, act="frelu"),
        OpSpec("conv_act", size, size, c, c, kernel=3, stride=1, act="frelu"),
        OpSpec("frelu_train", size, size, c, c),
        OpSpec("frelu", size, size, c, c),
        *(OpSpec("act", size, size, c, c, act=a) for a in ("relu", "relu6", "hswish")),
        OpSpec("conv", size, size, c, c, kernel=3, stride=1),
        OpSpec("weightnet", size, size, c, c, kernel=3, stride=1, groups=WEIGHTNET_G, mid=WEIGHTNET_M),
        OpSpec("se_conv", size, size, c, c, kernel=3, stride=1),
        OpSpec("condconv", size, size, c, c, kernel=3, stride=1, mid=CONDCONV_EXPERTS),
    ]
    return ops


def _transition_ops(size: int, cin: int, cout: int) -> list[OpSpec]:
    return [
        OpSpec("repvgg_block", size, size, cin, cout, stride=2, act="relu"),
        OpSpec("acnet_block", size, size, cin, cout, kernel=3, stride=2, act="relu"),
        OpSpec("conv_act", size, size, cin, cout, kernel=3, stride=2, act="relu"),
    ]


def blocks_space(input_size: int = 224, width: float = 1.0) -> list[OpSpec]:
    """Every block of the comparison at RepVGG-A0's sites for ``input_size`` (a multiple of 32)."""
    if not isinstance(input_size, int) or input_size < 32 or input_size % 32:
        raise SpaceError(f"input_size={input_size!r} must be a multiple of 32",
                         hint="RepVGG-A0 halves the input five times, e.g. 224 or 64")  # fmt: skip
    if not 0 < width <= 8:
        raise SpaceError(f"width={width!r} must be in (0, 8]", hint="e.g. 1.0 for RepVGG-A0's widths")
    widths = [_scaled(c, width) for c in WIDTHS]
    sizes = [input_size // 4, input_size // 8, input_size // 16]
    ops: list[OpSpec] = []
    for size, c in zip(sizes, widths, strict=True):
        ops += _site_ops(size, c)
    transitions = list(zip(sizes, widths, [*widths[1:], _scaled(LAST_WIDTH, width)], strict=True))
    for size, cin, cout in transitions:
        ops += _transition_ops(size, cin, cout)
    return ops

"""The op types an OpSpec may name, as data.

Each kind says which optional fields it uses (and so which appear in its key),
which ones it fixes, how channels and spatial size map from input to output, and
which kernels and strides make sense. `OpSpec` validates against this table, so
adding an op type is one entry here, one builder in `build.py` and one cost rule
in `cost.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

ChannelRule = Literal["free", "same", "double"]
SpatialRule = Literal["window", "global", "keep", "flat"]

ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "hswish", "sigmoid", "swish")
# What a re-parameterised block may end with (hwlab/reparam/blocks.py): FReLU has weights of its own.
BLOCK_ACTIVATIONS: tuple[str, ...] = ("relu", "relu6", "hswish", "frelu", "none")
OPTIONAL_FIELDS: tuple[str, ...] = ("kernel", "stride", "groups", "mid", "act")
# An op's numeric precision (hwlab/quant/precision.py says which a runtime can execute and what each costs).
PRECISIONS: tuple[str, ...] = ("fp32", "int8", "int4", "int2")


@dataclass(frozen=True)
class OpKind:
    """How one op type uses the fields of an OpSpec.

    key_fields: optional fields that vary for this op, in key order.
    implied: optional fields the op fixes; the value "cin" means "equal to cin".
    channels: "same" needs cout == cin, "double" needs cout == 2 * cin.
    spatial: "window" (same padding, out = ceil(in / stride)), "global" (-> 1x1),
        "keep" (out = in), "flat" (a 1x1 input to a 1x1 output, e.g. Linear).
    kernels / strides: allowed values; None means any odd kernel / any stride >= 1.
    acts: the activations ``act`` may name.
    """

    name: str
    description: str
    key_fields: tuple[str, ...] = ()
    implied: tuple[tuple[str, int | str], ...] = ()
    channels: ChannelRule = "free"
    spatial: SpatialRule = "keep"
    kernels: tuple[int, ...] | None = None
    strides: tuple[int, ...] | None = None
    num_inputs: int = 1
    acts: tuple[str, ...] = ACTIVATIONS

    def uses(self, name: str) -> bool:
        """Whether the optional field `name` means something for this op."""
        return name in self.key_fields or self.implied_value(name) is not None

    def implied_value(self, name: str) -> int | str | None:
        """The value this op fixes for field `name`, or None when it fixes none."""
        return dict(self.implied).get(name)


_SPOS_STRIDES = (1, 2)

OP_KINDS: MappingProxyType[str, OpKind] = MappingProxyType(
    {
        k.name: k
        for k in (
            OpKind("conv", "Conv2d with bias", ("kernel", "stride", "groups"), spatial="window"),
            OpKind(
                "dwconv",
                "depthwise Conv2d with bias (groups = cin = cout)",
                ("kernel", "stride"),
                implied=(("groups", "cin"),),
                channels="same",
                spatial="window",
            ),
            OpKind(
                "pwconv",
                "1x1 Conv2d with bias",
                ("stride", "groups"),
                implied=(("kernel", 1),),
                spatial="window",
            ),
            OpKind("fc", "Linear with bias on a flattened 1x1xC input", spatial="flat"),
            OpKind("maxpool", "MaxPool2d, same padding", ("kernel", "stride"), channels="same", spatial="window"),
            OpKind(
                "avgpool",
                "AvgPool2d, same padding, padding not counted",
                ("kernel", "stride"),
                channels="same",
                spatial="window",
            ),
            OpKind("gap", "global average pool to 1x1", channels="same", spatial="global"),
            OpKind("add", "elementwise sum of two inputs", channels="same", num_inputs=2),
            OpKind("concat", "channel concat of two inputs of cin each", channels="double", num_inputs=2),
            OpKind("act", "activation: " + "/".join(ACTIVATIONS), ("act",), channels="same"),
            OpKind("bn", "BatchNorm2d (inference)", channels="same"),
            OpKind("channel_shuffle", "ShuffleNet channel shuffle", ("groups",), channels="same"),
            OpKind(
                "spos_shufflenet",
                "SPOS ShuffleNetV2 choice block",
                ("mid", "kernel", "stride"),
                spatial="window",
                kernels=(3, 5, 7),
                strides=_SPOS_STRIDES,
            ),
            OpKind(
                "spos_xception",
                "SPOS Shuffle-Xception choice block",
                ("mid", "stride"),
                implied=(("kernel", 3),),
                spatial="window",
                strides=_SPOS_STRIDES,
            ),
            OpKind(
                "spos_stem",
                "SPOS stem: 3x3 conv + BN + ReLU",
                ("stride",),
                implied=(("kernel", 3),),
                spatial="window",
            ),
            OpKind("spos_last", "SPOS last 1x1 conv + BN + ReLU", implied=(("kernel", 1),), spatial="window"),
            # The blocks of hwlab/reparam: a train form and the deploy form it converts to.
            OpKind(
                "repvgg_block",
                "RepVGG block, train form: 3x3 + 1x1 conv-BN (+ identity BN when shapes allow), then act",
                ("stride", "act"),
                implied=(("kernel", 3),),
                spatial="window",
                acts=BLOCK_ACTIVATIONS,
            ),
            OpKind(
                "acnet_block",
                "ACNet block, train form: kxk + 1xk + kx1 conv-BN, then act",
                ("kernel", "stride", "act"),
                spatial="window",
                acts=BLOCK_ACTIVATIONS,
            ),
            OpKind(
                "conv_act",
                "kxk conv with bias, then act: the deploy form of RepVGG, ACNet and conv-BN blocks",
                ("kernel", "stride", "act"),
                spatial="window",
                acts=BLOCK_ACTIVATIONS,
            ),
            OpKind("frelu_train", "FReLU, train form: max(x, BN(DWConv3x3(x)))", channels="same"),
            OpKind("frelu", "FReLU, deploy form: max(x, DWConv3x3(x) + b)", channels="same"),
            OpKind(
                "weightnet",
                "WeightNet conv: weights from GAP -> FC(M*G) -> sigmoid -> grouped FC (G groups)",
                ("kernel", "stride", "groups", "mid"),
                spatial="window",
            ),
            OpKind(
                "se_conv",
                "kxk conv scaled per output channel by sigmoid(FC(GAP(x)))",
                ("kernel", "stride"),
                spatial="window",
            ),  # fmt: skip
            OpKind(
                "condconv",
                "CondConv: kxk conv mixing M expert kernels by sigmoid routing",
                ("kernel", "stride", "mid"),
                spatial="window",
            ),  # fmt: skip
        )
    }
)


def get_kind(name: str) -> OpKind | None:
    """The kind called `name`, or None."""
    return OP_KINDS.get(name)

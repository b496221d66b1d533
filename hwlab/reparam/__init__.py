"""The seed's design ideas as measurable blocks: re-parameterisation, FReLU and dynamic weights.

``hwlab.reparam.reparam(model)`` converts every re-parameterisable block (RepVGG, ACNet, conv-BN, FReLU)
to its deploy form; ``check_equivalence`` proves the converted model computes the same function.
``hwlab.reparam.nets`` builds whole networks from the blocks (RepVGG-A0-like, ACNet-ResNet-18-like).
"""

from __future__ import annotations

from hwlab.reparam.blocks import (
    BLOCK_ACTIVATIONS,
    BLOCK_TYPES,
    ACBlock,
    ConvBNBlock,
    FReLU,
    FReLUDeploy,
    RepBlock,
    RepVGGBlock,
    activation,
    make_block,
)
from hwlab.reparam.convert import (
    DEFAULT_TOLERANCE,
    Conversion,
    Equivalence,
    check_equivalence,
    reparam,
    reparam_with_report,
)
from hwlab.reparam.dynamic import CondConv, SEConv, WeightNetConv

__all__ = [
    "ACBlock",
    "BLOCK_ACTIVATIONS",
    "BLOCK_TYPES",
    "CondConv",
    "Conversion",
    "ConvBNBlock",
    "DEFAULT_TOLERANCE",
    "Equivalence",
    "FReLU",
    "FReLUDeploy",
    "RepBlock",
    "RepVGGBlock",
    "SEConv",
    "WeightNetConv",
    "activation",
    "check_equivalence",
    "make_block",
    "reparam",
    "reparam_with_report",
]

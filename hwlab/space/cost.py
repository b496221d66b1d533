"""Analytic MACs and parameter counts of an OpSpec.

Predictors and search constraints need these without building a module. MACs
count the multiply-accumulates of conv and linear layers only (the convention of
the ShuffleNet and SPOS papers, whose "FLOPs" are these MACs); pooling,
activations, BN, adds and shuffles count 0. Params count the learnable tensors
of the module that `build_module` makes (BN affine weights included, running
statistics not).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hwlab.space.opspec import OpSpec


def _conv(out_hw: int, cin: int, cout: int, kernel: int, groups: int = 1) -> int:
    return out_hw * kernel * kernel * (cin // groups) * cout


def _conv_params(cin: int, cout: int, kernel: int, groups: int = 1, bias: bool = False) -> int:
    return kernel * kernel * (cin // groups) * cout + (cout if bias else 0)


def _spos_branch_channels(spec: OpSpec) -> tuple[int, int]:
    """Input and output channels of a SPOS block's main branch."""
    branch_in = spec.cin // 2 if spec.stride == 1 else spec.cin
    return branch_in, spec.cout - branch_in


def _spos_proj(spec: OpSpec, out_hw: int) -> tuple[int, int]:
    """MACs and params of the stride-2 projection branch: dw kxk + BN + pw + BN + ReLU."""
    if spec.stride == 1:
        return 0, 0
    c, k = spec.cin, spec.kernel
    macs = _conv(out_hw, c, c, k, c) + _conv(out_hw, c, c, 1)
    params = _conv_params(c, c, k, c) + _conv_params(c, c, 1) + 4 * c
    return macs, params


def _spos_shufflenet(spec: OpSpec) -> tuple[int, int]:
    cin, cout = _spos_branch_channels(spec)
    mid, k = spec.mid, spec.kernel
    in_hw, out_hw = spec.input_h * spec.input_w, spec.output_h * spec.output_w
    macs = _conv(in_hw, cin, mid, 1) + _conv(out_hw, mid, mid, k, mid) + _conv(out_hw, mid, cout, 1)
    params = _conv_params(cin, mid, 1) + _conv_params(mid, mid, k, mid) + _conv_params(mid, cout, 1)
    params += 2 * (2 * mid + cout)
    proj_macs, proj_params = _spos_proj(spec, out_hw)
    return macs + proj_macs, params + proj_params


def _spos_xception(spec: OpSpec) -> tuple[int, int]:
    cin, cout = _spos_branch_channels(spec)
    mid = spec.mid
    out_hw = spec.output_h * spec.output_w
    macs = (
        _conv(out_hw, cin, cin, 3, cin)
        + _conv(out_hw, cin, mid, 1)
        + 2 * (_conv(out_hw, mid, mid, 3, mid))
        + _conv(out_hw, mid, mid, 1)
        + _conv(out_hw, mid, cout, 1)
    )
    params = (
        _conv_params(cin, cin, 3, cin)
        + _conv_params(cin, mid, 1)
        + 2 * _conv_params(mid, mid, 3, mid)
        + _conv_params(mid, mid, 1)
        + _conv_params(mid, cout, 1)
    )
    params += 2 * (cin + 4 * mid + cout)
    proj_macs, proj_params = _spos_proj(spec, out_hw)
    return macs + proj_macs, params + proj_params


def _act(spec: OpSpec, out_hw: int, deployed: bool = False) -> tuple[int, int]:
    """FReLU's depthwise 3x3 (train form: + BN; deploy form: + bias); other activations cost nothing."""
    if spec.act != "frelu":
        return 0, 0
    c = spec.cout
    return _conv(out_hw, c, c, 3, c), 9 * c + (c if deployed else 2 * c)


def _reparam_block(spec: OpSpec, out_hw: int) -> tuple[int, int]:
    """The blocks of hwlab/reparam: every branch's conv (train forms) or the one deployed conv."""
    cin, cout, k = spec.cin, spec.cout, spec.kernel
    act_macs, act_params = _act(spec, out_hw, deployed=spec.op == "conv_act")
    if spec.op == "repvgg_block":
        identity = 2 * cin if cin == cout and spec.stride == 1 else 0
        macs = _conv(out_hw, cin, cout, 3) + _conv(out_hw, cin, cout, 1)
        return macs + act_macs, _conv_params(cin, cout, 3) + _conv_params(
            cin, cout, 1
        ) + 4 * cout + identity + act_params
    if spec.op == "acnet_block":
        macs = out_hw * cin * cout * (k * k + 2 * k)
        return macs + act_macs, cin * cout * (k * k + 2 * k) + 6 * cout + act_params
    if spec.op == "conv_act":
        return _conv(out_hw, cin, cout, k) + act_macs, _conv_params(cin, cout, k, bias=True) + act_params
    hw = spec.input_h * spec.input_w
    if spec.op in ("frelu_train", "frelu"):
        params = 9 * cin + (2 * cin if spec.op == "frelu_train" else cin)
        return _conv(hw, cin, cin, 3, cin), params
    weights = cout * cin * k * k
    if spec.op == "weightnet":
        m, g = spec.mid, spec.groups
        return cin * m * g + m * weights + _conv(out_hw, cin, cout, k), cin * m * g + m * g + m * weights
    if spec.op == "se_conv":
        return cin * cout + _conv(out_hw, cin, cout, k), weights + cin * cout + cout
    # condconv: routing, mixing the experts' kernels, the conv
    e = spec.mid
    return cin * e + e * weights + _conv(out_hw, cin, cout, k), cin * e + e + e * weights


REPARAM_OPS = ("repvgg_block", "acnet_block", "conv_act", "frelu_train", "frelu", "weightnet", "se_conv", "condconv")


def _counts(spec: OpSpec) -> tuple[int, int]:
    op, cin, cout = spec.op, spec.cin, spec.cout
    out_hw = spec.output_h * spec.output_w
    if op in ("conv", "dwconv", "pwconv"):
        return (
            _conv(out_hw, cin, cout, spec.kernel, spec.groups),
            _conv_params(cin, cout, spec.kernel, spec.groups, bias=True),
        )
    if op == "fc":
        return cin * cout, cin * cout + cout
    if op == "bn":
        return 0, 2 * cin
    if op in ("spos_stem", "spos_last"):
        return _conv(out_hw, cin, cout, spec.kernel), _conv_params(cin, cout, spec.kernel) + 2 * cout
    if op == "spos_shufflenet":
        return _spos_shufflenet(spec)
    if op == "spos_xception":
        return _spos_xception(spec)
    if op in REPARAM_OPS:
        return _reparam_block(spec, out_hw)
    return 0, 0


def macs(spec: OpSpec) -> int:
    """Multiply-accumulates of the conv and linear layers of `spec`."""
    return _counts(spec)[0]


def params(spec: OpSpec) -> int:
    """Learnable parameters of the module built for `spec`."""
    return _counts(spec)[1]

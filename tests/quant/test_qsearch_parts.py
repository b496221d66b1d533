"""Bit-width search parts: BitOps, fake quantisation against onnxruntime's int8 conv, composition, greedy and ILP."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import nn

from hwlab.quant.boundary import boundary_key
from hwlab.quant.cost import ComposedLatency, bitops, layer_bitops
from hwlab.quant.fakequant import QuantNet, fake_quant_weight
from hwlab.quant.network import GRAPH_INPUT, Layer
from hwlab.quant.qsearch import Budget, Problem, greedy, ilp
from hwlab.space.opspec import OpSpec


def test_bitops_exact_on_hand_computed_cases():
    assert layer_bitops(1000, "fp32") == 1000 * 32 * 32
    assert layer_bitops(1000, "int8") == 64_000
    assert layer_bitops(10, "int4") == 160 and layer_bitops(10, "int2") == 40
    conv = OpSpec("conv", 8, 8, 4, 6, kernel=3)  # 8*8*6*4*9 = 13824 MACs
    fc = OpSpec("fc", 1, 1, 6, 2)
    layers = [Layer(0, "a", conv, 13824, (GRAPH_INPUT,), (1,)), Layer(1, "b", fc, 12, (0,), (GRAPH_INPUT,))]
    assert bitops(layers, ["int8", "int2"]) == 13824 * 64 + 12 * 4


def test_weights_are_quantised_per_output_channel_symmetrically():
    w = torch.tensor([[1.0, -0.6, 0.25], [10.0, 3.0, -10.0]]).reshape(2, 3, 1, 1)
    q = fake_quant_weight(w, 4)  # 7 levels each side
    assert torch.allclose(q[0].flatten(), torch.tensor([1.0, -4 / 7, 2 / 7]), atol=1e-6)
    assert torch.allclose(q[1].flatten(), torch.tensor([10.0, 20 / 7, -10.0]), atol=1e-5)


def test_8bit_fake_quantisation_matches_onnxruntime_int8_conv(tmp_path):
    """The fake-quantised conv (7-bit weights as the deployed recipe, uint8 input over the calibrated range)
    against onnxruntime's QLinearConv of the same layer: within 1% of the output's range (fp32 vs int8: more)."""
    import onnxruntime as ort

    from hwlab.quant.onnx_qdq import quantize_onnx

    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, padding=1)
    net = nn.Sequential(conv).eval()
    x = torch.randn(8, 16, 14, 14)
    fp32 = tmp_path / "conv.onnx"
    torch.onnx.export(net, x[:1], str(fp32), input_names=["x"], output_names=["y"], dynamo=False)
    quantize_onnx(fp32, tmp_path / "int8.onnx", [{"x": x[i : i + 1].numpy()} for i in range(8)])
    session = ort.InferenceSession(str(tmp_path / "int8.onnx"), providers=["CPUExecutionProvider"])
    got = np.concatenate([session.run(None, {"x": x[i : i + 1].numpy()})[0] for i in range(8)])
    qnet = QuantNet(net, x[:1], ["fp32", "int8"])
    qnet.calibrate([x])
    with torch.no_grad():
        fake = qnet(x, ["int8"]).numpy()
        exact = qnet(x, ["fp32"]).numpy()
    span = exact.max() - exact.min()
    assert np.abs(fake - got).max() / span < 0.01
    assert np.abs(exact - got).max() / span > np.abs(fake - got).max() / span  # fake quant is closer than fp32


def _chain(deltas, q_in, dq_out) -> ComposedLatency:
    """Three layers in a chain with hand-set costs (via the measured-row constructor)."""
    specs = [OpSpec("conv", 8, 8, 4, 4, kernel=3), OpSpec("conv", 8, 8, 4, 4, kernel=1), OpSpec("fc", 1, 1, 4, 2)]
    layers = [Layer(0, "a", specs[0], 100, (GRAPH_INPUT,), (1,)), Layer(1, "b", specs[1], 100, (0,), (2,)),
              Layer(2, "c", specs[2], 8, (1,), (GRAPH_INPUT,))]  # fmt: skip
    fixed = 0.001
    ms = {boundary_key("quantize", 2, 1, 1): fixed, boundary_key("qdq", 2, 1, 1): fixed + 0.0}
    for spec, d in zip(specs, deltas, strict=True):
        ms[spec.key] = 1.0
        ms[spec.key + "-prec:int8"] = 1.0 + d
    shapes = {(4, 8, 8): (q_in[0], dq_out[0]), (4, 1, 1): (q_in[2], dq_out[1])}
    for (c, h, w), (q, dq) in shapes.items():
        ms[boundary_key("quantize", c, h, w)] = q + fixed
        ms[boundary_key("qdq", c, h, w)] = q + fixed + dq
    return ComposedLatency.from_rows(layers, 10.0, ms)


def test_composition_pays_boundaries_only_at_switches():
    lat = _chain([-1.0, -0.5, 0.2], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05])
    assert lat(["fp32"] * 3) == pytest.approx(10.0)
    assert lat(["int8", "fp32", "fp32"]) == pytest.approx(9.0)  # its own Q and DQ are in its row
    # Both int8: layer 1's input Q (0.1) and layer 0's output DQ (0.05) are not paid.
    assert lat(["int8", "int8", "fp32"]) == pytest.approx(10.0 - 1.0 - 0.5 - 0.1 - 0.05)
    assert lat(["int8", "int4", "fp32"]) is None  # no runtime runs int4: no latency


def test_greedy_and_ilp_find_the_known_optimum_on_a_tiny_problem():
    """Three layers, fp32 network 10 ms; int8 saves 1.0, 0.5 and -0.2 ms (the classifier is slower at int8),
    sensitivities 0.1, 0.5, 0.01. Budget 8.5 ms: only layers 0 and 1 both at int8 fit (8.35 ms with the
    boundary between them saved; 8.4 with the classifier too); the classifier at int8 costs accuracy and
    time, so the optimum leaves it at fp32."""
    lat = _chain([-1.0, -0.5, 0.2], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05])
    sens = [{"fp32": 0.0, "int8": 0.1}, {"fp32": 0.0, "int8": 0.5}, {"fp32": 0.0, "int8": 0.01}]
    problem = Problem(lat.layers, ("fp32", "int8"), Budget(latency_ms=8.5), lat)
    best = ("int8", "int8", "fp32")
    assert ilp(problem, sens) == best
    assert greedy(problem, sens) == best
    # A looser budget (9.6): only layer 0 need be int8; the ILP takes the least sensitive way there.
    loose = Problem(lat.layers, ("fp32", "int8"), Budget(latency_ms=9.6), lat)
    assert ilp(loose, sens) == ("int8", "fp32", "fp32")
    assert ilp(Problem(lat.layers, ("fp32", "int8"), Budget(latency_ms=5.0), lat), sens) is None  # infeasible


def test_ilp_under_a_bitops_budget_uses_the_low_widths():
    lat = _chain([-1.0, -0.5, 0.2], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05])
    layer = {"fp32": 0, "int8": 0.1, "int4": 0.3, "int2": 0.9}
    sens = [layer, layer, {"fp32": 0, "int8": 0.1, "int4": 0.2, "int2": 0.4}]
    # 100 MACs at int4 = 1600 BitOps, int8 = 6400; the fc's 8 MACs at int8 = 512. Budget 8.6e-6 G: 1600+6400+512.
    problem = Problem(lat.layers, ("fp32", "int8", "int4", "int2"), Budget(bitops_g=8.6e-6), None)
    picked = ilp(problem, sens)
    assert picked is not None and sorted(picked[:2]) == ["int4", "int8"] and picked[2] == "int8"
    assert bitops(lat.layers, picked) <= 8.6e3


def test_the_composition_fits_its_scale_and_boundary_cost_on_measured_networks():
    """Two effects single ops miss, fitted on measured networks: the int8 terms' scale and a cost per boundary."""
    raw = _chain([-1.0, -0.5, 0.2], [0.1, 0.1, 0.1], [0.05, 0.05, 0.05])
    assert raw.terms(["int8"] * 3) == (pytest.approx(-1.3 - 0.3), 2)  # two inner boundaries saved, two left
    assert raw.terms(["int8", "fp32", "int8"]) == (pytest.approx(-0.8), 4)
    truth = replace(raw, scale=0.5, per_boundary_ms=0.02)
    measured = [(a, truth(a)) for a in (("int8",) * 3, ("int8", "fp32", "int8"), ("fp32", "int8", "fp32"))]
    fitted = raw.fitted(measured)
    assert fitted.scale == pytest.approx(0.5) and fitted.per_boundary_ms == pytest.approx(0.02)
    assert fitted(["int8", "int8", "fp32"]) == pytest.approx(10.0 + 0.5 * (-1.5 - 0.15) + 0.02 * 2)
    assert fitted(["fp32"] * 3) == pytest.approx(10.0)

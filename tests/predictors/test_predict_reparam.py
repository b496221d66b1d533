"""The blocks of hwlab/reparam as the predictor sees them: each export split into known kernels (a conv whose
weight the graph computes is a ``dynconv``), the runtime's graph of them mapped, and a prediction that covers
every kernel or names the type it lacks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from onnx_graphs import make
from test_runtime_kernels import capture
from torch import nn

from hwlab.errors import PredictorError, UnknownKernelError
from hwlab.export import export_module
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import stopping
from hwlab.predictors.evaluate import Evaluation
from hwlab.predictors.fusion import PAIRS, measure_fusion_rules
from hwlab.predictors.graph import module_kernels, onnx_kernels
from hwlab.predictors.graph_load import build_view, load_model
from hwlab.predictors.kernelgen import kernel_module, kernel_of
from hwlab.predictors.kernels import FEATURES, FusionRules, Kernel
from hwlab.predictors.predictor import Predictor
from hwlab.predictors.regress import fit_kernel_regressor
from hwlab.predictors.runtime_kernels import LAYOUT_DOMAIN, runtime_split
from hwlab.predictors.store import load_predictor, save_predictor
from hwlab.profile import ProfileRequest
from hwlab.reparam import ACBlock, CondConv, ConvBNBlock, FReLU, RepVGGBlock, SEConv, WeightNetConv, reparam
from hwlab.reparam.nets import randomise_bn
from hwlab.space.build import seeded_rng

NONE = FusionRules(frozenset())
# What onnxruntime's graphs show for these blocks (hwlab predictors fit learns them): a conv absorbs its BN,
# ReLU and the sigmoid of an attention FC; a conv of computed weights absorbs a ReLU too.
ORT = FusionRules(frozenset({("conv", "bn"), ("conv", "relu"), ("dwconv", "bn"), ("conv", "sigmoid"),
                             ("dynconv", "relu")}))  # fmt: skip
X = (1, 16, 14, 14)


@pytest.fixture(autouse=True)
def _cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "cache"))


def _built(make_module) -> nn.Module:  # type: ignore[no-untyped-def]
    with seeded_rng(0):
        return randomise_bn(make_module()).eval()


def types(module: nn.Module, rules: FusionRules = NONE, shape: tuple[int, ...] = X) -> list[str]:
    return [k.type for k in module_kernels(module, torch.randn(shape), rules)]


@pytest.mark.parametrize(
    ("block", "train", "deploy", "deploy_fused"),
    [
        (lambda: RepVGGBlock(16, 16), ["conv", "conv", "bn", "add", "add", "relu"], ["conv", "relu"], ["conv+relu"]),
        (lambda: RepVGGBlock(16, 32, stride=2), ["conv", "conv", "add", "relu"], ["conv", "relu"], ["conv+relu"]),
        (lambda: ACBlock(16, 16), ["conv", "conv", "conv", "add", "add", "relu"], ["conv", "relu"], ["conv+relu"]),
        (lambda: ConvBNBlock(16, 16), ["conv", "relu"], ["conv", "relu"], ["conv+relu"]),
        # FReLU: max(x, BN(DWConv(x))); torch's export folds an eval-mode BN into the conv before it, so the
        # train form exports as its deploy form does: a depthwise conv with a bias, then Max.
        (lambda: FReLU(16), ["dwconv", "minmax"], ["dwconv", "minmax"], ["dwconv", "minmax"]),
        (lambda: RepVGGBlock(16, 16, act="frelu"), ["conv", "conv", "bn", "add", "add", "dwconv", "minmax"],
         ["conv", "dwconv", "minmax"], ["conv", "dwconv", "minmax"]),
    ],
)  # fmt: skip
def test_each_block_splits_into_known_kernels_in_both_forms(  # type: ignore[no-untyped-def]
    block, train: list[str], deploy: list[str], deploy_fused: list[str]
) -> None:
    module = _built(block)
    assert types(module) == train
    assert types(reparam(module)) == deploy
    assert types(reparam(module), ORT) == deploy_fused


def test_frelu_with_its_bn_in_the_graph_fuses_the_bn_where_the_runtime_does() -> None:
    """Another exporter may keep FReLU's BN: DWConv -> BatchNormalization -> Max. onnxruntime folds the BN into
    the conv (ConvBNFusion), so under its rules it is one kernel; unfused it is its own."""
    rng = np.random.default_rng(0)
    c = 8
    w = {"W": rng.standard_normal((c, 1, 3, 3)).astype(np.float32), "s": np.ones(c, np.float32),
         "b": np.zeros(c, np.float32), "m": np.zeros(c, np.float32), "v": np.ones(c, np.float32)}  # fmt: skip
    nodes = [
        helper.make_node("Conv", ["x", "W"], ["d"], name="dw", pads=[1] * 4, group=c),
        helper.make_node("BatchNormalization", ["d", "s", "b", "m", "v"], ["n"], name="bn"),
        helper.make_node("Max", ["x", "n"], ["y"], name="max"),
    ]
    model = make(nodes, {"x": [1, c, 8, 8]}, ["y"], w)
    assert [k.type for k in onnx_kernels(model, NONE)] == ["dwconv", "bn", "minmax"]
    fused, maximum = onnx_kernels(model, ORT)
    assert (fused.type, fused.nodes, maximum.type) == ("dwconv+bn", ("dw", "bn"), "minmax")
    assert fused.features["groups"] == c and fused.features["params"] == c * 9 + 4 * c


def test_a_conv_whose_weight_the_graph_computes_is_a_dynconv_with_conv_features() -> None:
    (gap, attention, generate, *between, conv, after) = module_kernels(_built(lambda: WeightNetConv(16, 24)),
                                                                       torch.randn(X), ORT)  # fmt: skip
    assert (gap.type, attention.type, generate.type, conv.type) == ("gap", "conv+sigmoid", "conv", "dynconv")
    assert [k.type for k in between] == ["reshape", "reshape"] and after.type == "reshape"
    f = conv.features
    assert (f["h"], f["w"], f["cin"], f["cout"], f["kernel"], f["stride"], f["groups"]) == (14, 14, 16, 24, 3, 1, 1)
    assert f["flops"] == 2 * (14 * 14 * 24) * 16 * 9  # as a conv: 2 x MACs
    assert f["params"] == 0  # its weight is no constant: it is read on every call
    assert f["bytes_in"] == 4 * (16 * 14 * 14 + 24 * 16 * 9) and f["bytes_out"] == 4 * 24 * 14 * 14
    assert generate.features["groups"] == 2  # WeightNet's grouped FC, a 1x1 conv on the pooled vector


def test_condconv_mixes_its_experts_with_an_fc_and_se_has_no_dynamic_conv() -> None:
    cond = types(_built(lambda: CondConv(16, 16)), ORT)
    assert cond.count("dynconv") == 1 and "fc" in cond and "conv+sigmoid" in cond
    assert types(_built(lambda: SEConv(16, 16)), ORT) == ["conv", "gap", "conv+sigmoid", "mul"]


def test_a_weight_folded_from_constants_is_static_and_a_dynconv_absorbs_its_relu() -> None:
    w = {"W": np.zeros((4, 4, 3, 3), np.float32), "two": np.array(2.0, np.float32)}
    static = make([helper.make_node("Mul", ["W", "two"], ["Wc"], name="scale"),
                   helper.make_node("Conv", ["x", "Wc"], ["y"], name="conv", pads=[1] * 4)],
                  {"x": [1, 4, 8, 8]}, ["y"], w)  # fmt: skip
    assert [k.type for k in onnx_kernels(static, NONE)] == ["conv"]
    dynamic = make([helper.make_node("Conv", ["x", "Wx"], ["c"], name="conv", pads=[1] * 4),
                    helper.make_node("Relu", ["c"], ["y"], name="relu")],
                   {"x": [1, 4, 8, 8], "Wx": [4, 4, 3, 3]}, ["y"])  # fmt: skip
    [kernel] = onnx_kernels(dynamic, ORT)
    assert kernel.type == "dynconv+relu" and kernel.features["flops"] == 2 * 256 * 36 + 256
    assert FusionRules.from_json(ORT.to_json()) == ORT  # a predictor's rules may name the new category


def test_kernelgen_builds_a_dynconv_whose_weight_is_a_model_input() -> None:
    features = {"h": 12, "w": 12, "cin": 8, "cout": 16, "kernel": 3, "stride": 2, "groups": 1}
    module, inputs = kernel_module("dynconv+relu", features)
    assert [tuple(x.shape) for x in inputs] == [(1, 8, 12, 12), (16, 8, 3, 3)]
    kernel = kernel_of(module, inputs, ORT, "dynconv+relu")
    assert kernel is not None and (kernel.features["cout"], kernel.features["stride"]) == (16, 2)


def _runtime_model() -> nn.Module:
    """conv+relu (blocked layout), a RepVGG train block whose identity BN the layout pass runs as a 1x1
    depthwise conv, a WeightNet conv, a ReLU."""
    return _built(lambda: nn.Sequential(nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), RepVGGBlock(16, 16),
                                        WeightNetConv(16, 16), nn.ReLU()))  # fmt: skip


def test_the_runtime_runs_a_dynconv_as_a_plain_conv_and_its_graph_maps_onto_the_model(tmp_path: Path) -> None:
    path = export_module(_runtime_model(), torch.randn(1, 16, 28, 28), "onnx", name="reparam-runtime").path
    graph = capture(tmp_path, onnx.load(path))["runtime_graph"]
    view = build_view(load_model(path))
    split = runtime_split(view, graph)
    assert split.complete, split.unplaced
    [dynamic] = [k for k in onnx_kernels(path, NONE) if k.type == "dynconv"]
    index = {name: i for i, name in enumerate(view.names)}
    [unit] = [u for u in split.units if index[dynamic.nodes[0]] in u.covers]
    ran = {n["name"]: n for n in graph["nodes"]}[unit.name]
    # Its weight is computed, so the layout pass leaves it alone: a plain Conv, no blocked layout around it.
    assert (ran["op"], ran["domain"], unit.covers, unit.layout_nodes) == ("Conv", "", {index[dynamic.nodes[0]]}, 0)
    if any(n["domain"] == LAYOUT_DOMAIN and n["name"].endswith("_bn_nchwc") for n in graph["nodes"]):
        [bn] = [u for u in split.units if u.name.endswith("_bn_nchwc")]
        assert any(view.nodes[i].op_type == "BatchNormalization" for i in bn.covers)


def test_the_fusion_probe_decides_dynconv_relu_from_the_runtimes_graph(tmp_path: Path) -> None:
    assert ("dynconv", "relu") in PAIRS
    request = ProfileRequest(
        device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="fusion", tables_root=tmp_path / "t",
        settings=stopping(min_time_s=0.01, max_time_s=0.1, min_count=3),
    )  # fmt: skip
    rules = measure_fusion_rules(request, pairs=[("dynconv", "relu")], shapes=[(14, 8)])
    assert ("dynconv", "relu") in rules.seen_in_graph and rules.fuses("dynconv", "relu")  # one FusedConv


def _predictor(folder: Path, kernel_types: set[str]) -> Predictor:
    """A predictor of synthetic regressors (latency proportional to flops) for ``kernel_types``."""
    rng = np.random.default_rng(0)
    X = rng.integers(1, 64, (30, len(FEATURES))).astype(np.float64)
    X[:, FEATURES.index("flops")] = rng.uniform(1e4, 1e8, len(X))
    y = 1e-8 * X[:, FEATURES.index("flops")] + 0.01
    rf = {"name": "rf-10", "family": "random_forest", "n_estimators": 10, "max_depth": None, "min_samples_leaf": 1}
    fitted = fit_kernel_regressor(X, y, candidates=(rf,))
    save_predictor(
        folder, dict.fromkeys(sorted(kernel_types), fitted), ORT, {"device": "local", "backend": "onnxruntime"}
    )
    return Predictor(load_predictor(folder))


def test_a_model_of_these_blocks_is_predicted_whole_or_the_missing_type_is_named(tmp_path: Path) -> None:
    with seeded_rng(0):
        net = nn.Sequential(RepVGGBlock(3, 16, 2, act="frelu"), RepVGGBlock(16, 16), ACBlock(16, 16),
                            WeightNetConv(16, 16), nn.ReLU(), SEConv(16, 16), CondConv(16, 16),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10))  # fmt: skip
    randomise_bn(net).eval()
    kernels: dict[str, list[Kernel]] = {}
    for form, module in (("train", net), ("deploy", reparam(net))):
        path = export_module(module, torch.randn(1, 3, 32, 32), "onnx", name=f"reparam-{form}").path
        kernels[form] = onnx_kernels(path, ORT)
    every = {k.type for found in kernels.values() for k in found}
    assert {"dynconv", "dwconv", "minmax", "conv+sigmoid", "mul", "fc", "bn", "add"} <= every
    whole = _predictor(tmp_path / "whole", every)
    for found in kernels.values():
        prediction = whole.predict_kernels(found)
        assert not prediction.missing and len(prediction.kernels) == len(found)
        assert all(ms > 0 for _, ms in prediction.kernels)
    lacking = _predictor(tmp_path / "lacking", every - {"dynconv"})
    with pytest.raises(UnknownKernelError, match="dynconv"):
        lacking.predict_kernels(kernels["deploy"])
    lower = lacking.predict_kernels(kernels["deploy"], allow_unknown=True)
    assert set(lower.missing) == {"dynconv"} and lower.lower_bound


def test_the_evaluation_scores_every_family_apart() -> None:
    result = Evaluation(
        ["s1", "m1", "r1", "r2"], ["spos", "families", "families", "families"], np.array([1.0, 2.0, 4.0, 8.0]),
        {"hwlab": np.array([1.0, 2.0, 4.2, 7.6])}, ["spos", "mobilenetv2", "reparamnet", "reparamnet"],
        {"r2": ["dynconv"]},
    )  # fmt: skip
    by_family = result.family_scores()["hwlab"]
    assert list(by_family) == ["spos", "mobilenetv2", "reparamnet"]
    assert by_family["reparamnet"].rmspe == pytest.approx(0.05) and by_family["reparamnet"].within_10 == 1.0
    assert by_family["mobilenetv2"].rmse_ms == 0.0
    assert (result.count("families"), result.count("reparamnet"), result.count("spos")) == (3, 2, 1)
    report = result.to_json()
    assert report["family_scores"]["hwlab"]["reparamnet"]["rmspe"] == pytest.approx(0.05)  # type: ignore[index]
    assert [m["family"] for m in report["models"]] == result.families  # type: ignore[union-attr]
    # A model predicted without a kernel type says so in the report; the others carry no entry.
    assert [m.get("missing") for m in report["models"]] == [None, None, None, ["dynconv"]]  # type: ignore[union-attr]
    assert set(result.scores()["hwlab"]) == {"spos", "families"}  # the two sets the CLI prints, unchanged


def test_a_repvgg_search_prices_the_deployed_network_with_the_predictor(tmp_path: Path) -> None:
    import random

    from hwlab.export import export_spec
    from hwlab.reparam.latency import RepPredictorLatency
    from hwlab.reparam.space import RepArch, RepSpace

    space = RepSpace(16, 10, 8, ((8, 16), (16, 24)), (1, 2))
    reference = space.sample(random.Random(0))
    deployed = reparam(space.network(reference))
    whole = export_module(deployed, torch.randn(1, 3, 16, 16), "onnx", name="reference").path
    kinds = {k.type for op in space.all_deploy_ops() for k in onnx_kernels(export_spec(op, "onnx").path, ORT)}
    kinds |= {k.type for k in onnx_kernels(whole, ORT)}
    folder = tmp_path / "predictors" / "local" / "onnxruntime"
    predictor = _predictor(folder, kinds)
    # Synthetic regressors fitted on random features cover none of this space: refused, unless forced.
    with pytest.raises(PredictorError, match="do not cover 100% of this space"):
        RepPredictorLatency(space, "local", "onnxruntime", tmp_path / "predictors")
    latency = RepPredictorLatency(space, "local", "onnxruntime", tmp_path / "predictors", force=True)
    assert latency.note and "unchecked" in latency.note
    # The reference network is priced as the predictor prices it whole; block kinds do not change a price.
    assert latency([reference])[0] == pytest.approx(predictor.predict_onnx(whole).total_ms)
    rng = random.Random(1)
    for _ in range(5):
        arch = space.sample(rng)
        plain = RepArch(arch.depths, arch.widths, tuple(("conv", act) for _, act in arch.genes))
        assert latency([arch])[0] == latency([plain])[0] > 0

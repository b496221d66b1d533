"""A predictor fitted for real on this machine (tiny plan), then used: CLI, API, fast path, errors."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import hwlab
from hwlab.cli import main
from hwlab.errors import PredictorError, UnknownKernelError, UnknownOpError
from hwlab.export import export_module
from hwlab.inventory import LOCAL_DEFAULT
from hwlab.measure.settings import RoundRule, stopping
from hwlab.predictors.fastpath import SposLatencyTable
from hwlab.predictors.kernels import FusionRules
from hwlab.predictors.predictor import Overhead, Predictor
from hwlab.predictors.regress import CANDIDATES
from hwlab.predictors.shapes import SposShape
from hwlab.predictors.train import FitPlan, fit_in_graph_overhead, fit_overhead, fit_predictor
from hwlab.profile import ProfileRequest
from hwlab.tables import LookupTable
from hwlab.zoo import SposNet, sample_family
from hwlab.zoo.blocks import ZeroPad

# Three rounds at least, four at most (the default 10-40 is for figures): what is tested is the path.
QUICK = replace(
    stopping(min_time_s=0.01, max_time_s=0.15, ci_rel=0.05),
    rounds=RoundRule(min_rounds=3, max_rounds=4, max_time_s=0.15, ci_rel=0.05),
)
# Kernels measured alone (the path of runtimes that show no graph); test_predict_ingraph.py fits from graphs.
PLAN = FitPlan(spos_shapes=(SposShape(32, 1.0),), spos_models=2, family_models=1, calibration_models=1,
               in_graph=False, adaptive_rounds=1, neighbours=1, adaptive_limit=8, kernel_settings=QUICK,
               model_settings=QUICK, candidates=CANDIDATES[:1])  # fmt: skip
# Fixed rules, so which kernels exist does not hang on timings near the noise (the probe that measures
# rules is tested in test_predict_fusion.py): conv and dwconv absorb their BN and activation, nothing else.
RULES = FusionRules(frozenset({("conv", "bn"), ("conv", "relu"), ("dwconv", "bn"), ("dwconv", "relu")}))


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Predictor]:
    home = tmp_path_factory.mktemp("fit")
    mp = pytest.MonkeyPatch()
    mp.setenv("HWLAB_CACHE", str(home / "cache"))
    base = ProfileRequest(device=LOCAL_DEFAULT, backend="onnxruntime", specs=[], space="", tables_root=home / "t")
    predictor = fit_predictor(base, PLAN, root=home / "p", say=lambda _: None, rules=RULES)
    yield home / "t", home / "p", predictor
    mp.undo()


def test_fit_measures_into_tables_and_saves_with_provenance(fitted) -> None:  # type: ignore[no-untyped-def]
    tables, root, predictor = fitted
    types = set(predictor.loaded.kernel_types)
    assert {"concat", "gather", "transpose", "conv+relu", "dwconv"} <= types, types
    assert predictor.rules == RULES
    meta = predictor.loaded.meta
    kernels = LookupTable(Path(meta["tables"]["kernels"]["path"]))
    failed = [(r["key"], r["error"]) for r in kernels if r["status"] != "ok"]
    assert len(kernels) > 20 and not failed, failed
    assert len(meta["tables"]["kernels"]["sha256"]) == 64
    assert set(meta["overhead"]) == {"per_kernel_ms", "fixed_ms", "floor_ms", "kernel_floor_ms"}
    assert meta["targets"] == "standalone" and meta["overhead"]["kernel_floor_ms"] is None
    assert (root / "local" / "onnxruntime" / "predictor.json").exists()


def test_predict_cli_breakdown_adds_up(fitted, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    _, root, predictor = fitted
    model = sample_family("resnet", 1, seed=77)[0]
    path = export_module(model.build(), torch.randn(model.input_shape), "onnx", name=model.name).path
    assert main(["predict", str(path), "--predictors-dir", str(root), "--json", "--allow-unknown"]) == 0
    (report,) = json.loads(capsys.readouterr().out)
    assert report["backend"] == "onnxruntime"
    assert report["latency_ms"] == pytest.approx(
        sum(k["latency_ms"] for k in report["kernels"]) + report["overhead_ms"]
    )
    assert any(k["type"].startswith("conv") for k in report["kernels"])
    api = hwlab.predict(model.build(), example_inputs=torch.randn(model.input_shape), root=root, allow_unknown=True)
    assert api.total_ms == pytest.approx(report["latency_ms"])


def test_unknown_kernel_type_is_an_error_that_names_it(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 8, 4, 4])
    nodes = [helper.make_node("Sigmoid", ["x"], ["s"], name="s"), helper.make_node("Mul", ["x", "s"], ["y"], name="m")]
    path = tmp_path / "swish.onnx"
    onnx.save(
        helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)]), path
    )
    if "swish" in predictor.loaded.kernel_types:
        pytest.skip("this fit happened to train a swish regressor")
    with pytest.raises(UnknownKernelError, match="swish"):
        predictor.predict_onnx(path)
    lower = predictor.predict_onnx(path, allow_unknown=True)
    assert lower.lower_bound and lower.missing == ["swish"]


class _Two(torch.nn.Module):
    """A binary op of two model inputs, so nothing but the op runs."""

    def __init__(self, op) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.op = op

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.op(a, b)


class _One(_Two):
    def forward(self, a: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return self.op(a)


X = torch.zeros(1, 8, 8, 8)
SCALE = torch.ones(1, 8, 1, 1)
nn = torch.nn
F = torch.nn.functional
# Every ONNX op type torch exports for common vision CNNs, as a model of that op alone: (op type, module, inputs).
ONE_OP_MODELS = [
    ("Conv", nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2), (X,)),
    ("ConvTranspose", nn.ConvTranspose2d(8, 4, 2, 2), (X,)),
    ("Gemm", nn.Linear(64, 32), (torch.zeros(1, 64),)),
    ("MatMul", _Two(torch.matmul), (torch.zeros(1, 16, 8), torch.zeros(1, 8, 16))),
    ("BatchNormalization", nn.BatchNorm2d(8).eval(), (X,)),
    ("Relu", nn.ReLU(), (X,)),
    ("Clip", nn.ReLU6(), (X,)),
    ("Clip", nn.Hardtanh(-1.0, 1.0), (X,)),
    ("LeakyRelu", nn.LeakyReLU(0.1), (X,)),
    ("PRelu", nn.PReLU(8), (X,)),
    ("Sigmoid", nn.Sigmoid(), (X,)),
    ("HardSigmoid", nn.Hardsigmoid(), (X,)),
    ("HardSwish", nn.Hardswish(), (X,)),
    ("Tanh", nn.Tanh(), (X,)),
    ("Max", _Two(torch.maximum), (X, X)),
    ("Min", _Two(torch.minimum), (X, X)),
    ("Add", _Two(torch.add), (X, X)),
    ("Sub", _Two(torch.sub), (X, X)),
    ("Mul", _Two(torch.mul), (X, SCALE)),
    ("Div", _Two(torch.div), (X, SCALE)),
    ("Concat", _Two(lambda a, b: torch.cat([a, b], 1)), (X, X)),
    ("Split", _One(lambda a: torch.split(a, [4, 4], 1)), (X,)),
    ("Slice", _One(lambda a: a[:, :4]), (X,)),
    ("Pad", ZeroPad(1), (X,)),
    ("MaxPool", nn.MaxPool2d(3, 2, 1), (X,)),
    ("AveragePool", nn.AvgPool2d(3, 1, 1, count_include_pad=False), (X,)),
    ("GlobalAveragePool", nn.AdaptiveAvgPool2d(1), (X,)),
    ("ReduceMean", _One(lambda a: a.mean(1, keepdim=True)), (X,)),
    ("Resize", _One(lambda a: F.interpolate(a, size=(16, 16), mode="nearest")), (X,)),
    ("Reshape", _One(lambda a: a.reshape(1, 8, 64)), (X,)),
    ("Flatten", nn.Flatten(), (X,)),
    ("Transpose", _One(lambda a: a.transpose(2, 3)), (X,)),
    ("Softmax", _One(lambda a: torch.softmax(a, 1)), (X,)),
]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_every_common_cnn_op_alone_is_predicted(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    assert not unpredicted_ops(predictor)


def unpredicted_ops(predictor: Predictor) -> dict[str, str]:
    """Each op of ONE_OP_MODELS whose one-op model cannot be predicted, with the error (every op is tried)."""
    failed = {}
    for i, (op_type, module, inputs) in enumerate(ONE_OP_MODELS):
        path = export_module(module, inputs, "onnx", name=f"one-{op_type}-{i}").path
        assert op_type in {n.op_type for n in onnx.load(path).graph.node}, op_type
        try:
            prediction = predictor.predict_onnx(path)
        except Exception as err:  # collected: one assert naming every op that fails
            failed[op_type] = str(err)
            continue
        assert prediction.total_ms >= predictor.overhead.floor_ms > 0
    return failed


def test_an_op_outside_the_list_is_an_error_naming_op_and_node(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    path = export_module(_One(torch.erf), (X,), "onnx", name="one-erf").path
    with pytest.raises(UnknownOpError, match=r"Erf \(node '/Erf'\)"):
        predictor.predict_onnx(path)


def test_fast_path_equals_the_full_prediction(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    table = SposLatencyTable(predictor, PLAN.spos_configs[0])
    rng = random.Random(3)
    for _ in range(2):
        choices = [rng.randrange(4) for _ in range(20)]
        scales = [rng.choice(PLAN.spos_configs[0].channel_scales) for _ in range(20)]
        net = SposNet(PLAN.spos_configs[0], choices, scales)
        path = export_module(net, torch.randn(net.input_shape), "onnx", name=net.name).path
        assert table.latency_ms(choices, scales) == pytest.approx(predictor.predict_onnx(path).total_ms, rel=1e-9)
    batch = table.batch_ms(np.array([choices, choices]), np.array([[1] * 20, [1] * 20]))
    assert batch[0] == pytest.approx(table.latency_ms(choices, [1.0] * 20))


def test_overhead_fit_is_exact_on_synthetic_models() -> None:
    counts = np.array([10.0, 40.0, 80.0, 25.0])
    sums = np.array([1.0, 3.0, 9.0, 2.0])
    truth = Overhead(per_kernel_ms=-0.003, fixed_ms=0.05)
    measured = sums + truth.per_kernel_ms * counts + truth.fixed_ms
    fitted = fit_overhead(sums, counts, measured)
    assert fitted.per_kernel_ms == pytest.approx(truth.per_kernel_ms) and fitted.fixed_ms == pytest.approx(0.05)
    # With the measured fixed cost only the per-model term is fitted.
    known = fit_overhead(sums, counts, measured, fixed_cost_ms=0.003)
    assert known.per_kernel_ms == -0.003 and known.fixed_ms == pytest.approx(0.05) and known.floor_ms == 0.003


def test_overhead_terms_never_go_below_what_an_inference_costs() -> None:
    # Kernel sums that over-predict: the unconstrained fit would make the per-model term negative.
    counts = np.array([2.0, 5.0, 9.0])
    sums = np.array([0.5, 1.2, 2.0])
    measured = sums - 0.04
    assert fit_overhead(sums, counts, measured, fixed_cost_ms=0.01).fixed_ms == 0.01
    assert fit_overhead(sums, counts * 0 + 1, measured).fixed_ms == 0.0


def test_in_graph_overhead_is_exact_on_synthetic_models_and_pays_the_fixed_cost_once() -> None:
    counts = np.array([150.0, 40.0, 12.0, 30.0])
    sums = np.array([0.25, 3.0, 9.0, 1.5])
    measured = sums + 0.00005 * counts + 0.004
    fitted = fit_in_graph_overhead(sums, counts, measured, fixed_cost_ms=0.003)
    assert fitted.per_kernel_ms == pytest.approx(0.00005) and fitted.fixed_ms == pytest.approx(0.004)
    assert fitted.floor_ms == 0.003 and fitted.kernel_floor == 0.0
    # Kernel sums that over-predict: neither term goes negative, and the fixed cost is still paid once (the
    # kernels' in-graph times were taken less it).
    over = fit_in_graph_overhead(sums, counts, sums - 0.01, fixed_cost_ms=0.003)
    assert over.per_kernel_ms == 0.0 and over.fixed_ms == 0.003
    assert fit_in_graph_overhead(sums[:0], counts[:0], sums[:0], fixed_cost_ms=0.003).fixed_ms == 0.003


def test_a_one_conv_model_is_never_predicted_below_the_fixed_cost(fitted, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    floor = predictor.overhead.floor_ms
    assert floor > 0  # measured beside the calibration models, even with the fusion rules given
    one_conv = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU()).eval()
    prediction = predictor.predict(one_conv, torch.zeros(1, 3, 32, 32))
    assert prediction.total_ms >= floor and all(ms >= floor for _, ms in prediction.kernels)
    assert predictor.overhead.fixed_ms >= floor


def test_search_refuses_a_predictor_that_does_not_cover_its_space(fitted) -> None:  # type: ignore[no-untyped-def]
    from hwlab.search.latency import PredictorLatency
    from hwlab.search.space import SearchSpace

    _, root, _ = fitted
    fitted_space = SearchSpace.of(input_size=32, width=1.0, num_classes=1000, stem_stride=2)
    inside = PredictorLatency(fitted_space, "local", "onnxruntime", root)
    assert inside.note is None and inside.table.outside_share is not None and inside.table.outside_share <= 0.05
    narrow = SearchSpace.of(input_size=32, width=0.25)  # a quarter of the channels it was fitted on
    with pytest.raises(PredictorError, match=r"do not cover \d+% of the predicted time.*32x32, width 0.25") as err:
        PredictorLatency(narrow, "local", "onnxruntime", root)
    assert "hwlab predictors fit --device local --backend onnxruntime" in err.value.hint
    assert "--spos-space 32,0.25,1,10" in err.value.hint
    forced = PredictorLatency(narrow, "local", "onnxruntime", root, force=True)
    assert forced.note and "unchecked" in forced.note
    assert np.isfinite(forced([narrow.sample(random.Random(0))])[0])


def test_every_prediction_says_how_much_of_it_is_extrapolated(fitted) -> None:  # type: ignore[no-untyped-def]
    _, _, predictor = fitted
    big = torch.nn.Sequential(torch.nn.Conv2d(3, 1024, 3, padding=1), torch.nn.ReLU()).eval()  # > any zoo model
    prediction = predictor.predict(big, torch.zeros(1, 3, 224, 224))
    assert prediction.outside == [True] and prediction.outside_share == 1.0
    report = prediction.to_json()
    assert report["outside_domain_share"] == 1.0 and report["kernels"][0]["outside_domain"] is True

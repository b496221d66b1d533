"""A precision assignment as a deployable model: one QDQ ONNX file, its runtime top-1, and its int8 kernels.

The fp32 network (with the assignment's recalibrated BN, folded by the exporter) is quantised by
onnxruntime's ``quantize_static``, calibrated on training images, with every fp32 layer's node in
``nodes_to_exclude``. Only convolutions, the classifier and the activations between them are quantised
(``OP_TYPES``); onnxruntime itself turns an Add or a pool between int8 layers into its int8 form when it
loads the model. Accuracy is measured by onnxruntime on the held-out split, never by the fake-quantised
network, and the optimised graph (``SessionOptions.optimized_model_filepath``) says which layers really run
int8 kernels: nodes_to_exclude does not guarantee fp32 (``EFFECTIVE_NOTE``), so what ran is recorded.
"""

from __future__ import annotations

import collections
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch

from hwlab.export.api import export_module
from hwlab.quant.network import Layer
from hwlab.quant.onnx_qdq import quantize_onnx

OP_TYPES = ("Conv", "Gemm", "Relu", "Clip")
CALIBRATION_IMAGES = 64
LAYER_KERNELS = ("QLinearConv", "QGemm", "QLinearMatMul", "ConvInteger", "MatMulInteger")  # int8 conv/fc kernels


@dataclass(frozen=True)
class Deployed:
    path: Path
    chosen: tuple[str, ...]  # the assignment
    effective: tuple[str, ...]  # per layer, what onnxruntime's optimised graph runs: int8 kernel or not
    node_types: dict[str, int]
    runtime_top1: float

    @property
    def int8_layers(self) -> int:
        return self.chosen.count("int8")

    @property
    def int8_kernels(self) -> int:
        return self.effective.count("int8")

    @property
    def runs_int8_as_chosen(self) -> bool:
        return self.effective == self.chosen

    def to_json(self) -> dict[str, Any]:
        out = {"file": str(self.path), "int8_layers": self.int8_layers, "int8_kernels": self.int8_kernels,
               "runs_int8_as_chosen": self.runs_int8_as_chosen, "optimised_node_types": self.node_types,
               "runtime_top1": self.runtime_top1}  # fmt: skip
        if not self.runs_int8_as_chosen:
            out["effective_precisions"] = list(self.effective)
            out["note"] = EFFECTIVE_NOTE
        return out


# Why a layer left at fp32 can run int8 anyway (measured: 1 of 15 ResNet picks, both mixed picks of a SPOS run).
EFFECTIVE_NOTE = (
    "onnxruntime ran some fp32 layers as int8: its WeightBiasQuantization rewrite quantises the float weight"
    " of a Conv/Gemm whose input comes from a DequantizeLinear (per tensor), and a following QuantizeLinear"
    " then makes it a QLinearConv; effective_precisions lists what ran"
)


def write_assignment(net: torch.nn.Module, layers: Sequence[Layer], assignment: Sequence[str],
                     calibration: torch.Tensor, out: Path, name: str) -> Path:  # fmt: skip
    """``out``: the QDQ model of ``net`` with each layer at its precision (all fp32: the fp32 export itself)."""
    example = calibration[:1]
    fp32 = export_module(net.eval(), example, "onnx", name=name).path
    out.parent.mkdir(parents=True, exist_ok=True)
    if all(p == "fp32" for p in assignment):
        out.write_bytes(fp32.read_bytes())
        return out
    name_in = _input_name(fp32)
    feeds = [{name_in: calibration[i : i + 1].numpy()} for i in range(min(len(calibration), CALIBRATION_IMAGES))]
    exclude = [layer.node for layer, p in zip(layers, assignment, strict=True) if p == "fp32"]
    tmp = out.with_name(f".{out.name}.tmp")
    quantize_onnx(fp32, tmp, feeds, nodes_to_exclude=exclude, op_types=OP_TYPES)
    tmp.replace(out)
    return out


def _input_name(path: Path) -> str:
    return onnx.load(str(path), load_external_data=False).graph.input[0].name


def optimised_graph(path: Path) -> onnx.GraphProto:
    """onnxruntime's optimised graph of ``path`` (what the CPU provider runs)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.optimized_model_filepath = str(Path(folder) / "optimised.onnx")
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return onnx.load(options.optimized_model_filepath, load_external_data=False).graph


def effective_precisions(graph: onnx.GraphProto, layers: Sequence[Layer]) -> tuple[str, ...]:
    """Per layer, int8 where the optimised graph runs its node as an int8 kernel (a fused node keeps the
    layer's name with a ``_token_N`` suffix), else fp32."""
    int8 = {re.sub(r"_token_\d+$", "", n.name) for n in graph.node if n.op_type in LAYER_KERNELS}
    return tuple("int8" if layer.node in int8 else "fp32" for layer in layers)


def runtime_top1(path: Path, x: torch.Tensor, y: torch.Tensor) -> float:
    """Top-1 of the model file on (x, y), one image per run, as onnxruntime computes it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    images = x.numpy().astype(np.float32)
    predicted = [int(np.argmax(session.run(None, {name: images[i : i + 1]})[0])) for i in range(len(images))]
    return float(np.mean(np.array(predicted) == y.numpy()))


def deploy(net: torch.nn.Module, layers: Sequence[Layer], assignment: Sequence[str], calibration: torch.Tensor,
           x_val: torch.Tensor, y_val: torch.Tensor, out: Path, name: str) -> Deployed:  # fmt: skip
    """Write the model, then check its kernels and measure its top-1 with the runtime."""
    path = write_assignment(net, layers, assignment, calibration, out, name)
    graph = optimised_graph(path)
    types = dict(collections.Counter(n.op_type for n in graph.node))
    return Deployed(path, tuple(assignment), effective_precisions(graph, layers), types,
                    runtime_top1(path, x_val, y_val))  # fmt: skip


@dataclass(frozen=True)
class DeployedTflite:
    """The assignment as a .tflite from the LiteRT quantizer, with its int8 ops counted and its LiteRT top-1."""

    path: Path
    int8_layers: int
    int8_ops: int  # conv/fc ops with int8 weights in the file
    runtime_top1: float

    def to_json(self) -> dict[str, Any]:
        return {"file": str(self.path), "int8_layers": self.int8_layers, "int8_ops": self.int8_ops,
                "runs_int8_as_chosen": self.int8_ops == self.int8_layers,
                "runtime_top1": self.runtime_top1}  # fmt: skip


def deploy_tflite(net: torch.nn.Module, paths: Sequence[tuple[str, bool]], assignment: Sequence[str],
                  calibration: torch.Tensor, x_val: torch.Tensor, y_val: torch.Tensor, out: Path,
                  name: str) -> DeployedTflite:  # fmt: skip
    """The .tflite of ``net`` (litert-torch) quantised by the LiteRT quantizer with the fp32 layers left
    float, calibrated on training images; its int8 ops and its top-1 in LiteRT."""
    from hwlab.quant import litert_int8

    litert_int8.require_quantizer()
    fp32 = export_module(net.eval(), calibration[:1], "tflite", name=name).path
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    images = [calibration[i : i + 1].numpy() for i in range(min(len(calibration), CALIBRATION_IMAGES))]
    litert_int8.quantize_tflite_layers(fp32, tmp, paths, images, [p == "int8" for p in assignment])
    tmp.replace(out)
    top1 = litert_int8.litert_top1(out, x_val.numpy(), y_val.numpy())
    return DeployedTflite(out, list(assignment).count("int8"), litert_int8.int8_layer_ops(out), top1)

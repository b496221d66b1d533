"""What the seed's design ideas cost on this device: re-parameterisation, FReLU and WeightNet, measured.

Per backend, one interleaved, drift-corrected measuring job (so every ratio below compares figures taken
side by side) holds:

* ``hwlab profile --space blocks`` at ``--input-size``: each block in train form and in the deploy form it
  converts to, FReLU (train and deploy form) beside ReLU / ReLU6 / h-swish, WeightNet (M=2, G=2) beside a
  plain 3x3 conv, SE and CondConv (4 experts), at RepVGG-A0's sites;
* whole networks at ``--input-size``: RepVGG-A0 (train form, deploy form, and deploy form with FReLU) and
  ACNet-ResNet-18 (train and deploy form).

It prints the train/deploy latency ratio per block and per network, FReLU's and WeightNet's measured
latency overhead beside their share of added multiply-accumulates, and each conversion's error (max abs
and relative output difference, deploy vs train form, on seeded random inputs).

    .venv/bin/python bench/reparam_speed.py [--device local] [--backends onnxruntime,litert] [--input-size 224]
        [--max-time 8] [--tables-dir bench-out/tables] [--json FILE]

Run it alone on the machine: any other load shifts the figures.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from hwlab.inventory import DeviceSpec, get_device
from hwlab.measure.settings import stopping
from hwlab.profile import ModelItem, ProfileRequest, profile
from hwlab.reparam import check_equivalence, reparam
from hwlab.reparam.nets import acnet_resnet18, randomise_bn, repvgg_a0
from hwlab.space import OpSpec
from hwlab.space.blocks import blocks_space
from hwlab.space.build import random_input
from hwlab.zoo.count import count_macs_params

FORMS = {"repvgg_block": "conv_act", "acnet_block": "conv_act", "frelu_train": "frelu"}


def networks(size: int) -> dict[str, tuple[torch.nn.Module, int]]:
    """name -> (module, multiply-accumulates), train forms with random BN statistics and their deploy forms."""
    out: dict[str, tuple[torch.nn.Module, int]] = {}
    for name, build in (("repvgg-a0", lambda: repvgg_a0("repvgg", "relu", 1000, size)),
                        ("repvgg-a0-frelu", lambda: repvgg_a0("repvgg", "frelu", 1000, size)),
                        ("acnet-resnet18", lambda: acnet_resnet18(1000, size))):  # fmt: skip
        torch.manual_seed(0)
        train = randomise_bn(build(), 0).eval()
        deployed = reparam(train)
        if name != "repvgg-a0-frelu":
            out[f"{name}/train"] = (train, macs(train, size))
        out[f"{name}/deploy"] = (deployed, macs(deployed, size))
    return out


def macs(module: torch.nn.Module, size: int) -> int:
    return count_macs_params(module, (1, 3, size, size))[0]


def conversion_errors(size: int, nets: dict[str, tuple[torch.nn.Module, int]]) -> dict[str, dict[str, float]]:
    from hwlab.space import build_module

    errors = {}
    for name in ("repvgg-a0", "acnet-resnet18"):
        result = check_equivalence(nets[f"{name}/train"][0], nets[f"{name}/deploy"][0], (1, 3, size, size), trials=2)
        errors[name] = {"max_abs": result.max_abs, "max_rel": result.max_rel}
    for op in blocks_space(size):
        if op.op in FORMS and op.stride == 1 and op.act in ("", "relu"):
            train = build_module(op)
            result = check_equivalence(train, reparam(train), op.input_shapes()[0], trials=2)
            errors[op.key] = {"max_abs": result.max_abs, "max_rel": result.max_rel}
    return errors


def deploy_of(op: OpSpec) -> str:
    """The key of the deploy-form op a train-form block converts to."""
    if op.op == "frelu_train":
        return OpSpec("frelu", op.input_h, op.input_w, op.cin, op.cout).key
    kernel = 3 if op.op == "repvgg_block" else op.kernel
    return OpSpec("conv_act", op.input_h, op.input_w, op.cin, op.cout, kernel=kernel, stride=op.stride, act=op.act).key


def measure(
    device: DeviceSpec, backend: str, size: int, max_time: float, tables: Path, nets: dict[str, Any]
) -> dict[str, dict]:  # type: ignore[type-arg]
    items: list[Any] = list(blocks_space(size))
    for name, (module, count) in nets.items():
        items.append(ModelItem.of_module(name, module, random_input((1, 3, size, size)),
                                         {"op": "model", "family": "reparam", "macs": count}))  # fmt: skip
    request = ProfileRequest(device=device, backend=backend, specs=items, space="reparam-speed",
                             table_name=f"reparam-speed-{size}", tables_root=tables,
                             settings=stopping(max_time_s=max_time))  # fmt: skip
    report = profile(request)
    return {r["key"]: r for r in report.table if r.get("status") == "ok"}


def report(device: str, backend: str, rows: dict[str, dict], nets: dict[str, Any], size: int) -> dict[str, Any]:  # type: ignore[type-arg]
    ms = {k: float(r["median_ms"]) for k, r in rows.items()}
    out: dict[str, Any] = {
        "device": device,
        "backend": backend,
        "blocks": [],
        "networks": {},
        "frelu": [],
        "weightnet": [],
    }
    threads = next(iter(rows.values()), {}).get("threads")
    print(f"\n== {device}/{backend}, {threads} thread(s), input {size}x{size}")
    print("train form / deploy form (drift-corrected medians, measured interleaved in one job)")
    print(f"{'block':<72} {'train ms':>9} {'deploy ms':>9} {'ratio':>6}")
    for op in blocks_space(size):
        if op.op in FORMS and op.key in ms and deploy_of(op) in ms:
            ratio = ms[op.key] / ms[deploy_of(op)]
            out["blocks"].append(
                {"key": op.key, "train_ms": ms[op.key], "deploy_ms": ms[deploy_of(op)], "ratio": ratio}
            )
            print(f"{op.key:<72} {ms[op.key]:>9.3f} {ms[deploy_of(op)]:>9.3f} {ratio:>6.2f}")
    for name in ("repvgg-a0", "acnet-resnet18"):
        train, deploy = f"{name}/train", f"{name}/deploy"
        if train in ms and deploy in ms:
            ratio = ms[train] / ms[deploy]
            out["networks"][name] = {"train_ms": ms[train], "deploy_ms": ms[deploy], "ratio": ratio,
                                     "train_macs": nets[train][1], "deploy_macs": nets[deploy][1]}  # fmt: skip
            print(f"{name + ' (whole network)':<72} {ms[train]:>9.3f} {ms[deploy]:>9.3f} {ratio:>6.2f}")
    print(f"\n{'FReLU / WeightNet vs its baseline':<72} {'latency':>9} {'MACs':>9}")
    pairs = []
    for op in blocks_space(size):
        if op.op == "conv_act" and op.act == "frelu":
            pairs.append(("frelu", op.key, OpSpec("conv_act", op.input_h, op.input_w, op.cin, op.cout, kernel=3,
                                                  stride=op.stride, act="relu"), op))  # fmt: skip
        if op.op in ("weightnet", "se_conv", "condconv"):
            pairs.append(("weightnet", op.key, OpSpec("conv", op.input_h, op.input_w, op.cin, op.cout, kernel=3,
                                                      stride=op.stride), op))  # fmt: skip
    for group, key, base, op in pairs:
        if key in ms and base.key in ms:
            overhead, extra = ms[key] / ms[base.key] - 1, op.macs / base.macs - 1
            out[group].append({"key": key, "baseline": base.key, "latency_overhead": overhead, "macs_share": extra})
            print(f"{key:<72} {overhead:>+9.1%} {extra:>+9.1%}")
    frelu, relu = "repvgg-a0-frelu/deploy", "repvgg-a0/deploy"
    if frelu in ms and relu in ms:
        overhead, extra = ms[frelu] / ms[relu] - 1, nets[frelu][1] / nets[relu][1] - 1
        out["frelu"].append({"key": "repvgg-a0 (whole network)", "latency_overhead": overhead, "macs_share": extra})
        print(f"{'RepVGG-A0 deploy form, FReLU instead of ReLU':<72} {overhead:>+9.1%} {extra:>+9.1%}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="local", help="a device of the inventory")
    parser.add_argument("--inventory", help="inventory folder (default: $HWLAB_DEVICES, else ./devices)")
    parser.add_argument("--backends", default="onnxruntime,litert")
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--max-time", type=float, default=8.0, help="seconds of measuring per model at most")
    parser.add_argument("--tables-dir", type=Path, default=Path("bench-out/tables"))
    parser.add_argument("--json", type=Path, help="write every figure here")
    args = parser.parse_args()
    size = args.input_size
    device = get_device(args.device, args.inventory)
    nets = networks(size)
    errors = conversion_errors(size, nets)
    print("conversion error, deploy vs train form (seeded random inputs, random BN statistics):")
    for name, e in errors.items():
        print(f"  {name:<72} max abs {e['max_abs']:.2e}  relative {e['max_rel']:.2e}")
    results = [report(device.name, b, measure(device, b, size, args.max_time, args.tables_dir, nets), nets, size)
               for b in args.backends.split(",")]  # fmt: skip
    if args.json:
        args.json.write_text(
            json.dumps({"input_size": size, "conversion_errors": errors, "results": results}, indent=1)
        )


if __name__ == "__main__":
    main()

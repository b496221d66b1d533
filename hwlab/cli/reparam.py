"""`hwlab reparam`: convert a model's re-parameterisable blocks to deploy form, prove it, export it."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from hwlab.cli.common import MAX_INPUT_SIZE, add_json_arg, command, number, print_json, whole
from hwlab.errors import InvalidRequest

HELP = """\
Convert every re-parameterisable block of a model (RepVGG, ACNet and conv-BN blocks, FReLU) to its deploy
form: one convolution with a bias per block (FReLU: its BN folded into the depthwise conv). The converted
model is run beside the original on seeded random inputs; the largest output difference over the largest
output magnitude must stay within --tolerance, else nothing is written and the command fails. A block
that cannot be converted (e.g. a BatchNorm without running statistics) is named in the error.

The model is a built-in network (--net; random weights with randomised BN statistics unless --weights
gives a state_dict) or the arch.json of `hwlab search --space repvgg` (its trained weights).
"""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from hwlab.reparam.convert import DEFAULT_TOLERANCE
    from hwlab.reparam.deploy import NETWORKS

    p = command(
        sub,
        "reparam",
        help="convert re-parameterisable blocks to deploy form, check equivalence, export",
        description=HELP,
        examples=[
            "hwlab reparam --net repvgg-a0 --out runs/repvgg-a0",
            "hwlab reparam --net acnet-resnet18 --input-size 224 --formats onnx,tflite --out runs/acnet",
            "hwlab reparam runs/search/local-onnxruntime-repvgg-0.3ms-evolution/arch.json --out runs/winner",
        ],
    )
    p.add_argument("arch", nargs="?", type=Path, help="an arch.json of `hwlab search --space repvgg`")
    p.add_argument("--net", choices=sorted(NETWORKS), help="a built-in network instead of an arch.json")
    p.add_argument("--weights", type=Path, help="--net: a state_dict to load (loaded without executing code)")
    p.add_argument("--input-size", type=whole(8, MAX_INPUT_SIZE), default=224, help="--net: input side")
    p.add_argument("--num-classes", type=whole(2, 100_000), default=1000, help="--net: classifier outputs")
    p.add_argument("--tolerance", type=number(0.0, 1.0, low_open=True), default=DEFAULT_TOLERANCE,
                   help="largest allowed output difference over the largest output magnitude")  # fmt: skip
    p.add_argument("--formats", default="onnx", help="comma list of export formats: onnx, tflite")
    p.add_argument("--out", type=Path, help="folder for deploy.onnx / deploy.tflite / deploy.pt (default: none)")
    add_json_arg(p)
    p.set_defaults(handler=cmd_reparam)


def cmd_reparam(args: argparse.Namespace) -> int:
    from hwlab.reparam.deploy import built_in, deploy, network_from_arch

    if (args.arch is None) == (args.net is None):
        raise InvalidRequest("give either an arch.json or --net NAME", hint="e.g. hwlab reparam --net repvgg-a0")
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    unknown = [f for f in formats if f not in ("onnx", "tflite")]
    if unknown:
        raise InvalidRequest(f"unknown format(s) {', '.join(unknown)}", hint="use onnx and/or tflite")
    if args.arch is not None:
        net, source = network_from_arch(args.arch), str(args.arch)
    else:
        net, source = built_in(args.net, args.num_classes, args.input_size, args.weights), args.net
    report = deploy(net, source, args.out, tolerance=args.tolerance, formats=formats)
    if args.json:
        print_json(report.to_json())
        return 0
    eq = report.equivalence
    console = Console()
    console.print(f"{escape(source)}: {len(report.blocks)} blocks converted to deploy form")
    console.print(f"  equivalence on {eq['inputs']} random inputs: max abs error {eq['max_abs']:.2e}, relative"
                  f" {eq['max_rel']:.2e} (tolerance {eq['tolerance']:g}) [green]ok[/]")  # fmt: skip
    console.print(f"  parameters {report.params_train:,} -> {report.params_deploy:,}, modules"
                  f" {report.modules_train} -> {report.modules_deploy}")  # fmt: skip
    for fmt, path in report.files.items():
        console.print(f"  {fmt}: {escape(path)}")
    return 0

"""``--space repvgg``: a RepVGG-style plain network whose blocks, activations, depths and widths are searched.

A stem (3x3 conv-BN-ReLU, stride 1) and stages that each open with a stride-2 block; per stage a depth and
a width are chosen, and per block one of {RepVGG block, ACNet block, plain 3x3 conv-BN} with {ReLU, FReLU}.
Every block type deploys to the same 3x3 conv with a bias (``hwlab.reparam``), so a candidate's deployed
cost depends on its depths, widths and activations only: :meth:`RepSpace.deploy_ops` lists the ops the
device runs, which is what the latency budget is checked against, while accuracy comes from the train form.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from typing import Any

from hwlab.errors import SpaceError
from hwlab.reparam.nets import BlockSpec, PlainNet
from hwlab.space.opspec import OpSpec

KINDS: tuple[str, ...] = ("repvgg", "acb", "conv")
# A one-op model that does almost nothing: its latency is the runtime's fixed cost of one inference, which
# every row of a table of one-op models carries once (a measured candidate sum subtracts the extra ones).
FIXED_COST_OP = OpSpec("act", 1, 1, 8, 8, act="relu")
ACTS: tuple[str, ...] = ("relu", "frelu")
Gene = tuple[str, str]  # (block kind, activation)


@dataclass(frozen=True)
class RepArch:
    """Per stage a depth and a width (channels), and a (kind, act) gene for every block slot of the space
    (``max depth`` per stage, stage-major); slots past a stage's depth are carried but do not run."""

    depths: tuple[int, ...]
    widths: tuple[int, ...]
    genes: tuple[Gene, ...]

    def active(self, max_depth: int) -> list[list[Gene]]:
        """The genes that run, per stage."""
        return [list(self.genes[s * max_depth : s * max_depth + d]) for s, d in enumerate(self.depths)]

    def to_json(self) -> dict[str, Any]:
        """Only what runs: two architectures with the same network have the same JSON (and search key)."""
        per_stage = max(1, len(self.genes) // max(1, len(self.depths)))
        blocks = [[list(g) for g in stage] for stage in self.active(per_stage)]
        return {"depths": list(self.depths), "widths": list(self.widths), "blocks": blocks}

    def __str__(self) -> str:
        per_stage = max(1, len(self.genes) // max(1, len(self.depths)))
        stages = ["".join(_short(g) for g in stage) for stage in self.active(per_stage)]
        return " | ".join(f"{w}:{s}" for w, s in zip(self.widths, stages, strict=True))


def _short(gene: Gene) -> str:
    return {"repvgg": "R", "acb": "A", "conv": "C"}[gene[0]] + ("f" if gene[1] == "frelu" else "")


@dataclass(frozen=True)
class RepSpace:
    """The searched space: input size, classes, stem width, per-stage width choices and depth choices."""

    input_size: int = 32
    num_classes: int = 10
    stem_width: int = 16
    stage_widths: tuple[tuple[int, ...], ...] = ((16, 24, 32), (32, 48, 64), (64, 96, 128))
    depths: tuple[int, ...] = (1, 2, 3)
    name: str = field(default="repvgg", init=False)

    def __post_init__(self) -> None:
        stages = len(self.stage_widths)
        if stages < 1 or any(not w or min(w) < 1 for w in self.stage_widths):
            raise SpaceError("every stage needs width choices >= 1", hint="e.g. ((16, 24, 32), (32, 48, 64))")
        if not self.depths or min(self.depths) < 1:
            raise SpaceError(f"depth choices {self.depths} must be >= 1", hint="e.g. (1, 2, 3)")
        if self.input_size % 2**stages or self.input_size < 2**stages:
            raise SpaceError(f"input_size={self.input_size} must be a multiple of {2**stages}",
                             hint=f"each of the {stages} stages halves the image")  # fmt: skip

    @property
    def max_depth(self) -> int:
        return max(self.depths)

    def slots(self) -> int:
        return len(self.stage_widths) * self.max_depth

    # -- sampling and variation (what the evolutionary search calls) ---------------------------------

    def sample(self, rng: random.Random) -> RepArch:
        return RepArch(
            tuple(rng.choice(self.depths) for _ in self.stage_widths),
            tuple(rng.choice(w) for w in self.stage_widths),
            tuple((rng.choice(KINDS), rng.choice(ACTS)) for _ in range(self.slots())),
        )

    def mutate(self, arch: RepArch, rng: random.Random, prob: float) -> RepArch:
        """Every gene (a stage's depth or width, a slot's kind or activation) redrawn with probability ``prob``."""
        return RepArch(
            tuple(rng.choice(self.depths) if rng.random() < prob else d for d in arch.depths),
            tuple(rng.choice(c) if rng.random() < prob else w for w, c in zip(arch.widths, self.stage_widths,
                                                                               strict=True)),
            tuple((rng.choice(KINDS) if rng.random() < prob else k, rng.choice(ACTS) if rng.random() < prob else a)
                  for k, a in arch.genes),
        )  # fmt: skip

    def crossover(self, a: RepArch, b: RepArch, rng: random.Random) -> RepArch:
        """Each stage (its depth, width and block genes) from one parent or the other."""
        d = self.max_depth
        picks = [rng.random() < 0.5 for _ in self.stage_widths]
        genes: list[Gene] = []
        for s, pick in enumerate(picks):
            genes += (a if pick else b).genes[s * d : (s + 1) * d]
        return RepArch(tuple(x if p else y for p, x, y in zip(picks, a.depths, b.depths, strict=True)),
                       tuple(x if p else y for p, x, y in zip(picks, a.widths, b.widths, strict=True)),
                       tuple(genes))  # fmt: skip

    def check(self, arch: RepArch) -> RepArch:
        stages = len(self.stage_widths)
        if len(arch.depths) != stages or len(arch.widths) != stages or len(arch.genes) != self.slots():
            raise SpaceError(f"an architecture of this space has {stages} depths, {stages} widths and"
                             f" {self.slots()} block genes", hint="give one per stage and one per slot")  # fmt: skip
        for s, (depth, width) in enumerate(zip(arch.depths, arch.widths, strict=True)):
            if depth not in self.depths or width not in self.stage_widths[s]:
                raise SpaceError(f"stage {s}: depth {depth} / width {width} is not a choice of the space",
                                 hint=f"depths {self.depths}, widths {self.stage_widths[s]}")  # fmt: skip
        for kind, act in arch.genes:
            if kind not in KINDS or act not in ACTS:
                raise SpaceError(f"block ({kind}, {act}) is not a choice", hint=f"kinds {KINDS}, activations {ACTS}")
        return arch

    # -- what a candidate is -----------------------------------------------------------------------

    def blocks(self, arch: RepArch) -> list[BlockSpec]:
        """The stem, then every block that runs (the first of a stage with stride 2)."""
        specs = [BlockSpec("conv", "relu", self.stem_width, 1)]
        for stage, width in zip(arch.active(self.max_depth), arch.widths, strict=True):
            specs += [BlockSpec(kind, act, width, 2 if j == 0 else 1) for j, (kind, act) in enumerate(stage)]
        return specs

    def network(self, arch: RepArch) -> PlainNet:
        """The candidate's standalone network in train form (``hwlab.reparam.reparam`` deploys it)."""
        return PlainNet(3, self.blocks(arch), self.num_classes, self.input_size)

    def deploy_ops(self, arch: RepArch) -> list[OpSpec]:
        """The ops the device runs for the deployed candidate: a 3x3 conv + activation per block, the pooling
        and the classifier. The block kinds do not appear: they all deploy to the same conv."""
        ops, cin, size = [], 3, self.input_size
        for spec in self.blocks(arch):
            ops.append(OpSpec("conv_act", size, size, cin, spec.cout, kernel=3, stride=spec.stride, act=spec.act))
            cin, size = spec.cout, ops[-1].output_h
        return [*ops, OpSpec("gap", size, size, cin, cin), OpSpec("fc", 1, 1, cin, self.num_classes)]

    def all_deploy_ops(self) -> list[OpSpec]:
        """Every distinct deploy op of the space, and the fixed-cost probe (``hwlab profile --space repvgg``)."""
        seen: dict[str, OpSpec] = {FIXED_COST_OP.key: FIXED_COST_OP}
        for arch in self._corners():
            for op in self.deploy_ops(arch):
                seen.setdefault(op.key, op)
        return list(seen.values())

    def _corners(self) -> list[RepArch]:
        """Architectures that together hold every (position, cin, cout, stride, act) the space can run."""
        d, archs = self.max_depth, []
        for act in ACTS:
            genes = tuple(("conv", act) for _ in range(self.slots()))
            widths_per_stage = [list(w) for w in self.stage_widths]
            for s in range(len(self.stage_widths)):
                for w in widths_per_stage[s]:
                    for prev in widths_per_stage[s - 1] if s else [self.stem_width]:
                        widths = [ws[0] for ws in widths_per_stage]
                        widths[s] = w
                        if s:
                            widths[s - 1] = prev
                        archs.append(RepArch(tuple([d] * len(widths)), tuple(widths), genes))
        return archs

    def cost(self, arch: RepArch) -> tuple[int, int]:
        """(multiply-accumulates, parameters) of the deployed network."""
        ops = self.deploy_ops(arch)
        return sum(op.macs for op in ops), sum(op.params for op in ops)

    def key(self, arch: RepArch) -> str:
        return json.dumps(arch.to_json(), separators=(",", ":"))

    # -- files ---------------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "input_size": self.input_size, "num_classes": self.num_classes,
                "stem_width": self.stem_width, "stage_widths": [list(w) for w in self.stage_widths],
                "depths": list(self.depths)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RepSpace:
        if data.get("name") != "repvgg":
            raise SpaceError(f"not a repvgg space: {data.get('name')!r}", hint="give an arch.json of --space repvgg")
        return cls(int(data["input_size"]), int(data["num_classes"]), int(data["stem_width"]),
                   tuple(tuple(int(c) for c in w) for w in data["stage_widths"]),
                   tuple(int(d) for d in data["depths"]))  # fmt: skip

    def arch_from_json(self, data: dict[str, Any]) -> RepArch:
        """The architecture a file names; inactive slots filled with plain ReLU convs."""
        try:
            blocks = [[(str(k), str(a)) for k, a in stage] for stage in data["blocks"]]
            depths, widths = tuple(int(d) for d in data["depths"]), tuple(int(w) for w in data["widths"])
        except (KeyError, TypeError, ValueError) as exc:
            raise SpaceError(
                f"not a repvgg architecture ({type(exc).__name__}: {exc})",
                hint="it needs depths, widths and blocks, as hwlab search --space repvgg writes",
            ) from None
        genes: list[Gene] = []
        for stage in blocks:
            genes += stage + [("conv", "relu")] * (self.max_depth - len(stage))
        arch = self.check(RepArch(depths, widths, tuple(genes)))
        if [len(s) for s in blocks] != list(depths):
            raise SpaceError(f"blocks per stage {[len(s) for s in blocks]} differ from depths {list(depths)}",
                             hint="give one block per layer of each stage")  # fmt: skip
        return arch

    @property
    def table_name(self) -> str:
        """The lookup table of this space's deploy ops (``hwlab profile --space repvgg``)."""
        return f"repvgg-{self.input_size}-c{self.num_classes}"


def repvgg_space(input_size: int = 32, num_classes: int = 10) -> list[OpSpec]:
    """Every deploy op of the default ``--space repvgg`` at ``input_size``: what a measured search sums."""
    return RepSpace(input_size, num_classes).all_deploy_ops()

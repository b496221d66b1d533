"""OpSpec: one operator or block to measure, and its stable key.

A lookup table row is keyed by `OpSpec.key`, so the key must be readable, must
name only what matters for the op, and must parse back to the very same spec.
Shapes are batch 1, NCHW. Fields an op does not use stay at their
defaults, and fields an op fixes (a pwconv's kernel of 1) are filled in, so two
specs describing the same op are always equal and share a key.

``prec`` is the numeric precision the op runs at (hwlab/quant/precision.py): ``fp32``,
the default, adds nothing to the key, so every older table's keys stay valid; any
other ends the key (``...-prec:int8``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from hwlab.errors import SpaceError
from hwlab.space import cost
from hwlab.space.kinds import OP_KINDS, OPTIONAL_FIELDS, PRECISIONS, OpKind

_DEFAULTS: dict[str, int | str] = {"kernel": 0, "stride": 1, "groups": 1, "mid": 0, "act": ""}
_PLACEHOLDERS = {"kernel": "K", "stride": "S", "groups": "G", "mid": "M", "act": "NAME"}


@dataclass(frozen=True)
class OpSpec:
    """A single op at fixed shapes: the unit a latency table stores one row for."""

    op: str
    input_h: int
    input_w: int
    cin: int
    cout: int
    kernel: int = 0
    stride: int = 1
    groups: int = 1
    mid: int = 0
    act: str = ""
    prec: str = "fp32"

    def __post_init__(self) -> None:
        kind = OP_KINDS.get(self.op) if isinstance(self.op, str) else None
        if kind is None:
            raise SpaceError(f"unknown op {self.op!r}", hint=f"use one of: {', '.join(OP_KINDS)}")
        self._check_types()
        for name in ("input_h", "input_w", "cin", "cout"):
            if getattr(self, name) < 1:
                raise self._error(f"{name}={getattr(self, name)} must be >= 1", "give positive sizes")
        for name in OPTIONAL_FIELDS:
            self._settle_field(kind, name)
        self._check_used_fields(kind)
        self._check_channels_and_space(kind)
        if self.prec not in PRECISIONS:
            raise self._error(f"unknown precision prec={self.prec!r}", f"use one of: {', '.join(PRECISIONS)}")

    # -- validation -----------------------------------------------------------------

    def _error(self, problem: str, hint: str) -> SpaceError:
        where = f"{self.op} op (input {self.input_h}x{self.input_w}x{self.cin}, cout {self.cout})"
        return SpaceError(f"{where}: {problem}", hint=hint)

    def _check_types(self) -> None:
        for name in ("input_h", "input_w", "cin", "cout", "kernel", "stride", "groups", "mid"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise SpaceError(f"{self.op} op: {name} must be an int, got {value!r}", hint=f"pass {name} as an int")
        for name in ("act", "prec"):
            if not isinstance(getattr(self, name), str):
                raise SpaceError(f"{self.op} op: {name} must be a str, got {getattr(self, name)!r}",
                                 hint=f"pass {name} as a name")  # fmt: skip

    def _settle_field(self, kind: OpKind, name: str) -> None:
        """Fill a field the op fixes; reject a non-default value in a field it ignores."""
        value, default = getattr(self, name), _DEFAULTS[name]
        implied = kind.implied_value(name)
        if implied == "cin":
            implied = self.cin
        if implied is not None:
            if value not in (default, implied):
                raise self._error(f"{name}={value!r} but {self.op} fixes {name}={implied!r}", f"drop {name}")
            object.__setattr__(self, name, implied)
        elif name not in kind.key_fields and value != default:
            raise self._error(
                f"{self.op} does not use {name} (got {value!r})", f"leave {name} at its default {default!r}"
            )

    def _check_used_fields(self, kind: OpKind) -> None:
        used = kind.key_fields
        if "kernel" in used:
            allowed = kind.kernels
            if self.kernel < 1 or self.kernel % 2 == 0 or (allowed and self.kernel not in allowed):
                choices = "/".join(map(str, allowed)) if allowed else "an odd size >= 1"
                raise self._error(
                    f"kernel={self.kernel} is not allowed",
                    f"use kernel {choices} (same padding k//2 keeps out = ceil(in/stride) only for odd k)",
                )
        if "stride" in used and (self.stride < 1 or (kind.strides and self.stride not in kind.strides)):
            choices = "/".join(map(str, kind.strides)) if kind.strides else ">= 1"
            raise self._error(f"stride={self.stride} is not allowed", f"use stride {choices}")
        if "mid" in used and self.mid < 1:
            raise self._error(f"mid={self.mid} must be >= 1", "give the block's middle channel count")
        if "act" in used and self.act not in kind.acts:
            raise self._error(f"unknown activation act={self.act!r}", f"use one of: {', '.join(kind.acts)}")
        if "groups" in used:
            self._check_groups()

    def _check_groups(self) -> None:
        if self.op == "channel_shuffle":
            if self.groups < 2 or self.cin % self.groups:
                raise self._error(
                    f"groups={self.groups} must be >= 2 and divide cin={self.cin}",
                    "ShuffleNetV2 uses groups=2",
                )
        elif self.op == "weightnet":
            if self.groups < 1 or self.cout % self.groups:
                raise self._error(f"groups={self.groups} must divide cout={self.cout}",
                                  "WeightNet's G spans 1 (CondConv) to cout (SE)")  # fmt: skip
        elif self.groups < 1 or self.cin % self.groups or self.cout % self.groups:
            raise self._error(
                f"groups={self.groups} must divide cin={self.cin} and cout={self.cout}",
                "choose groups that divide both channel counts (1 for a dense conv)",
            )

    def _check_channels_and_space(self, kind: OpKind) -> None:
        if kind.channels == "same" and self.cout != self.cin:
            raise self._error(f"cout={self.cout} must equal cin={self.cin}", f"{self.op} keeps the channel count")
        if kind.channels == "double" and self.cout != 2 * self.cin:
            raise self._error(
                f"cout={self.cout} must be 2 * cin={2 * self.cin}", "concat joins two inputs of cin channels"
            )
        if kind.spatial == "flat" and (self.input_h, self.input_w) != (1, 1):
            raise self._error(
                f"input is {self.input_h}x{self.input_w}, fc takes a flattened 1x1 input",
                "put a gap op before it and use input_h = input_w = 1",
            )
        if self.op in ("spos_shufflenet", "spos_xception"):
            if self.stride == 1 and (self.cin != self.cout or self.cin % 2):
                raise self._error(
                    "a stride-1 SPOS block needs cin == cout and an even channel count",
                    "it splits its input in two halves and concatenates them back",
                )
            if self.stride == 2 and self.cout <= self.cin:
                raise self._error(
                    f"a stride-2 SPOS block needs cout > cin (cout={self.cout})",
                    "its main branch makes cout - cin channels next to the cin-channel projection",
                )

    # -- shapes -----------------------------------------------------------------------

    @property
    def kind(self) -> OpKind:
        """The op type's rules."""
        return OP_KINDS[self.op]

    def _out(self, size: int) -> int:
        spatial = self.kind.spatial
        if spatial == "window":
            return math.ceil(size / self.stride)
        if spatial in ("global", "flat"):
            return 1
        return size

    @property
    def output_h(self) -> int:
        """Output height: ceil(in/stride) with same padding, 1 after a global pool."""
        return self._out(self.input_h)

    @property
    def output_w(self) -> int:
        """Output width, as output_h."""
        return self._out(self.input_w)

    def input_shapes(self) -> list[tuple[int, ...]]:
        """Shapes of the module's inputs: (1, cin) for fc, else NCHW; add/concat take two."""
        if self.kind.spatial == "flat":
            return [(1, self.cin)]
        return [(1, self.cin, self.input_h, self.input_w)] * self.kind.num_inputs

    def output_shape(self) -> tuple[int, ...]:
        """Shape of the module's single output."""
        if self.kind.spatial == "flat":
            return (1, self.cout)
        return (1, self.cout, self.output_h, self.output_w)

    # -- key ---------------------------------------------------------------------------

    @property
    def key(self) -> str:
        """Stable, readable key, e.g. ``conv-input:56x56x24-output:56x56x48-kernel:3-stride:1-groups:1``."""
        parts = [
            self.op,
            f"input:{self.input_h}x{self.input_w}x{self.cin}",
            f"output:{self.output_h}x{self.output_w}x{self.cout}",
        ]
        parts += [f"{name}:{getattr(self, name)}" for name in self.kind.key_fields]
        if self.prec != "fp32":
            parts.append(f"prec:{self.prec}")
        return "-".join(parts)

    @classmethod
    def from_key(cls, key: str) -> OpSpec:
        """Parse a key made by `OpSpec.key`; the result's key is exactly `key`."""
        return _parse_key(cls, key)

    def fields(self) -> dict[str, Any]:
        """Flat columns for a table row."""
        return {
            "op": self.op,
            "input_h": self.input_h,
            "input_w": self.input_w,
            "cin": self.cin,
            "cout": self.cout,
            "output_h": self.output_h,
            "output_w": self.output_w,
            "kernel": self.kernel,
            "stride": self.stride,
            "groups": self.groups,
            "mid": self.mid,
            "act": self.act,
            "prec": self.prec,
        }

    # -- cost --------------------------------------------------------------------------

    @property
    def macs(self) -> int:
        """Multiply-accumulates of the op's conv and linear layers (FLOPs ~ 2 * macs)."""
        return cost.macs(self)

    @property
    def params(self) -> int:
        """Learnable parameters of the module `build_module` makes for this spec."""
        return cost.params(self)

    def __str__(self) -> str:
        return self.key


def key_template(op: str) -> str:
    """The key layout of `op`, with placeholders, for error messages and docs."""
    kind = OP_KINDS[op]
    extra = "".join(f"-{name}:{_PLACEHOLDERS[name]}" for name in kind.key_fields)
    return f"{op}-input:HxWxC-output:HxWxC{extra}[-prec:P]"


def _parse_key(cls: type[OpSpec], key: str) -> OpSpec:
    if not isinstance(key, str) or not key:
        raise SpaceError(f"op key must be a non-empty string, got {key!r}", hint="pass OpSpec.key text")
    parts = key.split("-")
    prec = "fp32"
    if len(parts) > 1 and parts[-1].startswith("prec:"):
        prec = parts.pop()[len("prec:") :]
    op = parts[0]
    if op not in OP_KINDS:
        raise SpaceError(f"malformed op key {key!r}: unknown op {op!r}", hint=f"ops: {', '.join(OP_KINDS)}")
    kind = OP_KINDS[op]
    template = key_template(op)

    def bad(reason: str) -> SpaceError:
        return SpaceError(f"malformed op key {key!r}: {reason}", hint=f"expected {template}")

    names = ["input", "output", *kind.key_fields]
    if len(parts) != 1 + len(names):
        raise bad(f"{len(parts) - 1} fields after the op name, expected {len(names)}")
    values: dict[str, str] = {}
    for name, part in zip(names, parts[1:], strict=True):
        label, sep, value = part.partition(":")
        if not sep or label != name or not value:
            raise bad(f"field {part!r} should be {name}:<value>")
        values[name] = value

    def number(text: str, what: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise bad(f"{what}={text!r} is not a whole number")
        return int(text)

    def dims(name: str) -> tuple[int, int, int]:
        sizes = values[name].split("x")
        if len(sizes) != 3:
            raise bad(f"{name} {values[name]!r} should be HxWxC")
        h, w, c = (number(s, name) for s in sizes)
        return h, w, c

    in_h, in_w, cin = dims("input")
    out = dims("output")
    extra: dict[str, int | str] = {
        name: values[name] if name == "act" else number(values[name], name) for name in kind.key_fields
    }
    spec = cls(op, in_h, in_w, cin, out[2], **extra, prec=prec)  # type: ignore[arg-type]
    if (spec.output_h, spec.output_w) != out[:2]:
        raise bad(
            f"output {out[0]}x{out[1]} does not follow from the input and stride "
            f"(expected {spec.output_h}x{spec.output_w})"
        )
    if spec.key != key:
        raise bad(f"not in canonical form (canonical: {spec.key!r})")
    return spec

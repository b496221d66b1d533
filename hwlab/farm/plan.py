"""The farm plan (``farm.yaml``): which devices, what each measures every night, and how.

Validated like the inventory, when it is read: an unknown key, a wrong type or a missing file is an
error naming the file, the field and the fix, never a surprise at 3 a.m. Example::

    devices: [rk3399, pixel7]        # by name, and/or
    tags: [nightly]                  # every inventory device with one of these tags
    backends: [onnxruntime, litert]
    models:                          # the reference set: each becomes one series per device and backend
      - zoo: mobilenetv2             # seeded models of a zoo family (count, seed)
        count: 2
      - arch: runs/spos/arch.json    # a search winner
      - file: models/detector.onnx   # a user's model (.onnx for onnxruntime, .tflite for litert)
        name: detector               # the series name (default: the file's stem)
    space: {name: generic, params: {count: 20}}   # optional: a space's ops as series too
    measuring: {threads: 1, max_time_s: 1.0}
    retries: {count: 2, delay_s: 30}             # infrastructure errors only
    thresholds: {min_change: 0.05, k: 3}

The plan's hash (of its bytes) is recorded with every run.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hwlab.errors import InventoryError
from hwlab.farm.baseline import CORRECTIONS
from hwlab.farm.regress import Thresholds
from hwlab.inventory import RUNTIMES, DeviceSpec, Field, check_field
from hwlab.measure.settings import MeasureSettings, stopping
from hwlab.names import name_problem
from hwlab.yamlfile import YamlProblem, read_yaml


class PlanError(InventoryError):
    """The farm plan is missing, unreadable or invalid (file, field, problem, fix)."""


def _positive(v: float) -> str | None:
    return None if v > 0 else f"must be > 0, not {v}"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else f"must be >= 0, not {v}"


def _fraction(v: float) -> str | None:
    return None if 0 < v < 1 else f"must be between 0 and 1, not {v}"


def _names(values: list[Any]) -> str | None:
    for v in values:
        problem = name_problem(v) if isinstance(v, str) else f"{v!r} is not a name"
        if problem:
            return problem
    return None


def _backends(values: list[Any]) -> str | None:
    bad = [v for v in values if v not in RUNTIMES]
    if bad:
        return f"unknown {bad!r}; known: {', '.join(RUNTIMES)}"
    return None if values else "must name at least one backend"


NUMBER = (int, float)
TOP: dict[str, Field] = {
    "devices": Field(list, "device names from the inventory", default=[], check=_names),
    "tags": Field(list, "inventory tags: every device with one of them", default=[], check=_names),
    "backends": Field(list, "runtimes to measure with", default=["onnxruntime"], check=_backends),
    "models": Field(list, "the reference set of whole models (zoo, arch, file entries)", default=[]),
    "space": Field(dict, "a space whose ops are measured too: {name: ..., params: {...}}"),
    "measuring": Field(dict, "how each device measures (threads, core_mask, governor, stop rules)", default={}),
    "health": Field(dict, "the health check: {max_slowdown: 0.5} of the golden model against its history", default={}),
    "retries": Field(dict, "retries of infrastructure errors: {count: 2, delay_s: 30}", default={}),
    "thresholds": Field(
        dict, "regression detection: p_value, min_change, k, baseline_nights, min_baseline_nights", default={}
    ),
    "lease_ttl_s": Field(NUMBER, "seconds a device lease lasts unless renewed", default=60, check=_positive),
    "result_timeout_s": Field(
        NUMBER, "seconds a Dask worker may take for one device's night", default=6 * 3600, check=_positive
    ),
}
MODEL: dict[str, Field] = {
    "zoo": Field(str, "a zoo family: mobilenetv2, resnet, vgg or coverage"),
    "count": Field(int, "how many models of the family", default=1, check=lambda v: None if v >= 1 else "must be >= 1"),
    "seed": Field(int, "which draw of the family", default=0),
    "arch": Field(str, "an arch.json written by `hwlab search`"),
    "file": Field(str, "a model file: .onnx (onnxruntime) or .tflite (litert)"),
    "name": Field(str, "the series name of a file or arch (default: its stem)", check=name_problem),
}
SPACE: dict[str, Field] = {
    "name": Field(str, "a space of `hwlab profile --space`", required=True),
    "params": Field(dict, "the space's parameters, as `hwlab profile` takes them", default={}),
}
MEASURING: dict[str, Field] = {
    "threads": Field(int, "intra-op threads (default: the inventory's)", check=lambda v: None if v >= 1 else ">= 1"),
    "core_mask": Field((list, str), "CPU ids, or big / little / all (default: the inventory's)"),
    "governor": Field(str, "cpufreq governor while measuring"),
    "power": Field(str, "auto, none or a sensor name"),
    "schedule": Field(
        str,
        "rounds (drift-corrected) or single",
        default="rounds",
        check=lambda v: None if v in ("rounds", "single") else "must be rounds or single",
    ),
    "max_time_s": Field(NUMBER, "seconds of measuring per model at most", check=_positive),
    "min_time_s": Field(NUMBER, "seconds of samples at least (single)", check=_non_negative),
    "min_rounds": Field(int, "rounds at least", check=lambda v: None if v >= 1 else "must be >= 1"),
    "max_rounds": Field(int, "rounds at most", check=lambda v: None if v >= 1 else "must be >= 1"),
    "ci": Field(NUMBER, "stop once the median's 95% CI is within +-this", check=_non_negative),
}
HEALTH: dict[str, Field] = {
    "max_slowdown": Field(
        NUMBER, "the golden model this much slower than its history makes the device bad", default=0.5, check=_positive
    ),
}
RETRIES: dict[str, Field] = {
    "count": Field(int, "retries of an infrastructure error", default=2, check=lambda v: None if v >= 0 else ">= 0"),
    "delay_s": Field(NUMBER, "seconds between retries", default=30, check=_non_negative),
}
THRESHOLDS: dict[str, Field] = {
    "p_value": Field(NUMBER, "Mann-Whitney U significance", default=0.002, check=_fraction),
    "min_change": Field(NUMBER, "smallest relative change flagged", default=0.05, check=_positive),
    "k": Field(NUMBER, "flag beyond k x the series' night-to-night noise", default=3.0, check=_non_negative),
    "baseline_nights": Field(
        int, "nights in the rolling baseline", default=7, check=lambda v: None if v >= 1 else ">= 1"
    ),
    "correction": Field(
        str,
        "what each night's samples are divided by first: common (the night's factor over"
        " the plan's series), anchors (the job's speed factor) or none (raw)",
        default="common",
        check=lambda v: None if v in CORRECTIONS else f"must be one of {', '.join(CORRECTIONS)}",
    ),
    "min_baseline_nights": Field(
        int, "nights needed before anything is judged", default=3, check=lambda v: None if v >= 1 else ">= 1"
    ),
}


@dataclass(frozen=True)
class ModelEntry:
    """One entry of the reference set, as written (resolved into models by :mod:`hwlab.farm.models`)."""

    zoo: str | None = None
    count: int = 1
    seed: int = 0
    arch: Path | None = None
    file: Path | None = None
    name: str | None = None


@dataclass(frozen=True)
class FarmPlan:
    path: Path
    digest: str
    devices: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    backends: tuple[str, ...] = ("onnxruntime",)
    models: tuple[ModelEntry, ...] = ()
    space: tuple[str, dict[str, Any]] | None = None
    measuring: dict[str, Any] = field(default_factory=dict)
    max_slowdown: float = 0.5
    retries: int = 2
    retry_delay_s: float = 30.0
    thresholds: Thresholds = Thresholds()
    lease_ttl_s: float = 60.0
    result_timeout_s: float = 6 * 3600.0

    def settings(self) -> MeasureSettings:
        """The measuring settings the plan asks for (the runner's defaults where it says nothing)."""
        m = self.measuring
        stop = {key: m[key] for key in ("max_time_s", "min_time_s") if key in m}
        if "ci" in m:
            stop["ci_rel"] = m["ci"]
        settings = stopping(MeasureSettings(), **stop)
        if m.get("schedule") == "single":
            return replace(settings, rounds=None)
        assert settings.rounds is not None
        rounds = {k: m[k] for k in ("min_rounds", "max_rounds") if k in m}
        return replace(settings, rounds=replace(settings.rounds, **rounds))

    def select(self, inventory: dict[str, DeviceSpec]) -> list[DeviceSpec]:
        """The plan's devices, in inventory order; a name the inventory lacks is an error."""
        missing = [name for name in self.devices if name not in inventory]
        if missing:
            close = difflib.get_close_matches(missing[0], inventory, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(inventory)}"
            raise PlanError(str(self.path), "devices", f"names {missing[0]!r}, which the inventory lacks", hint)
        chosen = [d for d in inventory.values() if d.name in self.devices or any(t in d.tags for t in self.tags)]
        examples = [d.name for d in chosen if d.example]
        if examples:
            raise PlanError(
                str(self.path),
                "devices",
                f"selects example devices {examples}",
                "copy an example to a real inventory entry, or leave it out",
            )
        if not chosen:
            raise PlanError(
                str(self.path),
                "tags",
                f"selects no device (tags {list(self.tags)})",
                "tag devices in the inventory (tags: [...]) or name them under devices:",
            )
        return chosen


def _mapping(path: str, where: str, data: Any, schema: dict[str, Field]) -> dict[str, Any]:
    """``data`` checked against ``schema``, with the schema's defaults filled in."""
    if not isinstance(data, dict):
        raise PlanError(path, where or None, "must be a mapping of keys to values", "see the example in the README")
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{where}.{key}" if where else str(key)
        if key not in schema:
            close = difflib.get_close_matches(str(key), schema, n=1)
            raise PlanError(
                path,
                name,
                "is not a known key",
                f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(schema)}",
            )
        if value is not None:
            out[key] = check_field(path, name, schema[key], value, PlanError)
    for key, rule in schema.items():
        if rule.required and key not in out:
            raise PlanError(path, f"{where}.{key}" if where else key, "is required", f"add it ({rule.help})")
        if key not in out and rule.default is not None:
            out[key] = rule.default
    return out


def _model(path: str, where: str, data: Any, base: Path) -> ModelEntry:
    if isinstance(data, str):
        data = {"file": data}
    entry = _mapping(path, where, data, MODEL)
    kinds = [k for k in ("zoo", "arch", "file") if k in entry]
    if len(kinds) != 1:
        raise PlanError(
            path,
            where,
            f"has {' and '.join(kinds) or 'none'} of zoo, arch, file",
            "give exactly one of zoo: FAMILY, arch: PATH, file: PATH",
        )
    if "zoo" in entry:
        from hwlab.zoo import FAMILIES

        if entry["zoo"] not in FAMILIES:
            raise PlanError(
                path, f"{where}.zoo", f"unknown family {entry['zoo']!r}", f"use one of: {', '.join(FAMILIES)}"
            )
        return ModelEntry(zoo=entry["zoo"], count=entry["count"], seed=entry["seed"])
    kind = kinds[0]
    target = (base / entry[kind]).resolve()
    if not target.is_file():
        raise PlanError(path, f"{where}.{kind}", f"{entry[kind]!r} is not a file", "give a path relative to the plan")
    if kind == "file" and target.suffix not in (".onnx", ".tflite"):
        raise PlanError(
            path,
            f"{where}.file",
            f"{entry[kind]!r} is neither .onnx nor .tflite",
            "give an ONNX model (onnxruntime) or a TFLite model (litert)",
        )
    return ModelEntry(**{kind: target}, name=entry.get("name"))


def parse_plan(data: Any, path: Path, raw: bytes) -> FarmPlan:
    where = str(path)
    top = _mapping(where, "", data, TOP)
    if not top["devices"] and not top["tags"]:
        raise PlanError(
            where,
            "devices",
            "no devices and no tags: the plan selects nothing",
            "add devices: [NAME, ...] or tags: [TAG, ...]",
        )
    models = tuple(_model(where, f"models[{i}]", m, path.parent) for i, m in enumerate(top["models"]))
    space = None
    if "space" in top:
        s = _mapping(where, "space", top["space"], SPACE)
        space = (s["name"], dict(s["params"]))
    if not models and space is None:
        raise PlanError(
            where,
            "models",
            "is empty and there is no space: nothing to measure",
            "list reference models (zoo:, arch:, file:) or a space",
        )
    names = [m.name or (m.file or m.arch).stem for m in models if m.zoo is None]  # type: ignore[union-attr]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise PlanError(where, "models", f"two entries are both named {twice[0]!r}", "give one a name:")
    measuring = _mapping(where, "measuring", top["measuring"], MEASURING)
    if "min_rounds" in measuring and "max_rounds" in measuring and measuring["max_rounds"] < measuring["min_rounds"]:
        raise PlanError(where, "measuring.max_rounds", "is below min_rounds", "raise max_rounds")
    health = _mapping(where, "health", top["health"], HEALTH)
    retries = _mapping(where, "retries", top["retries"], RETRIES)
    thresholds = Thresholds(**_mapping(where, "thresholds", top["thresholds"], THRESHOLDS))
    return FarmPlan(
        path=path,
        digest=hashlib.sha256(raw).hexdigest(),
        devices=tuple(top["devices"]),
        tags=tuple(top["tags"]),
        backends=tuple(dict.fromkeys(top["backends"])),
        models=models,
        space=space,
        measuring=measuring,
        max_slowdown=float(health["max_slowdown"]),
        retries=retries["count"],
        retry_delay_s=float(retries["delay_s"]),
        thresholds=thresholds,
        lease_ttl_s=float(top["lease_ttl_s"]),
        result_timeout_s=float(top["result_timeout_s"]),
    )


def load_plan(path: Path) -> FarmPlan:
    path = Path(path)
    try:
        data, raw = read_yaml(path)
    except OSError as err:
        raise PlanError(
            str(path), None, f"cannot be read ({err.strerror})", "give the plan's path (--plan farm.yaml)"
        ) from None
    except YamlProblem as err:
        raise PlanError(str(path), None, str(err), "fix the file: one key per line, UTF-8 text") from None
    return parse_plan(data, path.resolve(), raw)

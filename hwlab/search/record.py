"""An architecture file (``arch.json``): the space, the architecture, and what is known about it.

A search writes one for its winner; ``hwlab train`` adds the path of trained weights; ``hwlab validate``
appends each measurement on a device. Every write is atomic, so a file is never left half-written.

    {"space": {...}, "choices": [...], "scales": [...],
     "search": {...}, "weights": "...", "validations": [{...}, ...]}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hwlab import jsonfile
from hwlab.errors import SearchError, SpaceError
from hwlab.search.space import Arch, SearchSpace
from hwlab.tables.store import write_json_atomic


@dataclass
class ArchRecord:
    space: SearchSpace
    arch: Arch
    extra: dict[str, Any] = field(default_factory=dict)  # search, weights, validations, ...

    def to_json(self) -> dict[str, Any]:
        return {"space": self.space.to_json(), **self.arch.to_json(), **self.extra}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json_atomic(path, self.to_json())
        return path

    @classmethod
    def load(cls, path: Path) -> ArchRecord:
        hint = "it needs 'space', 'choices' and 'scales', as hwlab search writes"
        try:
            data = jsonfile.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SearchError(f"no architecture file {path}", hint="give the arch.json a search wrote") from None
        except (OSError, ValueError) as exc:  # unreadable, not UTF-8, not JSON
            raise SearchError(f"{path} is not an architecture file ({exc})", hint=hint) from None
        if not isinstance(data, dict):
            raise SearchError(f"{path} is {type(data).__name__}, not an architecture object", hint=hint)
        try:
            space = SearchSpace.from_json(data.pop("space"))
            arch = Arch.from_json(data)
            space.check(arch)
        except SpaceError as exc:
            raise SearchError(f"{path}: {exc.message}", hint=exc.hint or hint) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise SearchError(f"{path} is not an architecture file ({type(exc).__name__}: {exc})", hint=hint) from None
        if not isinstance(data.get("scales"), list):
            raise SearchError(f"{path}: 'scales' must be a list of channel scales", hint=hint)
        extra = {k: v for k, v in data.items() if k not in ("choices", "scales")}
        _check_extra(path, extra)
        return cls(space, arch, extra)

    @property
    def name(self) -> str:
        from hwlab.zoo.spos import spos_arch_name

        return spos_arch_name(self.space.config, self.arch.choices, self.arch.scales)


# What hwlab itself adds to an architecture file, by field: the type each must have.
_EXTRA_TYPES: dict[str, type] = {"search": dict, "weights": str, "trained": dict, "exports": dict, "validations": list}


def _check_extra(path: Path, extra: dict[str, Any]) -> None:
    """The fields search, train and validate write, each of its own type, and a budget that is a budget."""
    for key, kind in _EXTRA_TYPES.items():
        if key in extra and not isinstance(extra[key], kind):
            raise SearchError(
                f"{path}: field {key!r} must be {kind.__name__}, got {type(extra[key]).__name__}",
                hint="restore the file hwlab wrote (search, train and validate write these fields)",
            )
    budget = extra.get("search", {}).get("latency_budget_ms")
    if budget is not None and (
        isinstance(budget, bool) or not isinstance(budget, int | float) or not 0 < budget < float("inf")
    ):
        raise SearchError(
            f"{path}: search.latency_budget_ms must be a positive number or null, got {budget!r}",
            hint="restore the file hwlab search wrote, or give --budget-ms to validate",
        )

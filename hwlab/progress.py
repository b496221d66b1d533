"""How work reports its progress: one callable type for every phase of every command."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int, int, str], None]  # (phase, done, total, label)

"""JSON read as strictly as hwlab writes it: ``NaN`` and ``Infinity`` are not JSON.

Python's ``json`` reads them by default, so a hand-edited table or predictor could carry a
non-finite number into a regression or a median; here they are a ``ValueError`` like any
other malformed text, which the caller turns into an error that names the file.
"""

from __future__ import annotations

import json
from typing import Any


def _refuse(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON number (hwlab writes only finite numbers)")


def loads(text: str | bytes) -> Any:
    """``json.loads`` that refuses ``NaN``, ``Infinity`` and ``-Infinity``."""
    return json.loads(text, parse_constant=_refuse)

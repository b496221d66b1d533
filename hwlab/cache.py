"""The one folder hwlab keeps on this host between runs: exported models, device locks, local workdirs.

``$HWLAB_CACHE`` when set, else ``~/.cache/hwlab``; read when asked, never at import,
so a test or a notebook can point it elsewhere at any time.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """$HWLAB_CACHE, else ~/.cache/hwlab."""
    env = os.environ.get("HWLAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hwlab"

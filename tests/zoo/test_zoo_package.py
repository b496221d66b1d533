"""The zoo package's lazy exports."""

from __future__ import annotations

import subprocess
import sys

import hwlab.zoo


def test_import_does_not_load_torch() -> None:
    code = "import sys, hwlab.zoo; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_export_resolves() -> None:
    assert all(getattr(hwlab.zoo, name) is not None for name in hwlab.zoo.__all__)

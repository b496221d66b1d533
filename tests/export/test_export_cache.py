"""The export cache: content-addressed names, hits, atomic writes."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from hwlab.cache import cache_dir
from hwlab.errors import ExportError
from hwlab.export import (
    export_module,
    export_spec,
    models_dir,
    module_fingerprint,
    writers,
)
from hwlab.space import OpSpec
from hwlab.space.build import seeded_rng

SPEC_KEY = "spos_shufflenet-input:14x14x32-output:14x14x32-mid:16-kernel:3-stride:1"


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_cache_hit_returns_same_file_without_exporting(tmp_path: Path) -> None:
    spec = OpSpec.from_key(SPEC_KEY)
    first = export_spec(spec, "onnx", tmp_path)
    assert not first.from_cache
    assert first.path.parent == tmp_path / "models" / "onnx"
    assert first.path.name.startswith("spos_shufflenet-input_14x14x32-")
    mtime = first.path.stat().st_mtime_ns
    files = _files(tmp_path)
    second = export_spec(OpSpec.from_key(SPEC_KEY), "onnx", tmp_path)
    assert second == first and second.from_cache
    assert second.path.stat().st_mtime_ns == mtime
    assert _files(tmp_path) == files == [first.path]


def test_same_spec_gives_same_bytes_anywhere(tmp_path: Path) -> None:
    spec = OpSpec.from_key(SPEC_KEY)
    a = export_spec(spec, "onnx", tmp_path / "a")
    b = export_spec(spec, "onnx", tmp_path / "b")
    assert a.sha256 == b.sha256 and a.path.name == b.path.name


def test_other_spec_or_format_gets_another_file(tmp_path: Path) -> None:
    spec = OpSpec.from_key(SPEC_KEY)
    paths = {
        export_spec(spec, "onnx", tmp_path).path,
        export_spec(OpSpec("spos_shufflenet", 14, 14, 32, 32, kernel=5, mid=16), "onnx", tmp_path).path,
        export_spec(spec, "pt2", tmp_path).path,
    }
    assert len(paths) == 3


def test_module_cache_key_follows_weights(tmp_path: Path) -> None:
    with seeded_rng(0):
        module = nn.Conv2d(4, 8, 3, padding=1)
        x = torch.randn(1, 4, 8, 8)
    first = export_module(module, (x,), "onnx", tmp_path, name="conv")
    assert export_module(module, (x,), "onnx", tmp_path, name="conv").from_cache
    with torch.no_grad():
        module.weight.add_(1.0)
    changed = export_module(module, (x,), "onnx", tmp_path, name="conv")
    assert not changed.from_cache and changed.path != first.path
    other_shape = export_module(module, (torch.randn(1, 4, 16, 16),), "onnx", tmp_path, name="conv")
    assert other_shape.path not in (first.path, changed.path)


def test_module_fingerprint_sees_forward_code() -> None:
    class Double(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    class Triple(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 3

    assert module_fingerprint(Double()) != module_fingerprint(Triple())
    assert module_fingerprint(nn.ReLU()) == module_fingerprint(nn.ReLU())


def test_export_restores_training_mode(tmp_path: Path) -> None:
    module = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    export_module(module, torch.randn(1, 3, 8, 8), "onnx", tmp_path)
    assert module.training


class _Broken(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("boom")


def test_failed_export_names_the_model_and_leaves_no_file(tmp_path: Path) -> None:
    with pytest.raises(ExportError) as info:
        export_module(_Broken(), torch.randn(1, 3, 4, 4), "onnx", tmp_path, name="broken-thing")
    assert "broken-thing" in str(info.value) and "boom" in str(info.value)
    assert _files(tmp_path) == []


def test_killed_write_leaves_no_final_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer that dies after writing part of the file must not leave it under the final name."""

    def half_write(module: nn.Module, inputs: tuple, path: Path) -> None:
        path.write_bytes(b"half a model")
        raise KeyboardInterrupt

    monkeypatch.setitem(writers.FORMATS, "onnx", dataclasses.replace(writers.FORMATS["onnx"], write=half_write))
    with pytest.raises(KeyboardInterrupt):
        export_spec(OpSpec("bn", 7, 7, 8, 8), "onnx", tmp_path)
    assert _files(tmp_path) == []


def test_export_error_names_the_spec_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(module: nn.Module, inputs: tuple, path: Path) -> None:
        raise ValueError("unsupported op")

    monkeypatch.setitem(writers.FORMATS, "pt2", dataclasses.replace(writers.FORMATS["pt2"], write=failing))
    spec = OpSpec("bn", 7, 7, 8, 8)
    with pytest.raises(ExportError) as info:
        export_spec(spec, "pt2", tmp_path)
    assert spec.key in str(info.value) and "unsupported op" in str(info.value)


def test_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HWLAB_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    assert models_dir() == tmp_path / "c" / "models"
    monkeypatch.delenv("HWLAB_CACHE")
    assert cache_dir() == Path(os.path.expanduser("~")) / ".cache" / "hwlab"

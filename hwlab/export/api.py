"""Spec or module -> model file in the cache: `export_spec`, `export_module`.

A cache hit returns the existing file without touching torch's exporters, so
re-planning a profiling run over thousands of ops costs only file checks.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hwlab.errors import BackendUnavailable, ExportError
from hwlab.export.cache import (
    SPEC_BUILD_VERSION,
    atomic_target,
    cache_digest,
    file_sha256,
    model_path,
    module_fingerprint,
)
from hwlab.export.writers import FORMAT_FOR_RUNTIME, FORMATS, Format, missing_exporter_modules
from hwlab.space.build import build_module, example_inputs
from hwlab.space.opspec import OpSpec


@dataclass(frozen=True)
class ExportedModel:
    """A model file ready to deploy: where it is, what it is, what it takes."""

    path: Path
    sha256: str
    fmt: str
    input_shapes: tuple[tuple[int, ...], ...]
    name: str
    from_cache: bool = field(default=False, compare=False)


def get_format(fmt: str) -> Format:
    """The format called `fmt`; ExportError listing the known ones otherwise."""
    try:
        return FORMATS[fmt]
    except (KeyError, TypeError):
        raise ExportError(f"unknown model format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}") from None


def format_for_runtime(runtime: str) -> str:
    """The format a runtime loads (onnxruntime -> onnx, litert -> tflite, torch -> pt2)."""
    try:
        return FORMAT_FOR_RUNTIME[runtime]
    except KeyError:
        raise ExportError(
            f"no model format is known for runtime {runtime!r}",
            hint=f"runtimes: {', '.join(FORMAT_FOR_RUNTIME)}",
        ) from None


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    """Export in eval mode, then give the caller's module back as it was."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def _export(
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    fmt: str,
    source: str,
    name: str,
    cache_dir: Path | None,
) -> ExportedModel:
    model_format = get_format(fmt)
    shapes = tuple(tuple(int(d) for d in t.shape) for t in inputs)
    digest = cache_digest(source, fmt, model_format.exporter(), shapes)
    path = model_path(cache_dir, fmt, model_format.suffix, name, digest)
    if path.is_file():
        return ExportedModel(path, file_sha256(path), fmt, shapes, name, from_cache=True)
    try:
        with atomic_target(path) as tmp, _eval_mode(module), torch.no_grad():
            model_format.write(module, inputs, tmp)
    except BackendUnavailable:
        raise
    except Exception as exc:
        notes = "".join(f"\n{note}" for note in getattr(exc, "__notes__", ()))
        raise ExportError(
            f"exporting {name} to {fmt} failed: {type(exc).__name__}: {exc}{notes}",
            hint="check that the module runs on its example inputs and that the format supports its ops",
        ) from exc
    return ExportedModel(path, file_sha256(path), fmt, shapes, name)


# One export at a time per process: torch's exporters keep global state, and CPython 3.11's parser (behind
# inspect.getsource, which fingerprints a module's code) fails when two threads parse at once. Threads of
# one process (a Dask worker serving two devices) export in turn; their devices still measure together.
EXPORT_LOCK = threading.RLock()


def export_spec(spec: OpSpec, fmt: str, cache_dir: Path | None = None) -> ExportedModel:
    """Export the module of `spec` (seeded weights, eval mode) to format `fmt`, cached by its key; a spec at a
    precision other than fp32 is quantised from its fp32 twin (hwlab/quant/export.py)."""
    with EXPORT_LOCK:
        if spec.prec != "fp32":
            from hwlab.quant.export import export_quantized_spec

            return export_quantized_spec(spec, fmt, cache_dir)  # type: ignore[no-any-return]
        source = f"spec:{spec.key}:build-v{SPEC_BUILD_VERSION}"
        return _export(build_module(spec), example_inputs(spec), fmt, source, spec.key, cache_dir)


def export_module(
    module: nn.Module,
    example_inputs: torch.Tensor | Sequence[torch.Tensor],
    fmt: str,
    cache_dir: Path | None = None,
    name: str | None = None,
) -> ExportedModel:
    """Export any module to format `fmt`, cached by its weights, code and input shapes."""
    inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    if not inputs or not all(isinstance(t, torch.Tensor) for t in inputs):
        raise ExportError("example_inputs must be a tensor or a sequence of tensors", hint="pass torch tensors")
    name = name or type(module).__name__
    with EXPORT_LOCK:
        source = f"module:{module_fingerprint(module)}"
        return _export(module, inputs, fmt, source, name, cache_dir)


def export_model_files(
    module: nn.Module, example_inputs: torch.Tensor, folder: Path, name: str, stem: str = "model"
) -> dict[str, Path]:
    """``folder/model.onnx`` always, and ``model.tflite`` when the converter is installed (the ``tflite`` extra):
    a trained network as files to ship, copied out of the export cache."""
    files: dict[str, Path] = {}
    for fmt in ("onnx", "tflite"):
        if missing_exporter_modules(fmt):
            continue
        target = Path(folder) / f"{stem}{get_format(fmt).suffix}"
        shutil.copyfile(export_module(module, example_inputs, fmt, name=name).path, target)
        files[fmt] = target
    return files

"""Spec or torch module -> model file (.onnx, .tflite, .pt2), cached by content hash."""

from __future__ import annotations

from hwlab.export.api import (
    ExportedModel,
    export_model_files,
    export_module,
    export_spec,
    format_for_runtime,
    get_format,
)
from hwlab.export.cache import file_sha256, models_dir, module_fingerprint
from hwlab.export.writers import FORMAT_FOR_RUNTIME, FORMATS, Format

__all__ = [
    "FORMATS",
    "FORMAT_FOR_RUNTIME",
    "ExportedModel",
    "Format",
    "export_model_files",
    "export_module",
    "export_spec",
    "file_sha256",
    "format_for_runtime",
    "get_format",
    "models_dir",
    "module_fingerprint",
]

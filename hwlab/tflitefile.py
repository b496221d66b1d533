"""A ``.tflite`` file checked before use, as ``graph_load.read_onnx`` checks an ``.onnx``.

A TFLite model is a FlatBuffer whose file identifier, bytes 4 to 8, is ``TFL3``; anything
else (an ONNX file renamed, a truncated download, an HTML error page) is refused here
with the file named, before an interpreter is asked to map it.
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

from hwlab.errors import ExportError, GraphError

TFLITE_IDENTIFIER = b"TFL3"
MAX_TFLITE_BYTES = 2 * 1024**3  # FlatBuffers address at most 2 GiB


def check_tflite(path: Path) -> Path:
    """``path`` when it is a readable TFLite model within the size bound; a GraphError naming it otherwise."""
    hint = "pass a .tflite model (litert-torch or the TFLite converter writes one)"
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError as exc:
        raise GraphError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from None
    if size > MAX_TFLITE_BYTES:
        raise GraphError(f"{path} is {size:,} bytes, more than a FlatBuffer holds ({MAX_TFLITE_BYTES:,})", hint=hint)
    if len(head) < 8 or head[4:8] != TFLITE_IDENTIFIER:
        raise GraphError(f"{path} is not a TFLite model (no {TFLITE_IDENTIFIER.decode()} identifier)", hint=hint)
    return path


def interpreter_module(path: Path) -> ModuleType:
    """The LiteRT interpreter's module on this host (``ai_edge_litert``'s, else the older ``tflite_runtime``'s):
    ``Interpreter`` and ``OpResolverType`` alike; an ExportError naming ``path`` when neither is installed."""
    try:
        from ai_edge_litert import interpreter
    except ImportError:
        try:
            from tflite_runtime import interpreter  # type: ignore[no-redef]
        except ImportError:
            raise ExportError(
                f"cannot read {path}: no LiteRT interpreter on this host",
                hint="install the tflite extra (scripts/setup)",
            ) from None
    return interpreter

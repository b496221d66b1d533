"""The model file formats: how a torch module is written as .onnx, .tflite or .pt2.

Each writer turns (module in eval mode, example inputs) into a file at a given
path and nothing else; caching and atomic placement live in `cache.py`. Each
format also names its exporter's version, which is part of the cache key so that
a converter upgrade re-exports instead of serving stale files.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType

import torch
from torch import nn

from hwlab.errors import BackendUnavailable

ONNX_OPSET = 17
TFLITE_HINT = "pip install 'hwlab[tflite]'"
# Host-side modules each format's exporter needs (torch itself aside).
EXPORTER_MODULES = {"onnx": ("onnx",), "tflite": ("litert_torch",), "pt2": ()}


def missing_exporter_modules(fmt: str) -> list[str]:
    """The exporter modules of ``fmt`` that are not installed (presence only: importing a converter takes
    seconds, and one that is present but broken says so when it exports)."""
    return [m for m in EXPORTER_MODULES[fmt] if importlib.util.find_spec(m) is None]


Writer = Callable[[nn.Module, tuple[torch.Tensor, ...], Path], None]


def _input_names(inputs: tuple[torch.Tensor, ...]) -> list[str]:
    return [f"input{i}" for i in range(len(inputs))]


def write_onnx(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """TorchScript-based exporter (dynamo=False): an order of magnitude faster for small ops."""
    with warnings.catch_warnings():
        # The legacy exporter announces its deprecation on every call.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        torch.onnx.export(
            module,
            inputs,
            str(path),
            dynamo=False,
            opset_version=ONNX_OPSET,
            do_constant_folding=True,
            input_names=_input_names(inputs),
            output_names=["output0"],
        )


def write_pt2(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """torch.export program, loadable with torch.export.load."""
    program = torch.export.export(module, inputs)
    torch.export.save(program, str(path))


@contextlib.contextmanager
def _native_stderr_captured() -> Iterator[Path]:
    """Send what native code writes to stderr (fd 2) into a file while converting.

    litert-torch and the converter beneath it log through C++ (absl) straight to
    fd 2, one line per model, which Python's warning filters cannot reach. The
    text is kept in a file so an export error can show it.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.NamedTemporaryFile(prefix="hwlab-export-", suffix=".log", delete=False) as log:
        os.dup2(log.fileno(), 2)
    try:
        yield Path(log.name)
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def _captured_tail(log: Path, lines: int = 15) -> str:
    text = log.read_text(errors="replace").strip().splitlines()
    return "\n".join(text[-lines:])


@contextlib.contextmanager
def _environment_defaults(**values: str) -> Iterator[None]:
    """Set the variables the user has not set, for the block only: the process's environment is restored."""
    added = [name for name in values if name not in os.environ]
    os.environ.update({name: values[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _quiet_litert() -> Iterator[None]:
    """litert-torch without its progress printing (unless the user set it) and native log lines."""
    with (
        _environment_defaults(LITERT_TORCH_SHOW_PROGRESS="0", TF_CPP_MIN_LOG_LEVEL="2"),
        _native_stderr_captured() as log,
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            yield
        except Exception as exc:
            exc.add_note(f"converter output:\n{_captured_tail(log)}")
            raise
        finally:
            log.unlink(missing_ok=True)


def _litert_torch() -> ModuleType:
    if importlib.util.find_spec("litert_torch") is None:
        raise BackendUnavailable("the TFLite exporter litert-torch is not installed", hint=TFLITE_HINT)
    try:
        import litert_torch
    except Exception as exc:  # noqa: BLE001 - present but broken: say so, not "not installed"
        raise BackendUnavailable(
            f"the TFLite exporter litert-torch is installed but fails to import ({type(exc).__name__}: {exc})",
            hint="reinstall it: pip install --force-reinstall litert-torch",
        ) from exc
    return litert_torch


def write_tflite(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """litert-torch conversion to a float32 .tflite flatbuffer."""
    with _quiet_litert():
        _litert_torch().convert(module, inputs).export(str(path))


def _package_version(package: str, hint: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError as exc:
        raise BackendUnavailable(f"{package} is not installed", hint=hint) from exc


@dataclass(frozen=True)
class Format:
    """A model file format: its suffix, its writer and its exporter's identity."""

    name: str
    suffix: str
    write: Writer
    exporter: Callable[[], str]


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", write_onnx, lambda: f"torch-{torch.__version__}-onnx-opset{ONNX_OPSET}"),
    "tflite": Format(
        "tflite",
        ".tflite",
        write_tflite,
        lambda: f"torch-{torch.__version__}-litert-torch-{_package_version('litert-torch', TFLITE_HINT)}",
    ),
    "pt2": Format("pt2", ".pt2", write_pt2, lambda: f"torch-{torch.__version__}-export"),
}

# Runtime that runs a model -> the format it loads.
FORMAT_FOR_RUNTIME: dict[str, str] = {"onnxruntime": "onnx", "litert": "tflite", "torch": "pt2"}
